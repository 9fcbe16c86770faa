"""Import your own images (a folder and a CSV of labels, or CelebA) as a shard folder.

:func:`import_folder` and :func:`import_celeba` write the format of :mod:`causalscene.datasets`
(``shard-*.npz``, ``labels.csv``, ``meta.json``), the one :mod:`causalscene.procgen` writes, so
``ShardDataset``, ``train --data``, ``evaluate`` and ``cage`` read the result unchanged. ``meta.json``
has ``"generator": null`` and a ``"source"`` record (kind, path, labels file, crop, ...); without a
generator, the verbs' image probes learn from the data itself
(:func:`causalscene.probes.factorial_source` returns None for it).

The labels CSV (:func:`read_label_table`): a header line, then one row per image. Column ``file``
holds the image's path relative to FOLDER; every other column is named after an observed (not
hidden) node of the DAG and holds that node's *state names*. An empty cell is a missing label
(code -1). Observed nodes without a column are missing for every image (all -1): a dataset may
label only some nodes. A column for a hidden node, an unknown column, an unknown state, a
duplicate or missing file are errors naming the CSV line.

Images: anything PIL reads (PNG, JPEG, ...), EXIF orientation applied, converted to RGB, the
centred square of side ``crop`` cut out (None: the largest centred square), resized to
``size`` x ``size`` (:func:`causalscene.datasets.square_resize`). An image above ``max_pixels`` is
refused from its header, before decoding; each image is decoded in full, so a truncated file is
an error naming it, not grey pixels.

Streaming: the labels (8 bytes per image and node) and file names are read first and checked
before any image is decoded; images are then decoded one shard at a time, so memory holds at
most ``shard_size`` images. Everything is written into a staging folder renamed onto ``out`` at
the end (:func:`causalscene.datasets.staging_folder`): a failure leaves neither ``out`` nor a
staging folder. The import is deterministic (CSV order, no randomness): same input, same bytes.
"""

from __future__ import annotations

import csv
import logging
import os
import shutil
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from causalscene.dag import CausalDAG
from causalscene.datasets import (
    FORMAT,
    FORMAT_VERSION,
    DatasetError,
    commit_folder,
    shard_name,
    square_resize,
    staging_folder,
    write_npz,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_SHARD_SIZE",
    "DEFAULT_SIZE",
    "ImportSummary",
    "LabelTable",
    "import_celeba",
    "import_folder",
    "load_image",
    "read_label_table",
]

log = logging.getLogger(__name__)

DEFAULT_SIZE = 64
DEFAULT_SHARD_SIZE = 4096
#: images with more pixels are refused from their header, before decoding (16.8 megapixels)
DEFAULT_MAX_PIXELS = 4096 * 4096
FILE_COLUMN = "file"


@dataclass
class LabelTable:
    """A checked labels CSV: image paths, where each was listed, and ``{node: int64 codes}``."""

    files: list[Path]  #: image paths relative to the image folder, in CSV order
    lines: list[int]  #: the CSV line of each image
    codes: dict[str, np.ndarray]  #: every observed node of the DAG; -1 = missing
    columns: list[str]  #: the label columns the CSV had (the other nodes are all -1)


class _Item(NamedTuple):
    path: Path  #: the image file
    name: str  #: as the labels name it (``labels.csv``'s file column)
    where: str  #: the labels file and line, for error messages


@dataclass
class ImportSummary:
    """What an import wrote."""

    out: Path
    count: int
    shards: int
    image_size: int
    source: dict[str, Any]
    labelled: dict[str, int] = field(default_factory=dict)  #: images with a label, per node


# ------------------------------------------------------------------------------ public
def import_folder(
    folder: str | Path,
    labels: str | Path,
    dag: CausalDAG | str | Path,
    out: str | Path,
    *,
    size: int = DEFAULT_SIZE,
    crop: int | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    overwrite: bool = False,
    progress: bool = False,
) -> ImportSummary:
    """Import the images of ``folder`` listed in the CSV ``labels`` (module docstring) as a shard
    folder ``out`` labelled with ``dag``'s observed nodes (a DAG, a file or a shipped name)."""
    _check_options(size, crop, shard_size, max_pixels)
    folder, labels = Path(folder), Path(labels)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} not found")
    dag, dag_file = _load_dag(dag)
    table = read_label_table(labels, folder, dag)
    source = {
        "kind": "folder",
        "path": str(folder.resolve()),
        "labels": str(labels.resolve()),
        "label_columns": table.columns,
        "crop": crop,
    }
    items = [
        _Item(folder / name, str(name), f"{labels} line {line}")
        for name, line in zip(table.files, table.lines)
    ]
    options = dict(size=size, crop=crop, shard_size=shard_size, max_pixels=max_pixels)
    return _write_dataset(
        items, table.codes, dag, dag_file, out, source, options, overwrite, progress
    )


