"""``causalscene reproduce NAME [--out DIR] [--seed K] [--scale tiny|small|full] [--device D]``.

A reproduction's result is a JSON record (DESIGN.md), so it is printed as strict JSON with or
without ``--json``; ``--json`` also makes the list of names (no ``NAME``) a JSON object."""

from __future__ import annotations

from pathlib import Path

from causalscene.commands._common import (
    add_device,
    add_json,
    add_no_progress,
    add_seed,
    print_json,
)


def register(subparsers) -> None:
    p = subparsers.add_parser("reproduce", help="check one of the papers' claims (JSON result)")
    p.add_argument("name", nargs="?", help="reproduction name; omit to list them")
    p.add_argument(
        "--out", type=Path, default=None, help="output folder (default: reproduce_out/NAME)"
    )
    add_seed(p)
    p.add_argument(
        "--scale",
        choices=["tiny", "small", "full"],
        default="small",
        help="tiny: seconds (tests); small: CPU minutes; full: paper size, for a GPU",
    )
    add_device(p)
    add_json(p, "the list of names (a reproduction's result is JSON either way)")
    add_no_progress(p, draws_bar=False)
    p.set_defaults(func=_main)


def _main(args) -> int:
    from causalscene import reproductions

    if not args.name:
        if args.json:
            print_json({name: entry.claim for name, entry in reproductions.registry().items()})
            return 0
        for name, entry in reproductions.registry().items():
            print(f"{name:20s} {entry.claim}")
        return 0
    from causalscene.options import VERB_RANGES, check_numbers, check_out_folder

    check_numbers(args, VERB_RANGES["reproduce"], flags=True)  # before any work: one line, exit 2
    out = check_out_folder(args.out or Path("reproduce_out") / args.name)
    result = reproductions.run(args.name, out, seed=args.seed, scale=args.scale, device=args.device)
    print_json(result)
    return 0
