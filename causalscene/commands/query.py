"""``causalscene query FILE --variables V [V ...] [--evidence k=v ...] [--do k=v ...] [--factual k=v ...]``.

Kind of query: counterfactual when ``--factual`` is given (``--factual`` is the observed world,
``--do`` acts in the counterfactual one, ``--variables`` are read there); otherwise intervention
when ``--do`` is given; otherwise conditional.
"""

from __future__ import annotations

from pathlib import Path

from causalscene.commands._common import add_json, add_seed, print_json
from causalscene.commands._common import console as _console


def register(subparsers) -> None:
    p = subparsers.add_parser("query", help="exact condition / intervention / counterfactual query")
    p.add_argument("file", type=Path, help="DAG file (.yaml or .bif) or shipped name (faces, rpg)")
    p.add_argument("--variables", nargs="+", required=True, metavar="V")
    p.add_argument("--evidence", nargs="*", default=[], metavar="K=V")
    p.add_argument("--do", nargs="*", default=[], metavar="K=V")
    p.add_argument("--factual", nargs="*", default=[], metavar="K=V")
    p.add_argument("--noise", choices=["monotone", "gumbel"], default="monotone")
    p.add_argument(
        "--num-samples",
        type=int,
        default=20_000,
        help="Gumbel-noise Monte Carlo size (1 to 10,000,000; default: 20,000)",
    )
    add_seed(p)
    add_json(p, "the query's result")
    p.set_defaults(func=_main)


def run_query(dag, variables, evidence, do, factual, noise="monotone", num_samples=20_000, seed=0):
    """Dispatch to the right rung; returns a :class:`~causalscene.queries.QueryResult`."""
    from causalscene import queries

    if factual:
        if evidence:
            raise ValueError(
                "--evidence and --factual cannot be combined: --factual is the evidence of a counterfactual"
            )
        if not do:
            raise ValueError("a counterfactual (--factual) needs --do")
        return queries.counterfactual(
            dag, variables, factual, do, noise=noise, num_samples=num_samples, seed=seed
        )
    if do:
        return queries.intervene(dag, variables, do, evidence)
    return queries.condition(dag, variables, evidence)


def print_result(result, console=None) -> None:
    """A rich table of a query result (on ``console``, default :func:`_common.console`)."""
    from rich.table import Table

    out = console or _console()
    given = []
    if result.factual:
        given.append("factual " + ", ".join(f"{k}={v}" for k, v in result.factual.items()))
    if result.do:
        given.append("do(" + ", ".join(f"{k}={v}" for k, v in result.do.items()) + ")")
    if result.evidence:
        given.append(", ".join(f"{k}={v}" for k, v in result.evidence.items()))
    title = f"{result.kind}: P({', '.join(result.variables)}" + (
        f" | {'; '.join(given)})" if given else ")"
    )
    out.print(f"[bold]{title}[/bold]")
    table = Table()
    frame = result.to_frame()
    for column in frame.columns:
        table.add_column(column, justify="right" if column == "probability" else "left")
    for row in frame.itertuples(index=False):
        table.add_row(*[str(x) for x in row[:-1]], f"{row[-1]:.6f}")
    out.print(table)
    if result.assumption:
        out.print(f"[dim]assumption: {result.assumption}[/dim]")


def _main(args) -> int:
    from causalscene.dag import CausalDAG
    from causalscene.options import VERB_RANGES, check_numbers
    from causalscene.utils import parse_assignments

    check_numbers(args, VERB_RANGES["query"], flags=True)  # before any work: one line, exit 2
    dag = CausalDAG.load(args.file)
    result = run_query(
        dag,
        args.variables,
        parse_assignments(args.evidence, "--evidence"),
        parse_assignments(args.do, "--do"),
        parse_assignments(args.factual, "--factual"),
        noise=args.noise,
        num_samples=args.num_samples,
        seed=args.seed,
    )
    if args.json:
        print_json(result.to_dict())
    else:
        print_result(result)
    return 0
