"""Every benchmark script runs with tiny flags (so none rots); the numbers come from real runs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CASES = {
    "bench_bif.py": ["--networks", "asia", "--repeats", "1", "--json"],
    "bench_queries.py": ["--repeats", "1", "--networks", "asia,child", "--queries", "3"],
    "bench_integrity.py": [
        "--images",
        "48",
        "--image-size",
        "16",
        "--base-channels",
        "4",
        "--batch-size",
        "16",
        "--checkpoint-every",
        "1",
        "--repeats",
        "1",
    ],  # fmt: skip
    "bench_train.py": [
        "--cuda-graph",  # parsed; captured loops are timed only on a CUDA device
        "--consistency-weight",  # training's extra term, in both loops
        "0.25",
        "--consistency-fraction",  # on half of each batch
        "0.5",
        "--device",
        "cpu",
        "--batch-size",
        "4",
        "--steps",
        "1",
        "--warmup",
        "1",
        "--image-size",
        "16",
        "--base-channels",
        "4",
    ],
    "bench_cage.py": [
        "--device",
        "cpu",
        "--permutations",
        "3",
        "--num-latents",
        "200",
        "--num-train",
        "300",
        "--latent-dim",
        "8",
        "--baseline-permutations",
        "1",
        "--json",
    ],
    "bench_modules.py": [
        "--device",
        "cpu",
        "--image-size",
        "64",
        "--channels",
        "16",
        "--pairs",
        "4",
        "--json",
    ],
    # a tiny rpg run (not timed), then evaluate with the old settings, the twin cache, and both
    "bench_evaluate.py": [
        "--device",
        "cpu",
        "--images",
        "200",
        "--size",
        "32",
        "--probe-epochs",
        "3",
        "--probe-images",
        "200",
        "--n-per-state",
        "2",
        "--n-counterfactual",
        "8",
        "--json",
    ],  # fmt: skip
    # the shipped probe's trainer (GPU in use), here a 64-image probe for one epoch on the CPU
    "pretrained_probe.py": ["rpg", "--images", "64", "--epochs", "1", "--device", "cpu"],
}


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(CASES))
def test_benchmark_runs_with_tiny_flags(script, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *CASES[script]]
        + (["--out", str(tmp_path / "out")] if script == "pretrained_probe.py" else []),
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "device" in out.lower()
    if "--json" in CASES[script]:
        last = [line for line in out.splitlines() if line.startswith("{")][-1]
        assert json.loads(last)
    if script == "bench_evaluate.py":  # the kept twins change no number of eval.json
        assert json.loads(last)["cache_identical"] is True


@pytest.mark.slow
def test_bench_train_compares_each_loop_with_an_earlier_run(tmp_path):
    """``--compare``: each loop's images/s over an earlier summary's (how ``run_gpu.sh ddp``
    reports 2 GPUs over one)."""
    tiny = [a for a in CASES["bench_train.py"] if a != "--cuda-graph"]

    def run(name, *extra):
        cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_train.py"), *tiny]
        cmd += ["--out", str(tmp_path / name), *extra]
        subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path, check=True)
        return json.loads((tmp_path / name).read_text())

    before = run("one.json")
    now = run("two.json", "--compare", str(tmp_path / "one.json"), "--cudnn-benchmark", "--compile")
    assert (before["cudnn_benchmark"], now["cudnn_benchmark"]) == (False, True)  # as recorded
    assert (before["compile"], now["compile"]) == (False, True)
    assert now["loss_relative_difference"] < 1e-5  # the compiled loops still compute one loss
    over = now["images_per_s_over_compared"]
    assert set(over) == {"pyro", "pyro_collapsed", "pytorch"}
    for loop, ratio in over.items():
        key = f"{loop}_images_per_s"
        assert ratio == pytest.approx(now[key] / before[key])


@pytest.mark.parametrize("script", ["benchmarks/run_gpu.sh", ".ci/run", ".ci/wheel_check"])
def test_shell_scripts_parse(script):
    """The GPU driver and CI scripts run only on other machines; here bash at least parses them
    (a merge's conflict markers once sat in run_gpu.sh unnoticed)."""
    found = subprocess.run(["bash", "-n", str(ROOT / script)], capture_output=True, text=True)
    assert found.returncode == 0, found.stderr


def test_a_benchmark_whose_reader_has_gone_ends_quietly():
    """``bench_bif.py ... | head -c0``: no traceback, exit status 141 (as the CLI's verbs)."""
    import os

    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line
    try:
        found = subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / "bench_bif.py"), *CASES["bench_bif.py"]],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            timeout=300,
        )
    finally:
        os.close(write)
    assert found.returncode == 141, found.stderr
    assert "Traceback" not in found.stderr
