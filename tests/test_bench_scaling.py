"""benchmarks/plot_train_scaling.py on real bench_train.py summaries (tiny CPU runs)."""

import csv
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--device", "cpu", "--batch-size", "2", "--steps", "1", "--warmup", "1"]
TINY += ["--base-channels", "4", "--latent-dim", "4"]


def _bench(size: int, out: Path) -> dict:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_train.py"), *TINY]
    cmd += ["--image-size", str(size), "--out", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT, timeout=600)
    return json.loads(out.read_text())


def test_scaling_table_and_plot_from_summaries(tmp_path):
    summaries = {s: _bench(s, tmp_path / f"scale_{s}.json") for s in (32, 16)}
    script = ROOT / "benchmarks" / "plot_train_scaling.py"
    files = [str(tmp_path / f"scale_{s}.json") for s in (32, 16)]
    proc = subprocess.run(
        [sys.executable, str(script), *files, "--out", str(tmp_path / "plot")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "plot" / "train_scaling.png").stat().st_size > 0
    with (tmp_path / "plot" / "train_scaling.csv").open() as f:
        rows = list(csv.DictReader(f))
    # no CUDA here: the eager loops only, two per size, sizes ascending
    assert [int(r["image_size"]) for r in rows] == [16, 16, 32, 32]
    for r in rows:
        key = (
            "pyro_collapsed_images_per_s"
            if r["loop"].startswith("Pyro")
            else "pytorch_images_per_s"
        )
        expected = summaries[int(r["image_size"])][key]
        assert float(r["images_per_s"]) == round(expected, 1)
        assert abs(float(r["pixels_per_s"]) / (expected * int(r["image_size"]) ** 2) - 1) < 1e-3
    assert "device: CPU" in proc.stdout


def test_bad_summary_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"device": "x"}')
    script = ROOT / "benchmarks" / "plot_train_scaling.py"
    proc = subprocess.run(
        [sys.executable, str(script), str(bad), "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "bad.json" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()
