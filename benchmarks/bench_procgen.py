"""Procedural data: generation speed and memory, and attribute recovery from pixels.

Speed (``--task speed``): ``procgen.make_dataset("rpg", N, 64)`` for N in ``--sizes`` (default
10,000 and 100,000), each in a fresh child process that reports its wall time and peak resident
memory (its own and its worker processes'), beside a naive baseline in the same run that draws
one scene at a time with PIL's ``ImageDraw`` (same background, two figures of the same number of
parts, noise), without anti-aliasing and 2× supersampled (the vectorised sprites' quality) —
reported as images/s and as ratios. For the issue's "2 cores" figure, pin the process:
``taskset -c 0,1 python benchmarks/bench_procgen.py --task speed --workers 2``.

Recovery (``--task probe``): for rpg and faces at 64 × 64, ``causalscene.probes.ImageProbe`` is
trained on 5,000 generated images and scored on 1,000 held-out ones, per rendered attribute (goal
≥ 97 %). For rpg it is also trained on the hidden nodes; their held-out accuracy is compared with
the Bayes accuracy given the rendered labels, ``sum_r max_h P(h, r)``, computed by enumerating
the DAG's joint: pixels depend on hidden nodes only through their rendered children, so no probe
can beat it by more than sampling error.

Examples::

    python benchmarks/bench_procgen.py --task speed --workers 2            # the issue's figure
    python benchmarks/bench_procgen.py --task probe --device cuda
    python benchmarks/bench_procgen.py --task all --device cuda --out bench_procgen.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from causalscene.cli import run_script  # noqa: E402


# ---------------------------------------------------------------------------- speed
def _child(n: int, size: int, workers: int, out: str) -> None:
    from causalscene import procgen

    start = time.perf_counter()
    procgen.make_dataset("rpg", n, size, seed=0, out=out, workers=workers)
    seconds = time.perf_counter() - start
    own = _peak_rss_mb()
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"n": n, "seconds": seconds, "peak_rss_mb": own, "peak_worker_rss_mb": kids}))


def _peak_rss_mb() -> float:
    """Peak resident memory of this process image (VmHWM; ru_maxrss would include the memory of
    the process that forked us before exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run_child(n: int, size: int, workers: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench_procgen_"))
    try:
        cmd = [
            sys.executable,
            __file__,
            "--child",
            str(n),
            str(size),
            str(workers),
            str(tmp / "data"),
        ]
        done = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        result = json.loads(done.stdout.strip().splitlines()[-1])
        result["bytes_on_disk"] = sum(p.stat().st_size for p in (tmp / "data").iterdir())
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def pil_scene(
    labels: dict, size: int, rng: np.random.Generator, supersample: int = 1
) -> np.ndarray:
    """The naive baseline: one scene drawn with PIL ImageDraw, one primitive call at a time.

    ``supersample=2`` draws at twice the size and box-filters down: the anti-aliasing of the
    vectorised sprites (PIL's ImageDraw does not anti-alias).
    """
    from PIL import Image, ImageDraw

    final = size
    size = size * supersample

    sky = rng.uniform(0.3, 1.0, 3)
    ground = rng.uniform(0.2, 0.6, 3)
    horizon = int(rng.uniform(0.52, 0.68) * size)
    image = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(image)
    for row in range(horizon):  # a sky gradient, one line per row
        t = row / max(horizon, 1)
        c = tuple(int(255 * (s * (1 - t) + 0.8 * t)) for s in sky)
        draw.line([(0, row), (size, row)], fill=c)
    draw.rectangle([0, horizon, size, size], fill=tuple(int(255 * g) for g in ground))
    for side, (creature, kind, pose) in enumerate(
        (
            (labels["actor"], labels["actor_type"], labels["action"]),
            (labels["reactor"], labels["reactor_type"], labels["reaction"]),
        )
    ):
        unit = 0.42 * size * rng.uniform(0.84, 1.16)
        cx = (0.21 if side == 0 else 0.79) * size + rng.uniform(-4, 4)
        feet = rng.uniform(0.82, 0.95) * size
        face = 1 if side == 0 else -1
        colour = tuple(int(255 * c) for c in rng.uniform(0.2, 0.9, 3))
        lean = 0.3 * (pose - 1) * face
        parts = 14 if creature == 0 else 12  # as many parts as the vectorised figures
        for k in range(parts):
            a = rng.uniform(-1, 1) + lean
            x0, y0 = cx + 0.1 * unit * np.sin(k), feet - unit * (0.2 + 0.05 * k)
            x1, y1 = x0 + 0.2 * unit * np.sin(a) * face, y0 - 0.2 * unit * np.cos(a)
            width = max(1, int(unit * (0.04 if creature == 0 else 0.12)))
            draw.line([(x0, y0), (x1, y1)], fill=colour, width=width)
            draw.ellipse([x1 - width, y1 - width, x1 + width, y1 + width], fill=colour)
        r = 0.09 * unit
        head = (cx + 0.03 * unit * face, feet - 0.85 * unit)
        draw.ellipse([head[0] - r, head[1] - r, head[0] + r, head[1] + r], fill=colour)
        draw.polygon(
            [
                (head[0], head[1] - r),
                (head[0] - r, head[1] - 2 * r),
                (head[0] - 0.3 * r, head[1] - r),
            ],
            fill=(230, 220, 180),
        )
        if kind == 2:
            draw.ellipse(
                [cx - 2, feet - unit * 0.5, cx + 2, feet - unit * 0.5 + 4], fill=(80, 200, 60)
            )
    if supersample > 1:
        image = image.resize((final, final), Image.BOX)
    pixels = np.asarray(image, np.float32)
    pixels += rng.uniform(-10, 10, pixels.shape)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def bench_speed(sizes: list[int], size: int, workers: int, baseline_n: int) -> dict:
    from causalscene import procgen

    runs = [_run_child(n, size, workers) for n in sizes]  # first, from a small parent process
    for run in runs:
        run["images_per_s"] = run["n"] / run["seconds"]
    dag = procgen.load_dag("rpg")
    rng = np.random.default_rng(0)
    codes = dag.sample(baseline_n, seed=rng)
    pil_rates = {}
    for ss in (1, 2):
        start = time.perf_counter()
        for i in range(baseline_n):
            pil_scene({k: int(v[i]) for k, v in codes.items()}, size, rng, supersample=ss)
        pil_rates[ss] = baseline_n / (time.perf_counter() - start)
    pil_rate = pil_rates[2]
    # the same work in-process, single worker, for a like-for-like ratio (no writing)
    procgen.generator("rpg").prepare(size)
    start = time.perf_counter()
    procgen.sample_batch("rpg", baseline_n, size, seed=1)
    vector_rate = baseline_n / (time.perf_counter() - start)
    return {
        "image_size": size,
        "workers": workers,
        "naive_pil_images_per_s_no_antialias": pil_rates[1],
        "naive_pil_images_per_s_2x_supersampled": pil_rates[2],
        "vectorised_images_per_s_one_process_in_memory": vector_rate,
        "ratio_vectorised_vs_pil_one_process": vector_rate / pil_rate,
        "ratio_vectorised_vs_pil_no_antialias_one_process": vector_rate / pil_rates[1],
        "runs": runs,
        "ratio_make_dataset_vs_pil_2x": runs[-1]["images_per_s"] / pil_rate,
        "goal_100k_under_60s": next((r["seconds"] < 60 for r in runs if r["n"] == 100_000), None),
        "peak_rss_ratio_largest_vs_smallest": runs[-1]["peak_rss_mb"] / runs[0]["peak_rss_mb"],
    }


# ---------------------------------------------------------------------------- probes
def bayes_accuracy(dag, hidden: str) -> float:
    """Best accuracy of any predictor of ``hidden`` that sees the rendered labels only:
    ``sum_r max_h P(h, r)``, by enumerating the DAG's joint distribution."""
    nodes = dag.nodes
    grid = np.array(list(itertools.product(*(range(dag.cardinality(v)) for v in nodes))))
    codes = {v: grid[:, i] for i, v in enumerate(nodes)}
    p = dag.joint_probability(codes)
    rendered = dag.rendered_nodes
    key = np.ravel_multi_index([codes[v] for v in rendered], [dag.cardinality(v) for v in rendered])
    table = np.zeros((key.max() + 1, dag.cardinality(hidden)))
    np.add.at(table, (key, codes[hidden]), p)
    return float(table.max(axis=1).sum())


def bench_probe(
    names: list[str],
    size: int,
    n_train: int,
    n_test: int,
    epochs: int,
    device: str,
    batch_size: int = 64,
    lr: float = 1e-3,
    width: int = 48,
) -> dict:
    import torch

    from causalscene import procgen
    from causalscene.probes import ImageProbe

    torch.manual_seed(0)
    out = {}
    for name in names:
        dag = procgen.load_dag(name)
        start = time.perf_counter()
        images, codes, _ = procgen.sample_batch(name, n_train + n_test, size, seed=123)
        gen_seconds = time.perf_counter() - start
        attrs = {v: dag.cardinality(v) for v in dag.rendered_nodes}
        hidden = {v: dag.cardinality(v) for v in dag.hidden_nodes}
        probe = ImageProbe({**attrs, **hidden}, size, width=width)
        start = time.perf_counter()
        train = {v: codes[v][:n_train] for v in {**attrs, **hidden}}
        probe.fit(
            images[:n_train],
            train,
            epochs=epochs,
            seed=0,
            device=device,
            batch_size=batch_size,
            lr=lr,
        )
        fit_seconds = time.perf_counter() - start
        test = {v: codes[v][n_train:] for v in {**attrs, **hidden}}
        accuracy = probe.accuracy(images[n_train:], test)
        result = {
            "rendered_accuracy": {v: accuracy[v] for v in attrs},
            "min_rendered_accuracy": min(accuracy[v] for v in attrs),
            "goal_97_percent": min(accuracy[v] for v in attrs) >= 0.97,
            "generation_seconds": gen_seconds,
            "fit_seconds": fit_seconds,
        }
        if hidden:
            se = lambda q: float(np.sqrt(q * (1 - q) / n_test))  # noqa: E731
            result["hidden"] = {
                v: {
                    "probe_accuracy": accuracy[v],
                    "bayes_accuracy_given_rendered_labels": bayes_accuracy(dag, v),
                    "excess_in_standard_errors": (accuracy[v] - bayes_accuracy(dag, v))
                    / se(bayes_accuracy(dag, v)),
                }
                for v in hidden
            }
            result["hidden_not_recoverable_beyond_children"] = all(
                h["excess_in_standard_errors"] < 3.0 for h in result["hidden"].values()
            )
        out[name] = result
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", choices=["speed", "probe", "all"], default="all")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--baseline-n", type=int, default=2000)
    parser.add_argument("--n-train", type=int, default=5000)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--width", type=int, default=48, help="ImageProbe width")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--device", default=None, help="probe device (default: cuda when present)")
    parser.add_argument(
        "--seed", type=int, default=0, help="(labels and nuisance are seeded per task)"
    )
    parser.add_argument("--out", type=Path, default=None, help="write the JSON result here")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:  # before anything imports torch: its memory would count in the peaks
        n, size, workers, out = args.child
        _child(int(n), int(size), int(workers), out)
        return 0
    if args.device is None:
        args.device = "cuda" if _cuda() else "cpu"
    result = {
        "device": _device_name(args.device),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    if args.task in ("speed", "all"):
        result["speed"] = bench_speed(args.sizes, args.size, args.workers, args.baseline_n)
    if args.task in ("probe", "all"):
        result["probe"] = bench_probe(
            ["rpg", "faces"],
            args.size,
            args.n_train,
            args.n_test,
            args.epochs,
            args.device,
            args.batch_size,
            args.lr,
            args.width,
        )
        result["probe_config"] = {
            "n_train": args.n_train,
            "n_test": args.n_test,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "width": args.width,
            "image_size": args.size,
        }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        return False


def _device_name(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{device}: {torch.cuda.get_device_name(0)}"
    return f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} cores"


if __name__ == "__main__":
    sys.exit(run_script(main))
