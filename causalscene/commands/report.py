"""``causalscene report RUN_OR_DIR --out DIR``: a static, self-contained HTML page."""

from __future__ import annotations

from pathlib import Path

from causalscene.commands._common import add_json, add_seed, print_json


def register(subparsers) -> None:
    p = subparsers.add_parser("report", help="static HTML report of a run or results folder")
    p.add_argument("source", type=Path, help="a training run folder or any results folder")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: SOURCE)")
    add_json(p, "the page's path")
    add_seed(p, used=False)
    p.set_defaults(func=_main)


def _main(args) -> int:
    from causalscene.options import VERB_RANGES, check_numbers, check_out_folder
    from causalscene.report import build_report

    check_numbers(args, VERB_RANGES["report"], flags=True)  # before any work: one line, exit 2
    path = build_report(args.source, check_out_folder(args.out or args.source))
    if args.json:
        print_json({"report": path})
    else:
        print(f"report: {path}")
    return 0
