"""``causalscene demo [--quick] [--out DIR] [--seed K] [--device D] [--epochs N] [--json]``: the
whole story, end to end (:func:`causalscene.demo.run_demo`), printed step by step with each step's
command. With ``--json`` the steps are told on stderr and stdout carries one JSON object."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from causalscene.commands._common import (
    add_device,
    add_json,
    add_no_progress,
    add_seed,
    console,
    print_json,
)
from causalscene.demo import DemoConfig, DemoObserver, DemoStep

if TYPE_CHECKING:
    from causalscene.queries import QueryResult

#: the steps' rules are this wide at most (a piped console is much wider: commands._common)
RULE_WIDTH = 100


def register(subparsers) -> None:
    d = DemoConfig()
    p = subparsers.add_parser("demo", help="the whole story end to end (make demo)")
    p.add_argument("--out", type=Path, default=d.out)
    add_seed(p, d.seed)
    add_device(p)
    p.add_argument("--quick", action="store_true", help="tiny sizes (about a minute)")
    p.add_argument("--epochs", type=int, default=None, help="epochs of the live training")
    add_json(p, "the report's path and the run time (the steps go to stderr)")
    add_no_progress(p)
    p.set_defaults(func=_main)


class _Printer(DemoObserver):
    """Each step as a rule with its command line; the exact query tables."""

    def __init__(self, stderr: bool = False) -> None:
        self.console = console(stderr)
        self.seconds: float | None = None

    def step(self, step: DemoStep) -> None:
        from rich.rule import Rule

        title = (
            f"[bold]step {step.number}/{step.total}[/bold] {step.title}  "
            f"[dim]({step.elapsed:.0f} s so far)[/dim]"
        )
        self.console.print(Rule(title), width=min(self.console.width, RULE_WIDTH))
        if step.argv is not None:
            self.console.print("[dim]$ causalscene " + " ".join(step.argv) + "[/dim]")

    def queries(self, results: Sequence[QueryResult]) -> None:
        from causalscene.commands.query import print_result

        for result in results:
            print_result(result, self.console)

    def finished(self, seconds: float) -> None:
        self.console.print(f"demo finished in {seconds:.0f} s")
        self.seconds = seconds


def _main(args) -> int:
    from causalscene.demo import run_demo
    from causalscene.options import VERB_RANGES, check_numbers, check_out_folder
    from causalscene.tensors import resolve_device

    check_numbers(args, VERB_RANGES["demo"], flags=True)  # before any work: one line, exit 2
    check_out_folder(args.out)
    overrides = {
        "out": args.out,
        "seed": args.seed,
        "device": str(resolve_device(args.device)),  # the run records the device it used
        "progress": not args.no_progress,
    }
    config = DemoConfig.quick(**overrides) if args.quick else DemoConfig(**overrides)
    if args.epochs is not None:
        config.faces_epochs = args.epochs
    printer = _Printer(stderr=args.json)
    page = run_demo(config, printer)
    if args.json:
        print_json({"report": page, "seconds": printer.seconds})
    else:
        print(f"The report is at {page}")
    return 0
