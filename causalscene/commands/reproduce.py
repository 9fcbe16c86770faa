"""``causalscene reproduce NAME [--out DIR] [--seed K] [--scale small|full]``."""

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
    p.add_argument("--scale", choices=["small", "full"], default="small")
    p.set_defaults(func=_main)


def _main(args) -> int:
    from causalscene import reproduce

    known = reproduce.registry()
    if not args.name:
        for name, entry in known.items():
            print(f"{name:20s} {entry.claim}")
        return 0
    out = args.out or Path("reproduce_out") / args.name
    result = reproduce.run(args.name, out, seed=args.seed, scale=args.scale)
    print(json.dumps(result))
    return 0