def import_celeba(
    root: str | Path,
    dag: CausalDAG | str | Path,
    out: str | Path,
    *,
    split: str | None = None,
    size: int = DEFAULT_SIZE,
    crop: int | None = 148,
    max_images: int | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    overwrite: bool = False,
    progress: bool = False,
) -> ImportSummary:
    """Import CelebA's folder layout (:class:`causalscene.datasets.CelebAFolder`: attributes
    mapped onto ``dag``'s nodes by :data:`~causalscene.datasets.CELEBA_ATTRIBUTES`) as a shard
    folder: ``split`` (train, valid, test; None: all), the first ``max_images`` of it."""
    from causalscene.datasets import CelebAFolder

    _check_options(size, crop, shard_size, max_pixels)
    if max_images is not None and max_images < 1:
        raise ValueError(f"--max-images must be at least 1, got {max_images}")
    dag, dag_file = _load_dag(dag)
    celeba = CelebAFolder(root, dag, split=split, image_size=size, crop=crop)
    keep = len(celeba) if max_images is None else min(len(celeba), int(max_images))
    if keep == 0:
        raise ValueError(f"CelebA: {celeba.root} has no images in split '{split}'")
    attr_file = celeba.root / "list_attr_celeba.txt"
    lines = _celeba_lines(attr_file)
    items = [
        _Item(celeba.image_dir / name, name, f"{attr_file} line {lines[name]}")
        for name in celeba.files[:keep]
    ]
    codes = {node: celeba.labels[node][:keep] for node in dag.label_nodes}
    source = {
        "kind": "celeba",
        "path": str(celeba.root.resolve()),
        "labels": str(attr_file.resolve()),
        "split": split,
        "attributes": {node: list(pair) for node, pair in celeba.mapping.items()},
        "crop": crop,
    }
    options = dict(size=size, crop=crop, shard_size=shard_size, max_pixels=max_pixels)
    return _write_dataset(items, codes, dag, dag_file, out, source, options, overwrite, progress)


