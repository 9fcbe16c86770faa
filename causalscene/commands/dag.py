"""``causalscene dag check|show|draw FILE``."""

from __future__ import annotations

from pathlib import Path

from causalscene.commands._common import add_json, add_seed, console, print_json


def register(subparsers) -> None:
    p = subparsers.add_parser("dag", help="check, show or draw a DAG file (.yaml or .bif)")
    p.add_argument("action", choices=["check", "show", "draw"])
    p.add_argument("file", type=Path, help="DAG file (.yaml or .bif) or shipped name (faces, rpg)")
    p.add_argument("--out", type=Path, default=None, help="PNG path for 'draw' (default: FILE.png)")
    add_json(p, "the check's counts, the DAG ('show') or the PNG's path ('draw')")
    add_seed(p, used=False)
    p.set_defaults(func=_main)


def _main(args) -> int:
    from rich.table import Table

    from causalscene.dag import CausalDAG
    from causalscene.options import VERB_RANGES, check_numbers, check_out_file

    check_numbers(args, VERB_RANGES["dag"], flags=True)
    if args.action == "draw":
        check_out_file(args.out or args.file.with_suffix(".png"))
    dag = CausalDAG.load(args.file)
    if args.action == "check":
        if args.json:
            print_json(
                {"file": args.file, "ok": True, "nodes": len(dag.nodes), "edges": len(dag.edges)}
            )
        else:
            print(f"ok: {args.file}: {len(dag.nodes)} nodes, {len(dag.edges)} edges")
        return 0
    if args.action == "draw":
        from causalscene.plots import draw_dag

        out = args.out or args.file.with_suffix(".png")
        draw_dag(dag, out)
        if args.json:
            print_json({"out": out})
        else:
            print(f"wrote {out}")
        return 0
    if args.json:
        print_json(dag.to_dict())
        return 0
    table = Table(title=f"{dag.name}: {dag.description}".rstrip(": "))
    for column in ("node", "states", "parents", "role"):
        table.add_column(column)
    for node in dag.nodes:
        spec = dag.node(node)
        role = "hidden" if spec.hidden else ("rendered" if spec.rendered else "")
        table.add_row(node, ", ".join(spec.states), ", ".join(spec.parents) or "-", role)
    console().print(table)
    return 0
