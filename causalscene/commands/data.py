"""``causalscene data import FOLDER --labels CSV --dag DAG --out DIR`` and ``causalscene data
import-celeba ROOT --dag faces --out DIR [--split S]``: your own images as a shard folder
(:mod:`causalscene.importers`), the format ``procgen`` writes and ``train --data`` reads."""

from __future__ import annotations

import time
from pathlib import Path

from causalscene.commands._common import add_json, add_no_progress, add_seed, print_json

#: the defaults of :mod:`causalscene.importers` (not imported here: the parser stays light)
DEFAULT_SIZE = 64
DEFAULT_SHARD_SIZE = 4096
DEFAULT_MAX_PIXELS = 4096 * 4096


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "data",
        help="import your own images (a folder + labels CSV, or CelebA) as a dataset folder",
        description="Write a shard folder (shard-*.npz, labels.csv, meta.json) from image files, "
        "the format procgen writes: train --data, evaluate and cage read it.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    folder = actions.add_parser(
        "import",
        help="a folder of images (PNG, JPEG, ...) and a CSV of labels",
        description="CSV: a header line with a 'file' column (paths relative to FOLDER) and one "
        "column per observed DAG node holding state names; an empty cell is a missing label. "
        "Observed nodes without a column are missing for every image; hidden nodes are never "
        "columns.",
    )
    folder.add_argument("folder", type=Path, help="folder holding the images")
    folder.add_argument("--labels", type=Path, required=True, help="labels CSV (see above)")
    folder.add_argument(
        "--dag", required=True, help="DAG file (.yaml or .bif) or shipped name (faces, rpg)"
    )
    _shared(folder, crop=None)
    folder.set_defaults(func=_import_folder)
    celeba = actions.add_parser(
        "import-celeba",
        help="CelebA: img_align_celeba/, list_attr_celeba.txt, list_eval_partition.txt",
        description="Attributes are mapped onto the DAG's nodes (Male → gender, Young → age, ...).",
    )
    celeba.add_argument("root", type=Path, help="CelebA folder")
    celeba.add_argument("--dag", default="faces", help="DAG file or shipped name (default: faces)")
    celeba.add_argument("--split", choices=["train", "valid", "test"], default=None)
    celeba.add_argument("--max-images", type=int, default=None, help="only the first N images")
    _shared(celeba, crop=148)
    celeba.set_defaults(func=_import_celeba)


def _shared(p, crop: int | None) -> None:
    p.add_argument("--out", type=Path, required=True, help="output folder (must not exist)")
    p.add_argument(
        "--size",
        type=int,
        default=DEFAULT_SIZE,
        help=f"image size S (S x S; default {DEFAULT_SIZE})",
    )
    what = "the largest centred square" if crop is None else f"{crop}"
    p.add_argument(
        "--crop", type=int, default=crop, help=f"centred square crop in pixels (default: {what})"
    )
    p.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE, help="images per shard")
    p.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help="refuse larger images before decoding them (default: 4096x4096)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset folder")
    add_seed(p, used=False)
    add_no_progress(p)
    add_json(p, "what was written")


def _options(args) -> dict:
    """The import's options, checked before any work (one line, exit 2)."""
    from causalscene.options import VERB_RANGES, check_numbers, check_out_folder

    check_numbers(args, VERB_RANGES["data"], flags=True)
    check_out_folder(args.out)
    return dict(
        size=args.size,
        crop=args.crop,
        shard_size=args.shard_size,
        max_pixels=args.max_pixels,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )


def _import_folder(args) -> int:
    from causalscene.importers import import_folder

    start = time.perf_counter()
    summary = import_folder(args.folder, args.labels, args.dag, args.out, **_options(args))
    return _report(summary, time.perf_counter() - start, args.json)


def _import_celeba(args) -> int:
    from causalscene.importers import import_celeba

    start = time.perf_counter()
    summary = import_celeba(
        args.root,
        args.dag,
        args.out,
        split=args.split,
        max_images=args.max_images,
        **_options(args),
    )
    return _report(summary, time.perf_counter() - start, args.json)


def _report(summary, seconds: float, as_json: bool) -> int:
    if as_json:
        print_json({**vars(summary), "seconds": seconds})
        return 0
    print(
        f"wrote {summary.count} images ({summary.image_size}px, {summary.shards} shards) to "
        f"{summary.out} in {seconds:.1f} s"
    )
    missing = {k: summary.count - v for k, v in summary.labelled.items() if v < summary.count}
    if missing:
        print("missing labels: " + ", ".join(f"{k} {v}" for k, v in missing.items()))
    return 0