def load_image(
    path: Path, size: int, crop: int | None, max_pixels: int, where: str = ""
) -> np.ndarray:
    """Image file ``path`` as uint8 ``[size, size, 3]`` (module docstring); a
    :class:`DatasetError` naming the file (and ``where`` it was listed) if it is missing,
    unreadable, truncated or above ``max_pixels``."""
    from PIL import Image, ImageOps

    name = f"{path} ({where})" if where else str(path)
    if not path.is_file():
        raise DatasetError(f"{name}: image file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size  # from the header: nothing decoded yet
                if width * height > max_pixels:
                    raise DatasetError(
                        f"{name}: image is {width}x{height}, above max_pixels={max_pixels}"
                    )
                image.load()  # decode in full: a truncated file raises here
                return square_resize(ImageOps.exif_transpose(image), size, crop)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DatasetError(f"{name}: oversized image ({exc})") from None
    except (OSError, SyntaxError, EOFError) as exc:  # UnidentifiedImageError is an OSError
        raise DatasetError(f"{name}: unreadable or truncated image ({exc})") from None


# --------------------------------------------------------------------------- the CSV
def read_label_table(path: str | Path, folder: str | Path, dag: CausalDAG) -> LabelTable:
    """Read and check the labels CSV ``path`` (module docstring) against ``dag``; image paths
    are relative to ``folder`` and must exist. Errors name the CSV line."""
    path, folder = Path(path), Path(folder)
    if not path.is_file():
        raise FileNotFoundError(f"labels file {path} not found")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise DatasetError(f"{path}: empty (needs a header line with a 'file' column)")
            columns = _check_header(header, dag, path)
            table = _read_rows(reader, columns, folder, dag, path)
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except csv.Error as exc:
        raise DatasetError(f"{path}: malformed CSV ({exc})") from None
    if not table.files:
        raise DatasetError(f"{path}: no rows after the header (no images listed)")
    return table


def _check_header(header: Sequence[str], dag: CausalDAG, path: Path) -> list[str]:
    columns = [c.strip() for c in header]
    if FILE_COLUMN not in columns:
        raise DatasetError(
            f"{path} line 1: no '{FILE_COLUMN}' column (columns: {', '.join(columns) or 'none'})"
        )
    seen: set[str] = set()
    for column in columns:
        if column in seen:
            raise DatasetError(f"{path} line 1: column '{column}' appears twice")
        seen.add(column)
        if column == FILE_COLUMN:
            continue
        if column not in dag:
            raise DatasetError(
                f"{path} line 1: column '{column}' is not a node of DAG '{dag.name}' "
                f"(observed nodes: {', '.join(dag.label_nodes)})"
            )
        if dag.node(column).hidden:
            raise DatasetError(
                f"{path} line 1: column '{column}' is a hidden node of DAG '{dag.name}' "
                "(hidden nodes are never labelled)"
            )
    return columns


def _read_rows(
    reader: Any, columns: list[str], folder: Path, dag: CausalDAG, path: Path
) -> LabelTable:
    index = {node: {s: i for i, s in enumerate(dag.states(node))} for node in dag.label_nodes}
    file_at = columns.index(FILE_COLUMN)
    labelled = [(i, c) for i, c in enumerate(columns) if c != FILE_COLUMN]
    files: list[Path] = []
    lines: list[int] = []
    codes: dict[str, list[int]] = {node: [] for node in dag.label_nodes}
    first_line: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue  # a blank line
        if len(row) != len(columns):
            raise DatasetError(
                f"{path} line {line}: {len(row)} fields, the header has {len(columns)}"
            )
        name = os.path.normpath(row[file_at].strip())
        _check_file(name, line, first_line, folder, path)
        first_line[name] = line
        files.append(Path(name))
        lines.append(line)
        given = {column: row[i].strip() for i, column in labelled}
        for node in dag.label_nodes:
            state = given.get(node, "")
            if not state:
                codes[node].append(-1)
            elif state in index[node]:
                codes[node].append(index[node][state])
            else:
                raise DatasetError(
                    f"{path} line {line}: column '{node}' has unknown state '{state}' "
                    f"(states: {', '.join(dag.states(node))})"
                )
    arrays = {node: np.asarray(v, np.int64) for node, v in codes.items()}
    return LabelTable(files, lines, arrays, [c for _, c in labelled])


def _check_file(name: str, line: int, first_line: dict[str, int], folder: Path, path: Path) -> None:
    if name == ".":
        raise DatasetError(f"{path} line {line}: empty '{FILE_COLUMN}' cell")
    if os.path.isabs(name):
        raise DatasetError(f"{path} line {line}: '{name}' must be a path relative to {folder}")
    if name in first_line:
        raise DatasetError(
            f"{path} line {line}: duplicate file '{name}' (already on line {first_line[name]})"
        )
    if not (folder / name).is_file():
        raise DatasetError(f"{path} line {line}: image '{name}' not found in {folder}")


def _celeba_lines(attr_file: Path) -> dict[str, int]:
    """``{file: line}`` of CelebA's attribute file (its rows start on line 3)."""
    out = {}
    with open(attr_file, encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            if number > 2 and text.strip():
                out[text.split(maxsplit=1)[0]] = number
    return out


# --------------------------------------------------------------------------- writing
def _check_options(size: int, crop: int | None, shard_size: int, max_pixels: int) -> None:
    if int(size) < 4:
        raise ValueError(f"--size must be at least 4 pixels, got {size}")
    if crop is not None and int(crop) < 1:
        raise ValueError(f"--crop must be positive, got {crop}")
    if int(shard_size) < 1:
        raise ValueError(f"--shard-size must be at least 1, got {shard_size}")
    if int(max_pixels) < 1:
        raise ValueError(f"--max-pixels must be positive, got {max_pixels}")


def _load_dag(dag: CausalDAG | str | Path) -> tuple[CausalDAG, str]:
    """The DAG and how ``meta.json`` names it (a shipped name, else a resolved path)."""
    from causalscene.dag import is_shipped_name

    if isinstance(dag, CausalDAG):
        return dag, str(dag.source or dag.name)
    loaded = CausalDAG.load(dag)
    shipped = is_shipped_name(dag) and not Path(dag).is_file()
    return loaded, str(dag) if shipped else str(Path(dag).resolve())


def _write_dataset(
    items: list[_Item],
    codes: dict[str, np.ndarray],
    dag: CausalDAG,
    dag_file: str,
    out: str | Path,
    source: dict[str, Any],
    options: dict[str, Any],
    overwrite: bool,
    progress: bool,
) -> ImportSummary:
    """Write the shards, ``labels.csv`` and ``meta.json`` into a staging folder; commit it."""
    out = Path(out)
    size, shard_size = int(options["size"]), int(options["shard_size"])
    starts = list(range(0, len(items), shard_size))
    staging = staging_folder(out, overwrite)
    try:
        counts = _write_shards(items, codes, dag, staging, starts, options, progress)
        meta = _meta(dag, dag_file, source, size, shard_size, counts, codes)
        from causalscene.safeio import sha256_file
        from causalscene.utils import atomic_write_json

        for shard in meta["shards"]:  # verified on every read, as procgen's
            shard["sha256"] = sha256_file(staging / shard["file"])

        atomic_write_json(staging / "meta.json", meta)
        commit_folder(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    labelled = {node: int((c >= 0).sum()) for node, c in codes.items()}
    log.info("imported %d images into %s (%d shards)", len(items), out, len(counts))
    return ImportSummary(out, len(items), len(counts), size, source, labelled)


def _write_shards(
    items: list[_Item],
    codes: dict[str, np.ndarray],
    dag: CausalDAG,
    staging: Path,
    starts: list[int],
    options: dict[str, Any],
    progress: bool,
) -> list[int]:
    """Decode one shard of images at a time into ``staging``; ``labels.csv`` row by row."""
    from tqdm.auto import tqdm

    size, shard_size = int(options["size"]), int(options["shard_size"])
    crop, max_pixels = options["crop"], int(options["max_pixels"])
    nodes = dag.label_nodes
    states = {node: [*dag.states(node), ""] for node in nodes}  # code -1 → ""
    counts = []
    bar = tqdm(total=len(items), desc="import", unit="img", file=sys.stderr, disable=not progress)
    with bar, open(staging / "labels.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["index", *nodes, FILE_COLUMN])
        for k, start in enumerate(starts):
            chunk = items[start : start + shard_size]
            images = np.empty((len(chunk), size, size, 3), np.uint8)
            for i, item in enumerate(chunk):
                images[i] = load_image(item.path, size, crop, max_pixels, item.where)
                bar.update(1)
            columns = {"images": images}
            columns.update({n: codes[n][start : start + len(chunk)] for n in nodes})
            write_npz(staging / shard_name(k), columns)
            for i, item in enumerate(chunk):
                row = [states[n][int(codes[n][start + i])] for n in nodes]
                writer.writerow([start + i, *row, item.name])
            counts.append(len(chunk))
            del images, columns
    return counts


def _meta(
    dag: CausalDAG,
    dag_file: str,
    source: dict[str, Any],
    size: int,
    shard_size: int,
    counts: list[int],
    codes: dict[str, np.ndarray],
) -> dict[str, Any]:
    """``meta.json`` as procgen writes it, with ``generator: null`` and the ``source``."""
    from causalscene.utils import package_version

    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "generator": None,
        "source": source,
        "package_version": package_version(),
        "dag": {
            "file": dag_file,
            "name": dag.name,
            "digest": dag.digest(),
            "definition": dag.to_dict(),
        },
        "labels": {node: list(dag.states(node)) for node in dag.label_nodes},
        "rendered": list(dag.rendered_nodes),
        "hidden": list(dag.hidden_nodes),
        "extras": {},
        "data": {"key": "images", "dtype": "uint8", "shape": [size, size, 3]},
        "image_size": size,
        "count": int(sum(counts)),
        "shard_size": shard_size,
        "shards": [{"file": shard_name(k), "count": c} for k, c in enumerate(counts)],
        "missing": {node: int((c < 0).sum()) for node, c in codes.items()},
    }
