"""Procedural datasets whose labels are sampled from their DAG files, so the truth is known.

Every generator draws the labels of a batch by ancestral sampling from its DAG
(:meth:`causalscene.dag.CausalDAG.sample`) and renders from the *rendered* nodes only; hidden nodes
shape the labels' joint distribution but never the pixels. Generators (``name → module``):

* ``rpg``: fight scene of the tutorial (``dags/rpg_fight.yaml``), :mod:`.rpg`
* ``faces``: cartoon faces with CelebA-like attributes (``dags/faces.yaml``), :mod:`.faces`
* ``morpho``: thickness → intensity digits after Morpho-MNIST (``dags/morpho.yaml``), :mod:`.morpho`
* ``mog``: the CAGE paper's 2-D mixture toy (``dags/mog.yaml``), points, :mod:`.mog`

The folder sits at the repository's top level but is installed as ``causalscene.procgen`` (the
name ``procgen`` belongs to another PyPI project); its DAG files are the package data
``causalscene.dags``, found by name (:meth:`causalscene.dag.CausalDAG.shipped`).

:func:`make_dataset` writes the shard folder format of :mod:`causalscene.datasets` into a staging
folder and renames it when complete. Shard ``k`` draws from its own random stream
(``SeedSequence(seed, spawn_key=(k,))``), so output depends on the seed only: not on the number
of worker processes, and the first shards of a larger dataset equal those of a smaller one.
"""

from __future__ import annotations

import csv
import importlib
import io
import logging
import multiprocessing
import os
import shutil
import sys
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

__all__ = [
    "GENERATORS",
    "make_dataset",
    "load_dag",
    "generator",
    "sample_batch",
    "write_preview",
    "default_workers",
]

#: generator name → its module (``causalscene.procgen.rpg``, ...)
GENERATORS = {name: f"{__name__}.{name}" for name in ("rpg", "faces", "morpho", "mog")}
DEFAULT_SHARD_SIZE = 4096
#: items rendered at once inside a shard (fixed: it is part of the random stream's layout)
BATCH = 512


def generator(name: str) -> ModuleType:
    """The module of a generator (``rpg``, ``faces``, ``morpho``, ``mog``)."""
    if name not in GENERATORS:
        raise ValueError(f"unknown generator '{name}' (known: {', '.join(GENERATORS)})")
    return importlib.import_module(GENERATORS[name])


@lru_cache(maxsize=8)
def load_dag(name: str):
    """The DAG a generator samples its labels from (a shipped DAG: its module's ``DAG_FILE``)."""
    from causalscene.dag import CausalDAG

    return CausalDAG.shipped(Path(generator(name).DAG_FILE).stem)


