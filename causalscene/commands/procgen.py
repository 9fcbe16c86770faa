"""``causalscene procgen {rpg,faces,morpho,mog} --n N --size S --seed K --out DIR [--preview]``."""

from __future__ import annotations

import time
from pathlib import Path

from causalscene.commands._common import add_json, add_no_progress, add_seed, print_json

GENERATOR_NAMES = ("rpg", "faces", "morpho", "mog")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "procgen",
        help="generate a procedural dataset whose labels are sampled from its DAG",
        description="Write a shard folder (shard-*.npz, labels.csv, meta.json); labels are "
        "sampled from dags/<generator>.yaml and images rendered from the rendered nodes.",
    )
    p.add_argument("generator", choices=GENERATOR_NAMES)
    p.add_argument("--n", type=int, required=True, help="number of items")
    p.add_argument(
        "--size", type=int, default=None, help="image size in pixels (default: 64; morpho 28)"
    )
    add_seed(p)
    p.add_argument("--out", type=Path, required=True, help="output folder (must not exist)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset folder")
    p.add_argument(
        "--preview", action="store_true", help="also write OUT/preview.png (labelled grid)"
    )
    p.add_argument(
        "--workers", type=int, default=None, help="processes (default: usable CPUs, at most 8)"
    )
    p.add_argument("--shard-size", type=int, default=4096, help="items per shard")
    p.add_argument(
        "--mnist",
        type=Path,
        default=None,
        help="morpho: MNIST idx images file (default: sklearn digits)",
    )
    add_no_progress(p)
    add_json(p, "what was written")
    p.set_defaults(func=_main)


def _main(args) -> int:
    from causalscene import procgen
    from causalscene.options import VERB_RANGES, check_numbers, check_out_folder

    check_numbers(args, VERB_RANGES["procgen"], flags=True)  # before any work: one line, exit 2
    check_out_folder(args.out)
    options = {}
    if args.mnist is not None:
        if args.generator != "morpho":
            raise ValueError("--mnist only applies to the morpho generator")
        options["mnist"] = str(args.mnist)
    if args.size is not None and args.size < 1:
        raise ValueError(f"--size must be positive, got {args.size}")
    workers = procgen.default_workers() if args.workers is None else args.workers
    start = time.perf_counter()
    out = procgen.make_dataset(
        args.generator,
        args.n,
        args.size,
        args.seed,
        args.out,
        overwrite=args.overwrite,
        shard_size=args.shard_size,
        workers=workers,
        progress=not args.no_progress,
        preview=args.preview,
        **options,
    )
    seconds = time.perf_counter() - start
    if args.json:
        preview = out / "preview.png" if args.preview else None
        print_json(
            {
                "generator": args.generator,
                "n": args.n,
                "out": out,
                "seconds": seconds,
                "preview": preview,
            }
        )
        return 0
    print(f"wrote {args.n} {args.generator} items to {out} in {seconds:.1f} s")
    if args.preview:
        print(f"preview: {out / 'preview.png'}")
    return 0
