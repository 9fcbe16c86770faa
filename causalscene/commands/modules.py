"""``causalscene modules RUN --layer NAME``: modules of a generator layer (Besserve et al. 2020).

``RUN`` is a training run folder (``causalscene train``), or ``planted:K`` for the built-in generator
with ``K`` planted modules (:class:`~causalscene.modularity.PlantedModulesGenerator`);
``--generator module:factory`` instead reads a generator module from outside (TorchScript files
are refused: their layers take no forward hooks). The pipeline
is :func:`causalscene.modularity.modules_of_run`; this module parses flags and prints.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from causalscene.commands._common import (
    add_device,
    add_generator,
    add_json,
    add_no_progress,
    add_seed,
    console,
    generator_spec,
    print_json,
)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "modules", help="modules of a generator layer: influence maps, NMF, hybrids (Besserve 2020)"
    )
    add_generator(p, "training run folder, or planted:K")
    p.add_argument("--layer", help="layer name (see --list-layers)")
    p.add_argument("--list-layers", action="store_true", help="list the hookable layers and exit")
    p.add_argument("--k", type=int, default=None, help="number of modules")
    p.add_argument(
        "--k-range", default=None, help="choose K by stability in this range (default 2:6)"
    )
    p.add_argument("--pairs", type=int, default=256, help="latent pairs (z1, z2)")
    p.add_argument("--groups", type=int, default=8, help="pair groups for split-half stability")
    p.add_argument("--splits", type=int, default=10, help="random split-halves per K")
    p.add_argument("--hybrids", type=int, default=4, help="example pairs in hybrids.png")
    p.add_argument("--batch-size", type=int, default=None, help="images per forward pass")
    p.add_argument(
        "--out", type=Path, default=None, help="output folder (default RUN/modules-LAYER)"
    )
    add_device(p)
    add_seed(p)
    add_json(p, "the result (what modules.json holds) or the layers")
    add_no_progress(p, draws_bar=False)
    p.set_defaults(func=_main)


def _main(args) -> int:
    from causalscene.modularity import ModulesConfig, layers_of_run, modules_of_run, parse_ks
    from causalscene.options import VERB_RANGES, check_numbers, check_out_folder

    check_numbers(args, VERB_RANGES["modules"], flags=True)  # before any work: one line, exit 2
    if args.out is not None:
        check_out_folder(args.out)
    if args.list_layers:
        _print_layers(layers_of_run(generator_spec(args), args.device), args.json)
        return 0
    if not args.layer:
        raise ValueError("give --layer NAME (see --list-layers)")
    config = ModulesConfig(
        layer=args.layer,
        ks=parse_ks(args.k, args.k_range),
        pairs=args.pairs,
        groups=args.groups,
        splits=args.splits,
        hybrids=args.hybrids,
        seed=args.seed,
        batch_size=args.batch_size,
    )
    result, out = modules_of_run(generator_spec(args), config, out=args.out, device=args.device)
    if args.json:
        print_json(json.loads((out / "modules.json").read_text()))
        return 0
    from rich.table import Table

    title = f"{args.layer}: K = {result['k']} ({result['k_chosen_by']})"
    table = Table("module", "channels", title=title)
    for j, members in result["modules"].items():
        table.add_row(j, " ".join(map(str, members)))
    console().print(table)
    print(f"figures and modules.json in {out}")
    return 0


def _print_layers(layers, as_json: bool) -> None:
    if as_json:
        print_json([asdict(info) for info in layers])
        return
    from rich.table import Table

    table = Table("layer", "type", "channels", "output")
    for info in layers:
        table.add_row(info.name, info.kind, str(info.channels), f"{info.height}x{info.width}")
    console().print(table)
