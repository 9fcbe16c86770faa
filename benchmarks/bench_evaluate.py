"""``causalscene evaluate``: the old settings against the new ones, same run, same process.

Three settings, each on a fresh copy of the run folder (no cached probe ψ):

* ``old``: every twin network rebuilt per counterfactual query (``queries.TWIN_CACHE_SIZE = 0``)
  and ψ trained for every one of ``--probe-epochs`` (``probe_patience = 0``);
* ``cache``: twin networks kept (the answers are bit-identical: its ``eval.json`` must equal
  ``old``'s apart from timings, which is checked and printed as ``cache_identical``);
* ``new``: kept twins and ψ's early stopping at the defaults (``--probe-patience``,
  ``--probe-tolerance``); its held-out accuracy is printed next to the full schedule's.

``--run DIR`` times a trained run (the lead's: a 50k-image, 64 px faces or rpg run); without it
the script renders a small procgen dataset (``--scene``, ``--images``, ``--size``) and trains a
tiny model for ``--train-epochs`` (not timed). Prints the device, the seconds of each setting
and the ratio old / new. The lead's H200 measurement::

    python benchmarks/bench_evaluate.py --run RUN --device cuda --probe-epochs 10 \\
        --probe-images 20000 --n-per-state 200 --n-counterfactual 200
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from causalscene.cli import run_script

SETTINGS = {  # name: (twin cache size, probe patience or None for the default)
    "old": (0, 0),
    "cache": (256, 0),
    "new": (256, None),
}
TIMINGS = ("seconds", "train_seconds")


def tiny_run(work: Path, scene: str, images: int, size: int, epochs: int, device: str) -> Path:
    """A small procgen dataset and a tiny VAE trained on it (what evaluate needs)."""
    from causalscene import procgen
    from causalscene.train import TrainConfig
    from causalscene.train.run import train_run

    data = procgen.make_dataset(scene, images, size, seed=0, out=work / scene)
    config = TrainConfig(
        dag=procgen.load_dag(scene).name, data=str(data), out=str(work / "run"), epochs=epochs, batch_size=64,
        latent_dim=4, base_channels=8, device=device, progress=False, seed=0,
    )  # fmt: skip
    train_run(config)
    return work / "run"


def warm_up(device: str) -> None:
    """What the first setting alone would pay otherwise: the device, Adam's lazy imports."""
    x = torch.zeros(2, 3, 16, 16, device=device, requires_grad=True)
    torch.optim.Adam([x]).step()
    torch.nn.functional.conv2d(x, torch.zeros(1, 3, 3, 3, device=device)).sum().backward()
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_setting(run: Path, work: Path, name: str, config: Any) -> tuple[float, dict]:
    """Seconds of one ``evaluate_run`` on a fresh copy of ``run`` (its probes removed)."""
    from causalscene import queries
    from causalscene.generate import evaluate_run

    copy = work / f"run_{name}"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("probe*.pt*", "eval.json"))
    cache, patience = SETTINGS[name]
    if patience is not None:
        config = dataclasses.replace(config, probe_patience=patience)
    kept = queries.TWIN_CACHE_SIZE
    queries.TWIN_CACHE_SIZE = cache
    try:
        if config.device.startswith("cuda"):
            torch.cuda.synchronize()
        tic = time.perf_counter()
        result = evaluate_run(copy, None, config)
        if config.device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - tic, result
    finally:
        queries.TWIN_CACHE_SIZE = kept


def without_timings(result: dict) -> dict:
    return {k: v for k, v in result.items() if k not in TIMINGS and k != "run"}


def main() -> None:
    from causalscene.generate import EvaluationConfig

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, default=None, help="a trained run (default: a tiny one)")
    ap.add_argument("--scene", default="rpg", help="procgen scene of the tiny run")
    ap.add_argument("--images", type=int, default=1000, help="images of the tiny run's dataset")
    ap.add_argument("--size", type=int, default=32, help="image size of the tiny run")
    ap.add_argument("--train-epochs", type=int, default=1)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--probe-epochs", type=int, default=10)
    ap.add_argument("--probe-images", type=int, default=2000)
    ap.add_argument("--n-per-state", type=int, default=32)
    ap.add_argument("--n-counterfactual", type=int, default=48)
    ap.add_argument("--settings", default="old,cache,new", help="which of old,cache,new")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print one JSON line last")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = ap.parse_args()
    config = EvaluationConfig(
        n_per_state=args.n_per_state, n_counterfactual=args.n_counterfactual,
        probe_epochs=args.probe_epochs, probe_images=args.probe_images, seed=args.seed,
        device=args.device,
    )  # fmt: skip
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        run = args.run or tiny_run(
            work, args.scene, args.images, args.size, args.train_epochs, args.device
        )
        warm_up(args.device)
        report = measure(run, work, config, args.settings.split(","))
    report.update(device=args.device, device_name=device_name, run=str(args.run or "tiny"))
    print_report(report)
    if args.json:
        print(json.dumps(report))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))


def measure(run: Path, work: Path, config: Any, names: list[str]) -> dict[str, Any]:
    """Seconds, ψ's epochs and held-out accuracy of each setting; old/new ratios."""
    report: dict[str, Any] = {"settings": {}}
    results = {}
    for name in names:
        seconds, results[name] = time_setting(run, work, name, config)
        report["settings"][name] = {
            "seconds": seconds,
            "probe_epochs_run": results[name]["probe_fit"].get("epochs_run"),
            "probe_heldout_accuracy": results[name]["probe_heldout_accuracy"]["accuracy"],
        }
    timed = report["settings"]
    if "old" in timed and "new" in timed:
        report["ratio_old_over_new"] = timed["old"]["seconds"] / timed["new"]["seconds"]
    if "old" in results and "cache" in results:
        report["cache_identical"] = without_timings(results["old"]) == without_timings(
            results["cache"]
        )
    return report


def print_report(report: dict[str, Any]) -> None:
    print(f"device: {report['device']} ({report['device_name']}), run: {report['run']}")
    for name, row in report["settings"].items():
        accuracy = row["probe_heldout_accuracy"]
        low = min(accuracy.values()) if accuracy else float("nan")
        print(
            f"  {name:>5}: {row['seconds']:7.2f} s, probe epochs {row['probe_epochs_run']}, "
            f"min held-out probe accuracy {low:.3f}"
        )
    if "ratio_old_over_new" in report:
        print(f"  old / new: {report['ratio_old_over_new']:.2f}x")
    if "cache_identical" in report:
        print(f"  cache_identical (eval.json apart from timings): {report['cache_identical']}")


if __name__ == "__main__":
    sys.exit(run_script(main))