def sample_batch(
    name: str,
    n: int,
    size: int | None = None,
    seed: int | np.random.Generator = 0,
    factorial: bool = False,
    workers: int = 1,
    **options: Any,
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Sample ``n`` labelled items in memory: ``(data, labels, extras)``.

    ``labels`` holds every DAG node, hidden ones included (ground truth for tests); the data is
    rendered from the rendered nodes alone, :data:`BATCH` items at a time, each batch with its own
    random stream drawn from ``seed``: the same items whatever ``workers`` (processes) render them.

    ``factorial=True`` draws each rendered node uniformly and independently instead of from the
    DAG (a factorial design; ``labels`` then holds the rendered nodes only). A measurer trained on
    it cannot lean on the DAG's correlations (read "female, so no goatee"), which an image made
    under do(goatee = yes) breaks: see ``causalscene evaluate``'s probe.
    """
    module = generator(name)
    dag = load_dag(name)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    size = module.DEFAULT_SIZE if size is None else int(size)
    if factorial:
        codes = {v: rng.integers(dag.cardinality(v), size=n) for v in dag.rendered_nodes}
    else:
        codes = dag.sample(n, seed=rng)
    starts = range(0, n, BATCH)
    seeds = rng.integers(2**63, size=len(starts))
    jobs = [
        (name, {v: codes[v][a : a + BATCH] for v in dag.rendered_nodes}, size, int(s), options)
        for a, s in zip(starts, seeds)
    ]
    if workers > 1 and len(jobs) > 1:
        context = multiprocessing.get_context(
            "fork" if sys.platform.startswith("linux") else "spawn"
        )
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context) as pool:
            rendered = list(pool.map(_render_job, jobs))
    else:
        rendered = [_render_job(job) for job in jobs]
    extras = [extra for _, extra in rendered]
    joined = {k: np.concatenate([e[k] for e in extras]) for k in (extras[0] if extras else {})}
    data = np.concatenate([d for d, _ in rendered]) if rendered else np.zeros((0,))
    return data, codes, joined


def _render_job(job: tuple) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One batch of :func:`sample_batch`: ``(data, extras)`` rendered with its own stream."""
    name, rendered, size, seed, options = job
    return generator(name).render(rendered, size, np.random.default_rng(seed), **options)


def _shard_job(job: tuple) -> tuple[int, int]:
    name, index, count, size, seed, options, folder = job
    module = generator(name)
    dag = load_dag(name)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
    codes = dag.sample(count, seed=rng)
    parts, extras_parts = [], []
    for start in range(0, count, BATCH):
        stop = min(count, start + BATCH)
        rendered = {node: codes[node][start:stop] for node in dag.rendered_nodes}
        data, extras = module.render(rendered, size, rng, **options)
        parts.append(data)
        extras_parts.append(extras)
    from causalscene.datasets import shard_name, write_npz

    columns: dict[str, np.ndarray] = {getattr(module, "DATA_KEY", "images"): np.concatenate(parts)}
    for node in dag.label_nodes:
        columns[node] = codes[node].astype(np.int64)
    for key in getattr(module, "EXTRAS", {}):
        columns[key] = np.concatenate([e[key] for e in extras_parts]).astype(np.float32)
    write_npz(Path(folder) / shard_name(index), columns)
    return index, count


def make_dataset(
    name: str,
    n: int,
    size: int | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    overwrite: bool = False,
    *,
    shard_size: int = DEFAULT_SHARD_SIZE,
    workers: int = 1,
    progress: bool | Callable[[int], None] = False,
    preview: bool = False,
    **options: Any,
) -> Path:
    """Generate ``n`` items of generator ``name`` into the folder ``out``; return its path.

    Args:
        size: image size in pixels (square); the generator's default when None. Ignored by mog.
        seed: the dataset's seed: same seed, byte-identical shards, ``labels.csv`` and meta.
        overwrite: replace an existing dataset folder (never a folder without ``meta.json``).
        shard_size: items per shard (memory use is flat in ``n``, proportional to this).
        workers: processes rendering shards in parallel (output does not depend on it).
        progress: show a progress bar (tqdm), or a callback receiving the items just written.
        preview: also write ``preview.png``, a labelled grid of the first items.
        options: generator options, e.g. ``mnist="path/to/train-images-idx3-ubyte.gz"``.
    """
    from causalscene.datasets import (
        FORMAT,
        FORMAT_VERSION,
        commit_folder,
        shard_name,
        staging_folder,
    )
    from causalscene.safeio import sha256_file
    from causalscene.utils import atomic_write_json, package_version

    module = generator(name)
    if out is None:
        raise ValueError("make_dataset: out (the output folder) is required")
    n, seed, shard_size, workers = int(n), int(seed), int(shard_size), int(workers)
    if n < 1:
        raise ValueError(f"--n must be at least 1, got {n}")
    if shard_size < 1:
        raise ValueError(f"shard_size must be at least 1, got {shard_size}")
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    if seed < 0:
        raise ValueError(f"--seed must be >= 0, got {seed}")
    size = module.DEFAULT_SIZE if size is None else int(size)
    if size < getattr(module, "MIN_SIZE", 0):
        raise ValueError(
            f"--size {size} is too small for {name} (at least {module.MIN_SIZE} pixels)"
        )
    options = (
        module.check_options(size=size, **options) if hasattr(module, "check_options") else options
    )
    dag = load_dag(name)
    out = Path(out)
    staging = staging_folder(out, overwrite)
    try:
        if hasattr(module, "prepare"):
            module.prepare(size, **options)  # e.g. sprite banks: computed once, shared by fork
        jobs = [
            (name, k, min(shard_size, n - start), size, seed, options, str(staging))
            for k, start in enumerate(range(0, n, shard_size))
        ]
        bar = None
        report: Callable[[int], object]
        if callable(progress):
            report = progress
        elif progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=n, desc=f"procgen {name}", unit="img", file=sys.stderr)
            report = bar.update
        else:
            report = lambda k: None  # noqa: E731
        counts: dict[int, int] = {}
        if workers == 1 or len(jobs) == 1:
            for job in jobs:
                index, count = _shard_job(job)
                counts[index] = count
                report(count)
        else:
            context = multiprocessing.get_context(
                "fork" if sys.platform.startswith("linux") else "spawn"
            )
            with ProcessPoolExecutor(
                max_workers=min(workers, len(jobs)), mp_context=context
            ) as pool:
                for index, count in pool.map(_shard_job, jobs):
                    counts[index] = count
                    report(count)
        if bar is not None:
            bar.close()
        extras = dict(getattr(module, "EXTRAS", {}))
        _write_labels_csv(staging, dag, [shard_name(k) for k in range(len(jobs))], extras)
        data_key = getattr(module, "DATA_KEY", "images")
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "generator": name,
            "package_version": package_version(),
            "dag": {
                "file": module.DAG_FILE,
                "name": dag.name,
                "digest": dag.digest(),
                "definition": dag.to_dict(),
            },
            "labels": {node: list(dag.states(node)) for node in dag.label_nodes},
            "rendered": list(dag.rendered_nodes),
            "hidden": list(dag.hidden_nodes),
            "extras": extras,
            "data": _data_spec(data_key, size),
            "seed": seed,
            "image_size": None if data_key != "images" else size,
            "count": n,
            "shard_size": shard_size,
            "shards": [
                {
                    "file": shard_name(k),
                    "count": counts[k],
                    "sha256": sha256_file(staging / shard_name(k)),
                }
                for k in range(len(jobs))
            ],
            "options": {k: str(v) if isinstance(v, Path) else v for k, v in options.items()},
        }
        atomic_write_json(staging / "meta.json", meta)
        if preview:
            write_preview(name, staging, staging / "preview.png")
        return commit_folder(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _data_spec(key: str, size: int) -> dict[str, Any]:
    if key == "points":
        return {"key": key, "dtype": "float32", "shape": [2]}
    return {"key": key, "dtype": "uint8", "shape": [size, size, 3]}


def _write_labels_csv(folder: Path, dag, shards: list[str], extras: Mapping[str, str]) -> None:
    from causalscene.datasets import read_npz
    from causalscene.utils import atomic_write_text

    nodes = dag.label_nodes
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["index", *nodes, *extras])
    index = 0
    for shard in shards:
        arrays = read_npz(folder / shard)
        count = len(arrays[nodes[0]])
        states = {node: np.array([*dag.states(node), ""], dtype=object) for node in nodes}
        names = [states[node][np.asarray(arrays[node])] for node in nodes]  # -1 → ""
        values = [np.asarray(arrays[key]) for key in extras]
        for i in range(count):
            writer.writerow(
                [index + i, *(col[i] for col in names), *(f"{v[i]:.4f}" for v in values)]
            )
        index += count
        del arrays
    atomic_write_text(folder / "labels.csv", buffer.getvalue())


