"""Training throughput against image size, from ``bench_train.py --out`` summaries.

    for s in 32 64 128; do
      python benchmarks/bench_train.py --device cuda --cuda-graph --bf16 --channels-last \
        --batch-size 1024 --image-size $s --out scale_$s.json
    done
    python benchmarks/plot_train_scaling.py scale_*.json --out DIR

writes ``DIR/train_scaling.csv`` (one row per summary: image size, images/s and pixels/s of each
loop the summary timed) and ``DIR/train_scaling.png`` (images/s and megapixels/s against the
image size, log scales). The ratio printed per size is the Pyro step's throughput over the
pure-PyTorch loop timed in the same run (captured loops where the summary has them).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from causalscene.cli import run_script

# (label, key in bench_train's summary): the captured loops first, the eager ones where there are none
LOOPS = (
    ("Pyro, collapsed labels, captured", "pyro_collapsed_graph_images_per_s"),
    ("pure PyTorch, captured", "pytorch_graph_images_per_s"),
    ("Pyro, collapsed labels", "pyro_collapsed_images_per_s"),
    ("pure PyTorch", "pytorch_images_per_s"),
)


def read(paths: list[Path]) -> list[dict]:
    """The summaries, sorted by image size; one line naming the file for a bad one."""
    rows = []
    for path in paths:
        try:
            summary = json.loads(path.read_text())
            size, _ = int(summary["image_size"]), str(summary["device"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{path}: not a bench_train.py summary ({err})") from None
        rows.append({"file": str(path), "image_size": size, **summary})
    if len({r["device"] for r in rows}) > 1:
        raise ValueError("the summaries come from different devices: " + ", ".join(
            sorted({r["device"] for r in rows})))  # fmt: skip
    return sorted(rows, key=lambda r: r["image_size"])


def loops(rows: list[dict]) -> list[tuple[str, str]]:
    """The loops every summary timed (captured ones only where every summary has them)."""
    return [(label, key) for label, key in LOOPS if all(key in r for r in rows)]


def write_csv(rows: list[dict], out: Path) -> Path:
    path = out / "train_scaling.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["device", "image_size", "batch_size", "loop", "images_per_s", "pixels_per_s"]
        )
        for r in rows:
            for label, key in loops(rows):
                ips = float(r[key])
                writer.writerow([r["device"], r["image_size"], r["batch_size_per_process"], label,
                                 f"{ips:.1f}", f"{ips * r['image_size'] ** 2:.4g}"])  # fmt: skip
    return path


def plot(rows: list[dict], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["image_size"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for label, key in loops(rows):
        ips = [float(r[key]) for r in rows]
        axes[0].plot(sizes, ips, "o-", label=label)
        axes[1].plot(sizes, [v * s * s / 1e6 for v, s in zip(ips, sizes)], "o-", label=label)
    for ax, ylabel in zip(axes, ("images / s", "megapixels / s")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.set_xlabel("image size (px)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    first = rows[0]
    fig.suptitle(
        f"Training step throughput, {first['device']}, batch {first['batch_size_per_process']}"
        f"{', bf16' if first.get('bf16') else ''}",
        fontsize=9,
    )
    fig.tight_layout()
    path = out / "train_scaling.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("summaries", nargs="+", type=Path, help="bench_train.py --out JSON files")
    p.add_argument("--out", type=Path, required=True, help="folder for the CSV and the PNG")
    args = p.parse_args(argv)
    try:
        rows = read(args.summaries)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    (label, key), (_, pytorch_key) = loops(rows)[:2]  # Pyro's loop, then PyTorch's
    for r in rows:
        ratio = r[key] / r[pytorch_key]
        print(f"{r['image_size']:4d} px  {label}: {r[key]:9.0f} images/s  "
              f"({r[key] * r['image_size'] ** 2 / 1e6:7.1f} Mpx/s)  ratio vs pure PyTorch {ratio:.3f}")  # fmt: skip
    print(f"device: {rows[0]['device']}")
    print(write_csv(rows, args.out))
    print(plot(rows, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
