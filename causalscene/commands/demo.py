"""``causalscene demo [--quick] [--out DIR] [--seed K] [--device D] [--epochs N]``: the whole story,
end to end (:func:`causalscene.demo.run_demo`), printed step by step with each step's command."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from causalscene.demo import DemoConfig, DemoObserver, DemoStep

if TYPE_CHECKING:
    from causalscene.queries import QueryResult


def register(subparsers) -> None:
    d = DemoConfig()
    p = subparsers.add_parser("demo", help="the whole story end to end (make demo)")
    p.add_argument("--out", type=Path, default=d.out)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=d.device, help="cpu | cuda | auto")
    p.add_argument("--quick", action="store_true", help="tiny sizes (about a minute)")
    p.add_argument("--epochs", type=int, default=None, help="epochs of the live training")
    p.set_defaults(func=_main)


class _Printer(DemoObserver):
    """Each step as a rule with its command line; the exact query tables."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console()

    def step(self, step: DemoStep) -> None:
        self.console.rule(
            f"[bold]step {step.number}/{step.total}[/bold] {step.title}  "
            f"[dim]({step.elapsed:.0f} s so far)[/dim]"
        )
        if step.argv is not None:
            self.console.print("[dim]$ causalscene " + " ".join(step.argv) + "[/dim]")

    def queries(self, results: Sequence[QueryResult]) -> None:
        from causalscene.commands.query import print_result

        for result in results:
            print_result(result, self.console)

    def finished(self, seconds: float) -> None:
        self.console.print(f"demo finished in {seconds:.0f} s")


def _main(args) -> int:
    from causalscene.demo import run_demo

    overrides = {"out": args.out, "seed": args.seed, "device": args.device}
    config = DemoConfig.quick(**overrides) if args.quick else DemoConfig(**overrides)
    if args.epochs is not None:
        config.faces_epochs = args.epochs
    page = run_demo(config, _Printer())
    print(json.dumps({"report": str(page)}))
    print(f"The report is at {page}")
    return 0
