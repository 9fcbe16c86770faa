"""What the SHA-256 integrity checks cost next to one training epoch (goal: < 2 %).

Writes a dataset folder as procgen does (one shard per ``--shard-size`` images, each shard's
SHA-256 in meta.json), trains one epoch of a CausalVAE on it with checkpoints every
``--checkpoint-every`` steps (each one a ``checkpoint.pt`` plus its ``.sha256`` sidecar), then
times what integrity adds:

- load: hashing every shard (``ShardDataset`` verifies them) and the checkpoint (``load_run``);
- write: ``write_with_sidecar`` minus a plain atomic write of the same checkpoint bytes (median of
  ``--repeats``), times the number of checkpoints one epoch writes.

Usage::

    python benchmarks/bench_integrity.py --images 2048 --image-size 32 --base-channels 16

Prints one line and a JSON summary (``ratio`` = integrity seconds / epoch seconds).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from causalscene.cli import run_script
from causalscene.dag import CausalDAG
from causalscene.datasets import FORMAT, FORMAT_VERSION, shard_name, write_npz
from causalscene.model import CausalVAE
from causalscene.safeio import atomic_write, sha256_file, write_with_sidecar
from causalscene.train import TrainConfig, fit, load_dataset


def write_dataset(root: Path, dag: CausalDAG, n: int, size: int, shard_size: int) -> list[Path]:
    """Random images with labels drawn from ``dag``, as a shard folder; the shard paths."""
    rng = np.random.default_rng(0)
    labels = {k: v for k, v in dag.sample(n, seed=0).items() if k in dag.label_nodes}
    root.mkdir(parents=True)
    shards, entries = [], []
    for k, start in enumerate(range(0, n, shard_size)):
        stop = min(n, start + shard_size)
        images = rng.integers(0, 256, (stop - start, size, size, 3), dtype=np.uint8)
        path = write_npz(
            root / shard_name(k),
            {"images": images, **{m: v[start:stop] for m, v in labels.items()}},
        )
        shards.append(path)
        entries.append({"file": path.name, "count": stop - start, "sha256": sha256_file(path)})
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "dag": {"definition": dag.to_dict()},
        "labels": {m: list(dag.states(m)) for m in dag.label_nodes},
        "data": {"key": "images"},
        "image_size": size,
        "count": n,
        "shards": entries,
    }
    (root / "meta.json").write_text(json.dumps(meta))
    return shards


def timed(action, repeats: int = 1) -> float:
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        action()
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dag", default="rpg_fight")
    p.add_argument("--images", type=int, default=2048)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--base-channels", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--shard-size", type=int, default=4096)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    dag = CausalDAG.load(args.dag)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        shards = write_dataset(data, dag, args.images, args.image_size, args.shard_size)
        config = TrainConfig(
            epochs=1,
            batch_size=args.batch_size,
            base_channels=args.base_channels,
            checkpoint_every=args.checkpoint_every,
            device=args.device,
            progress=False,
        )
        model = CausalVAE(dag, args.image_size, config.latent_dim, base_channels=args.base_channels)
        run = Path(tmp) / "run"
        history = fit(model, load_dataset(data, dag), config, out=run)
        epoch = history[-1]["seconds"]
        checkpoint = run / "checkpoint.pt"
        payload = checkpoint.read_bytes()
        plain = timed(lambda: atomic_write(Path(tmp) / "plain.pt", payload), args.repeats)
        sidecar = timed(lambda: write_with_sidecar(Path(tmp) / "side.pt", payload), args.repeats)
        steps = math.ceil(round(args.images * 0.9) / args.batch_size)
        writes = steps // args.checkpoint_every + 1
        verify_shards = timed(lambda: [sha256_file(s) for s in shards], args.repeats)
        verify_ckpt = timed(lambda: sha256_file(checkpoint), args.repeats)
    write_extra = max(0.0, sidecar - plain) * writes
    cost = verify_shards + verify_ckpt + write_extra
    result = {
        "device": args.device,
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "images": args.images,
        "image_size": args.image_size,
        "epoch_seconds": epoch,
        "checkpoint_mb": len(payload) / 2**20,
        "checkpoints_per_epoch": writes,
        "verify_shards_seconds": verify_shards,
        "verify_checkpoint_seconds": verify_ckpt,
        "sidecar_write_extra_seconds": write_extra,
        "integrity_seconds": cost,
        "ratio": cost / epoch,
    }
    print(
        f"device {args.device}: epoch {epoch:.2f} s, integrity {cost * 1e3:.1f} ms "
        f"({100 * cost / epoch:.2f} % of the epoch)"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(run_script(main))