def write_preview(name: str, root: str | Path, path: str | Path, count: int = 24) -> Path:
    """A labelled grid (PNG) of the first ``count`` items of a dataset folder (a scatter plot of
    up to 2,000 points for point data)."""
    from causalscene.datasets import read_npz

    root = Path(root)
    arrays = read_npz(root / "shard-00000.npz")
    module = generator(name)
    dag = load_dag(name)
    if getattr(module, "DATA_KEY", "images") == "points":
        keep = min(2000, len(arrays["points"]))
        labels = {node: np.asarray(arrays[node][:keep]) for node in dag.label_nodes}
        return module.plot_points(np.asarray(arrays["points"][:keep]), labels, dag, path)
    from causalscene.plots import save_image_grid

    images = np.asarray(arrays["images"][:count])
    decoded = [
        {
            node: dag.states(node)[int(arrays[node][i])] if arrays[node][i] >= 0 else "?"
            for node in dag.label_nodes
        }
        for i in range(len(images))
    ]
    return save_image_grid(
        images,
        path,
        ncol=6,
        titles=[module.caption(d) for d in decoded],
        suptitle=f"{name}: the first {len(images)} items (labels sampled from dags/{module.DAG_FILE})",
    )


def default_workers() -> int:
    """Worker processes to use by default: the usable CPUs, at most 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus))
