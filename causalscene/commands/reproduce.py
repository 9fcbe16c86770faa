"""``causalscene reproduce NAME [--out DIR] [--seed K] [--scale tiny|small|full] [--device D]``."""

from __future__ import annotations

import json
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("reproduce", help="check one of the papers' claims (JSON result)")
    p.add_argument("name", nargs="?", help="reproduction name; omit to list them")
    p.add_argument(
        "--out", type=Path, default=None, help="output folder (default: reproduce_out/NAME)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--scale",
        choices=["tiny", "small", "full"],
        default="small",
        help="tiny: seconds (tests); small: CPU minutes; full: paper size, for a GPU",
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:K] (default: auto)")
    p.set_defaults(func=_main)


def _main(args) -> int:
    from causalscene import reproductions

    if not args.name:
        for name, entry in reproductions.registry().items():
            print(f"{name:20s} {entry.claim}")
        return 0
    out = args.out or Path("reproduce_out") / args.name
    result = reproductions.run(args.name, out, seed=args.seed, scale=args.scale, device=args.device)
    print(json.dumps(result))
    return 0
