"""What generated images say: an upstream node's distribution read off the pixels by an image probe.

For a query on a node X (``action = attack``), the demo draws images of a
:class:`~causalscene.model.CausalVAE` given ``X = x`` (rung 1) and under ``do(X = x)`` (rung 2)
(:func:`causalscene.generate.sample_images`), then asks an image probe ψ what each image shows for
a *rendered* node U upstream of X (``actor_type``). The share of images ψ reads as each state u is
the images' answer to ``P(U = u | X = x)`` or ``P(U = u | do(X = x))``; it is set beside the exact
answer (:mod:`causalscene.queries`). Conditioning moves U (evidence flows up the arrows);
``do`` cuts the arrows into X, so U keeps its prior: the images should show the same.

ψ learns from a factorial procgen design (every rendered node drawn uniformly and independently;
:func:`causalscene.probes.factorial_training_set`), each image also blurred, as
:func:`causalscene.generate.evaluation_probe` does, so it cannot read U off X through the DAG's
correlation.

Three numbers per state: ``exact`` (the query), ``fed`` (the share of images whose decoder input
had U = u: ``exact`` up to sampling), ``read`` (ψ's read of the pixels: ``fed`` up to the
generator's and ψ's errors), with the binomial standard error of ``read``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from causalscene.dag import CausalDAG

__all__ = ["fit_factorial_probe", "load_or_fit_probe", "read_off", "read_off_queries"]

log = logging.getLogger(__name__)

#: the probe a run folder ships (:func:`causalscene.generate.evaluation_probe`'s cache name)
PROBE_FILE = "probe_factorial.pt"


def fit_factorial_probe(
    dag: CausalDAG,
    source: Mapping[str, Any],
    image_size: int,
    num_images: int,
    epochs: int,
    seed: int = 0,
    num_test: int = 400,
) -> tuple[Any, dict[str, float]]:
    """ψ over ``dag``'s rendered nodes, trained on ``num_images`` factorial items of ``source``'s
    procgen generator (:func:`causalscene.probes.factorial_source`), each also blurred (σ in
    0.5-2 px); returns ``(ψ, its accuracy per node on num_test fresh factorial items)``."""
    from causalscene.generate import blur_images
    from causalscene.probes import ImageProbe, factorial_training_set

    if num_images < 1 or epochs < 1:
        raise ValueError(f"num_images and epochs must be >= 1, got {num_images}, {epochs}")
    rng = np.random.default_rng(seed)
    images, labels = factorial_training_set(source, num_images + num_test, image_size, rng)
    train, test = images[:num_images], images[num_images:]
    blurred = blur_images(train, rng.uniform(0.5, 2.0, size=len(train)))
    codes = {k: np.concatenate([v[:num_images], v[:num_images]]) for k, v in labels.items()}
    probe = ImageProbe({v: dag.cardinality(v) for v in labels}, image_size)
    probe.fit(np.concatenate([train, blurred]), codes, epochs=epochs, seed=seed)
    accuracy = probe.accuracy(test, {k: v[num_images:] for k, v in labels.items()})
    return probe, accuracy


def load_or_fit_probe(
    run: Path, model: Any, data: Path, seed: int = 0, num_images: int = 1500, epochs: int = 3
) -> tuple[Any, dict[str, Any]]:
    """ψ for ``model``: the one ``run`` ships (``probe_factorial.pt``, with what it learned from
    and its accuracy in ``probe_factorial.json``), else a small one trained here on the factorial
    design of the procgen generator that made ``data``; ``(ψ, a description of it)``."""
    from causalscene.probes import ImageProbe, factorial_source

    path = Path(run) / PROBE_FILE
    if path.is_file():
        about_file = path.with_suffix(".json")
        about = json.loads(about_file.read_text()) if about_file.is_file() else {}
        about.pop("probe_history", None)
        return ImageProbe.load(path), {"file": PROBE_FILE, **about}
    source = factorial_source(data, {v: model.dag.states(v) for v in model.rendered})
    if source is None:
        raise ValueError(f"{run} ships no {PROBE_FILE} and {data} is no procgen dataset")
    log.warning("%s ships no %s: training a small probe (%d images)", run, PROBE_FILE, num_images)
    probe, accuracy = fit_factorial_probe(
        model.dag, source, model.image_size, num_images, epochs, seed
    )
    about = {
        "recipe": "trained here: factorial procgen items + blurred copies",
        "probe_images": num_images,
        "probe_epochs": epochs,
        "accuracy_fresh_factorial": accuracy,
    }
    return probe, about


def read_off(
    model: Any,
    probe: Any,
    nodes: Sequence[str],
    evidence: Mapping[str, str] | None = None,
    do: Mapping[str, str] | None = None,
    num_images: int = 512,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """For each node of ``nodes``: its exact distribution under the query ``P(· | do, evidence)``,
    the share of ``num_images`` generated images fed each state, and the share ψ reads.

    Returns ``{node: {"states", "exact", "fed", "read", "read_se"}}`` (lists over the states).
    """
    from causalscene import queries
    from causalscene.generate import sample_images

    dag = model.query_dag()
    missing = [v for v in nodes if v not in model.rendered or v not in probe.cards]
    if missing:
        raise ValueError(f"node '{missing[0]}' is not rendered or the probe has no head for it")
    images, codes = sample_images(model, evidence=evidence, do=do, n=num_images, seed=seed)
    predicted = probe.predict(images)
    out = {}
    for node in nodes:
        card = dag.cardinality(node)
        if do:
            exact = queries.intervene(dag, [node], dict(do), dict(evidence or {}) or None).probs
        else:
            exact = queries.condition(dag, [node], dict(evidence or {}) or None).probs
        read = np.bincount(predicted[node], minlength=card) / num_images
        out[node] = {
            "states": list(dag.states(node)),
            "exact": [float(p) for p in exact],
            "fed": [float(p) for p in np.bincount(codes[node], minlength=card) / num_images],
            "read": [float(p) for p in read],
            "read_se": [float(s) for s in np.sqrt(read * (1 - read) / num_images)],
        }
    return out


def read_off_queries(
    model: Any,
    probe: Any,
    nodes: Sequence[str],
    assignment: Mapping[str, str],
    num_images: int = 512,
    seed: int = 0,
) -> dict[str, Any]:
    """:func:`read_off` of ``nodes`` given ``assignment`` and under ``do(assignment)``, with
    different images for the two (seeds ``seed`` and ``seed + 1``)."""
    return {
        "assignment": dict(assignment),
        "num_images": num_images,
        "given": read_off(
            model, probe, nodes, evidence=assignment, num_images=num_images, seed=seed
        ),
        "do": read_off(model, probe, nodes, do=assignment, num_images=num_images, seed=seed + 1),
    }
