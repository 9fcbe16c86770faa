"""Train the factorial image probe ψ that ships beside a pretrained model (the shipped ones were
trained by this recipe on a CPU: ``causalscene/pretrained/NAME/probe_factorial.pt``), on ``--device``.

It is the probe ``causalscene evaluate RUN --probe-images 20000 --probe-epochs 10`` trains
(:func:`causalscene.generate.evaluation_probe`, the recipe behind the shipped ``eval.json``):
fresh factorial procgen items (every rendered node drawn uniformly and independently), each also
Gaussian-blurred (σ from 0.5-2 px), seed 0, with the same random stream; here on ``--device``.
Because ``evaluation_probe`` caches its probe as ``RUN/probe_factorial.pt``, ``evaluate`` on the
shipped folder reuses it, and the demo reads generated images with it without training one on CPU.

    python benchmarks/pretrained_probe.py rpg --device cuda --out DIR

Writes ``DIR/probe_factorial.pt`` and ``DIR/probe_factorial.json`` (recipe, seconds, accuracy on
fresh factorial items, sharp and blurred, and the fidelity ``evaluate`` reads with it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from causalscene import pretrained
from causalscene.cli import run_script
from causalscene.generate import blur_images, evaluate
from causalscene.probes import ImageProbe, factorial_training_set
from causalscene.train import load_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=pretrained.NAMES)
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    model, _ = load_run(pretrained.path(args.name), args.device)
    source = {"generator": args.name, "options": {}}
    tic = time.perf_counter()
    rng = np.random.default_rng(0)  # evaluation_probe's stream: items, then the blur σs
    images, labels = factorial_training_set(source, args.images, model.image_size, rng)
    blurred = blur_images(images, rng.uniform(0.5, 2.0, size=args.images))
    probe = ImageProbe(model.dag, model.image_size)
    probe.fit(
        np.concatenate([images, blurred]),
        {k: np.concatenate([v, v]) for k, v in labels.items()},
        epochs=args.epochs,
        seed=0,
        device=args.device,
    )
    seconds = time.perf_counter() - tic
    probe.to("cpu").save(args.out / "probe_factorial.pt")
    test, test_labels = factorial_training_set(source, 2000, model.image_size, seed=12345)
    sharp = probe.accuracy(test, test_labels)
    soft = probe.accuracy(blur_images(test, np.full(len(test), 1.5)), test_labels)
    fidelity = evaluate(model.cpu(), probe, test, test_labels, n_per_state=100, n_counterfactual=50)
    record = {
        "recipe": "causalscene.generate.evaluation_probe: factorial procgen items + blurred copies",
        "generator": args.name,
        "probe_images": args.images,
        "probe_epochs": args.epochs,
        "seed": 0,
        "device": args.device,
        "seconds": round(seconds, 1),
        "accuracy_fresh_factorial": sharp,
        "accuracy_fresh_factorial_blur_1.5px": soft,
        "fidelity_read_by_it": fidelity["fidelity"],
        "probe_history": probe.history,
    }
    (args.out / "probe_factorial.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    sys.exit(run_script(main))
