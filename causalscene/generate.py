"""Images for the three rungs of the ladder, from a trained :class:`~causalscene.model.CausalVAE`.

- :func:`sample_images` — rung 1/2: rendered node values drawn from the *exact* joint
  ``P(rendered | evidence)`` or ``P(rendered | do(...), evidence)`` (:mod:`causalscene.queries`),
  ``z ~ N(0, I)``, decoded.
- :func:`counterfactual_images` — rung 3, Pearl's three steps on one image: *abduction* (z = the
  encoder's posterior mean; the DAG's exogenous noise posterior given the factual labels — given,
  or read off the image by the classifier), *action* (the ``do``), *prediction* (the rendered
  descendants through the twin network, :func:`causalscene.queries.counterfactual`, monotone
  noise; we take the counterfactual joint's MAP by default, or a sample) decoded with the *same* z.
- :func:`infer` — the posterior of the hidden nodes given what an image shows.
- :func:`evaluate` — intervention fidelity and counterfactual minimality measured by an
  :class:`~causalscene.probes.ImageProbe` trained on ground truth (a factorial procgen design
  where the data is procedural: ``causalscene evaluate``).

On a run folder (what the verbs ``generate``, ``counterfactual``, ``infer`` and ``evaluate`` call):
:func:`write_query_images`, :func:`write_counterfactual_images`, :func:`infer_images`,
:func:`evaluate_run` (its probe: :func:`evaluation_probe`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from causalscene import procgen, queries
from causalscene.dag import Assignment, CausalDAG, DAGError
from causalscene.model import CausalVAE, Trainable
from causalscene.plots import save_image_grid
from causalscene.probes import (
    EarlyStopping,
    ImageProbe,
    factorial_source,
    factorial_training_set,
    training_design,
)
from causalscene.tensors import (
    deterministic_cudnn,
    resolve_device,
    seeded_generator,
    to_float_images,
)
from causalscene.train import TrainConfig, load_dataset, load_run
from causalscene.utils import atomic_write_json, set_seed

__all__ = [
    "sample_images",
    "counterfactual_images",
    "infer",
    "evaluate",
    "intervention_fidelity",
    "EvaluationConfig",
    "evaluate_run",
    "evaluation_probe",
    "blur_images",
    "load_causal",
    "read_image",
    "read_images",
    "write_query_images",
    "write_counterfactual_images",
    "infer_images",
]

log = logging.getLogger(__name__)


@torch.no_grad()
def sample_images(
    model: CausalVAE,
    evidence: Assignment | None = None,
    do: Assignment | None = None,
    n: int = 16,
    seed: int | None = 0,
) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    """``n`` images for the query ``P(· | do(do), evidence)``: ``(images [n, C, H, W] in [0, 1],
    {rendered node: int64 codes [n]})``.

    The rendered nodes not fixed by ``evidence``/``do`` are drawn jointly from the exact posterior
    (condition, or intervene when ``do`` is given), z from the prior ``N(0, I)``.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    dag = model.query_dag()
    ev = dag.check_assignment(evidence, "evidence")
    fixed_do = dag.check_assignment(do, "do")
    clash = sorted(set(ev) & set(fixed_do))
    if clash:
        raise ValueError(f"node '{clash[0]}' is both in the evidence and in do")
    rng = np.random.default_rng(seed)
    fixed = {**ev, **fixed_do}
    free = [v for v in model.rendered if v not in fixed]
    codes: dict[str, np.ndarray] = {}
    if free:
        if fixed_do:
            result = queries.intervene(dag, free, fixed_do, ev or None)
        else:
            result = queries.condition(dag, free, ev or None)
        probs = result.probs.ravel()
        flat = rng.choice(len(probs), size=n, p=probs / probs.sum())
        for v, column in zip(free, np.unravel_index(flat, result.probs.shape)):
            codes[v] = column.astype(np.int64)
    for v in model.rendered:
        if v in fixed:
            codes[v] = np.full(n, fixed[v], np.int64)
    z = torch.randn(n, model.latent_dim, generator=seeded_generator(seed))
    images = model.decode(z, {k: torch.as_tensor(codes[k]) for k in model.rendered})
    return images.float().cpu(), {k: codes[k] for k in model.rendered}


def _cf_codes(
    model: CausalVAE,
    dag: CausalDAG,
    factual: Mapping[str, int],
    do: Mapping[str, int],
    mode: str,
    rng,
    cache: dict,
) -> dict[str, int]:
    """Counterfactual values of the rendered nodes for one factual world (monotone twin network
    of ``dag``, the model's :meth:`~CausalVAE.query_dag`)."""
    changed = set().union(*(dag.descendants(v) for v in do)) - set(do)
    targets = [v for v in model.rendered if v in changed]
    out = {v: int(factual[v]) for v in model.rendered}
    out.update({v: int(s) for v, s in do.items() if v in out})
    if not targets:
        return out
    key = (tuple(sorted(factual.items())), tuple(sorted(do.items())))
    if key not in cache:
        cache[key] = queries.counterfactual(dag, targets, dict(factual), dict(do)).probs
    probs = cache[key]
    if mode == "map":
        flat = int(np.argmax(probs))
    else:
        flat = int(rng.choice(probs.size, p=probs.ravel() / probs.sum()))
    for v, i in zip(targets, np.unravel_index(flat, probs.shape)):
        out[v] = int(i)
    return out


@torch.no_grad()
def counterfactual_images(
    model: CausalVAE,
    x: Any,
    do: Assignment,
    labels: Mapping[str, Any] | None = None,
    mode: str = "map",
    seed: int | None = 0,
    cache: dict | None = None,
) -> dict[str, Any]:
    """Counterfactual images: what would these images look like had ``do`` held?

    Args:
        x: images (uint8 ``[B, H, W, C]`` or float ``[B, C, H, W]``).
        do: ``{node: state}``; any DAG node (a hidden one acts through its rendered descendants).
        labels: factual rendered labels ``{node: codes [B]}`` (missing → read by the classifier).
        mode: ``"map"`` (the counterfactual joint's most probable values) or ``"sample"``.

    Returns ``{"factual", "reconstruction", "counterfactual"}`` images ``[B, C, H, W]``, and
    ``factual_codes`` / ``counterfactual_codes`` ``{node: int64 [B]}``, ``assumption`` (noise model).
    """
    if mode not in ("map", "sample"):
        raise ValueError(f"mode must be 'map' or 'sample', got '{mode}'")
    dag = model.query_dag()
    fixed = dag.check_assignment(do, "do")
    if not fixed:
        raise ValueError("a counterfactual needs at least one do=node=state")
    x = to_float_images(x).to(model.device)
    codes = model.complete_labels(x, labels)  # abduction, part 1: the factual labels
    z = model.encoder(x, model._onehot(codes, x.dtype))[0]  # abduction, part 2: z = E[z | x]
    rng = np.random.default_rng(seed)
    cache = {} if cache is None else cache
    factual = {k: v.cpu().numpy() for k, v in codes.items()}
    cf = {k: np.empty(len(x), np.int64) for k in model.rendered}
    for i in range(len(x)):
        world = {k: int(v[i]) for k, v in factual.items()}
        try:
            values = _cf_codes(model, dag, world, fixed, mode, rng, cache)  # action + prediction
        except DAGError as exc:
            raise ValueError(
                f"image {i}: factual labels {dag.decode({k: np.array([v]) for k, v in world.items()})} "
                f"are impossible under the DAG ({exc})"
            ) from None
        for k in model.rendered:
            cf[k][i] = values[k]
    recon = model.decode(z, codes)
    counter = model.decode(z, {k: torch.as_tensor(v, device=model.device) for k, v in cf.items()})
    return {
        "factual": x.float().cpu(),
        "reconstruction": recon.float().cpu(),
        "counterfactual": counter.float().cpu(),
        "factual_codes": factual,
        "counterfactual_codes": cf,
        "assumption": queries.NOISE_ASSUMPTIONS["monotone"],
        "mode": mode,
    }


@torch.no_grad()
def infer(model: CausalVAE, x: Any, labels: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What an image shows and implies: ``{"rendered": {node: q(node | x) [B, card]},
    "hidden": {node: p(node | x) [B, card]}}`` (see :meth:`CausalVAE.infer_hidden`)."""
    x = to_float_images(x).to(model.device)
    return {
        "rendered": {k: v.cpu().numpy() for k, v in model.classify(x).items()},
        "hidden": {k: v.cpu().numpy() for k, v in model.infer_hidden(x, labels).items()},
    }


@torch.no_grad()
def evaluate(
    model: CausalVAE,
    probe: Any,
    images: np.ndarray,
    labels: Mapping[str, np.ndarray],
    n_per_state: int = 32,
    n_counterfactual: int = 48,
    seed: int = 0,
) -> dict[str, Any]:
    """Intervention fidelity and counterfactual minimality, read by an image probe ψ.

    - fidelity[node] = mean over states s of P(ψ_node(x) = s) on images generated under
      do(node = s) (z from the prior, the other rendered nodes from the mutilated DAG); each
      state's P in ``fidelity_by_state[node]``;
    - on ``n_counterfactual`` real images (factual labels given) and for every rendered node,
      do(node = s') with s' a different state: ``cf_fidelity`` = P(ψ_node = s'), ``preserved``
      = P(ψ_m = factual m) averaged over the rendered *non-descendants* m of node (minimality);
    - ``identity_max_abs_diff``: do(node = its factual value) vs the reconstruction (should be 0).
    Also ``probe_accuracy`` of ψ on the real images (its own ceiling). On a GPU cuDNN runs its
    deterministic algorithms here: the same seed gives the same numbers, and the identity is 0.
    """
    with deterministic_cudnn():
        return _evaluate(model, probe, images, labels, n_per_state, n_counterfactual, seed)


def _evaluate(
    model: CausalVAE,
    probe: Any,
    images: np.ndarray,
    labels: Mapping[str, np.ndarray],
    n_per_state: int,
    n_counterfactual: int,
    seed: int,
) -> dict[str, Any]:
    rng = np.random.default_rng(seed)  # one stream, drawn in this order: fidelity, pick, targets
    fidelity, by_state = intervention_fidelity(model, probe, n_per_state, rng)
    out: dict[str, Any] = {
        "fidelity": fidelity,
        "fidelity_by_state": by_state,
        "cf_fidelity": {},
        "preserved": {},
        "identity_max_abs_diff": 0.0,
    }
    m = min(n_counterfactual, len(images))
    pick = rng.choice(len(images), size=m, replace=False)
    x = images[pick]
    lab = {k: np.asarray(labels[k])[pick] for k in model.rendered}
    out["probe_accuracy"] = {k: float(v) for k, v in probe.accuracy(x, lab).items()}
    cache: dict = {}
    impossible = 0
    identity = 0.0
    dag = model.query_dag()
    for node in model.rendered:
        card = dag.cardinality(node)
        targets = (lab[node] + 1 + rng.integers(card - 1, size=m)) % card
        scores = _counterfactual_scores(model, probe, x, lab, node, targets, cache)
        out["cf_fidelity"][node] = _mean_or_nan(scores.fidelity)
        out["preserved"][node] = _mean_or_nan(scores.preserved)
        impossible += scores.impossible
        identity = max(identity, scores.identity)
    out["identity_max_abs_diff"] = identity
    out["skipped_impossible_factuals"] = impossible
    out["n_per_state"] = n_per_state
    out["n_counterfactual"] = m
    return _with_goals(out)


def intervention_fidelity(
    model: CausalVAE, probe: Any, n_per_state: int, rng: np.random.Generator
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Per rendered node: P(ψ_node = s) on ``n_per_state`` images drawn under do(node = s) (z from
    the prior, the other rendered nodes from the mutilated DAG), averaged over s and per s: the
    ``fidelity`` and ``fidelity_by_state`` of :func:`evaluate`."""
    fidelity: dict[str, float] = {}
    by_state: dict[str, list[float]] = {}
    dag = model.query_dag()
    for node in model.rendered:
        hits = []
        for s in range(dag.cardinality(node)):
            imgs, _ = sample_images(
                model, do={node: s}, n=n_per_state, seed=int(rng.integers(2**31))
            )
            hits.append(float(np.mean(probe.predict(imgs)[node] == s)))
        fidelity[node] = float(np.mean(hits))
        by_state[node] = hits
    return fidelity, by_state


@dataclass
class _NodeScores:
    """What the counterfactuals on one node measured (see :func:`evaluate`)."""

    fidelity: list[bool] = field(default_factory=list)  #: ψ_node = the new state s'
    preserved: list[bool] = field(default_factory=list)  #: ψ_m = factual m, non-descendants m
    impossible: int = 0  #: factual worlds the DAG rules out (skipped)
    identity: float = 0.0  #: max |do(node = factual) - reconstruction|


def _counterfactual_scores(
    model: CausalVAE,
    probe: Any,
    x: np.ndarray,
    lab: Mapping[str, np.ndarray],
    node: str,
    targets: np.ndarray,
    cache: dict,
) -> _NodeScores:
    """do(node = targets[i]) on each image (scored by ψ) and do(node = its factual state) (the
    identity check), batched by state."""
    dag = model.query_dag()
    keep = [v for v in model.rendered if v != node and v not in dag.descendants(node)]
    scores = _NodeScores()
    for s in range(dag.cardinality(node)):
        for kind, rows in (
            ("cf", np.flatnonzero(targets == s)),
            ("same", np.flatnonzero(lab[node] == s)),
        ):
            if len(rows) == 0:
                continue
            sub = {k: v[rows] for k, v in lab.items()}
            try:
                res = counterfactual_images(model, x[rows], {node: s}, sub, cache=cache)
            except ValueError:
                scores.impossible += len(rows)
                continue
            if kind == "same":
                diff = (res["counterfactual"] - res["reconstruction"]).abs().max()
                scores.identity = max(scores.identity, float(diff))
                continue
            pred = probe.predict(res["counterfactual"])
            scores.fidelity.extend(pred[node] == s)
            for other in keep:
                scores.preserved.extend(pred[other] == sub[other])
    return scores


def _mean_or_nan(values: Sequence[Any]) -> float:
    return float(np.mean(values)) if values else float("nan")


def _with_goals(out: dict[str, Any]) -> dict[str, Any]:
    """Add ``min_fidelity``, ``min_preserved`` and the pass/fail ``goals`` to an evaluation."""
    out["min_fidelity"] = min(out["fidelity"].values())
    finite = [v for v in out["preserved"].values() if v == v]
    out["min_preserved"] = min(finite) if finite else float("nan")
    out["goals"] = {
        "fidelity>=0.9": bool(out["min_fidelity"] >= 0.9),
        "preserved>=0.9": bool(finite and out["min_preserved"] >= 0.9),
        # exactly 0 on the CPU and, with cuDNN's deterministic algorithms, on a GPU; the bound
        # is far below one uint8 level (1/255 = 3.9e-3)
        "identity": bool(out["identity_max_abs_diff"] < 1e-4),
    }
    return out


# ------------------------------------------------------------------ run folders (the verbs' work)
def load_causal(run: str | Path, device: str = "cpu") -> tuple[CausalVAE, TrainConfig]:
    """The :class:`CausalVAE` of a run folder and its config; a run without a DAG (``--no-dag``,
    ``--model dcgan``) is refused."""
    model, config = load_run(run, device)
    if not isinstance(model, CausalVAE):
        kind = "a --model dcgan" if config.model == "dcgan" else "a --no-dag"
        raise ValueError(
            f"{run}: {kind} run has no DAG to query (this needs a DAG-conditioned VAE: "
            "train --dag FILE)"
        )
    return model, config


def read_image(path: str | Path, size: int) -> np.ndarray:
    """An image file as uint8 RGB ``[size, size, 3]`` (resized bilinearly when needed)."""
    Image.MAX_IMAGE_PIXELS = 4096 * 4096  # PIL refuses anything larger (decompression bombs)
    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
        if rgb.size != (size, size):
            rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(rgb, np.uint8)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise ValueError(f"{path}: not a readable image ({exc})") from None


def read_images(paths: Sequence[str | Path], size: int) -> np.ndarray:
    """Image files as uint8 ``[N, size, size, 3]`` (:func:`read_image`)."""
    return np.stack([read_image(p, size) for p in paths])


def named_codes(model: CausalVAE, codes: Mapping[str, Any]) -> list[dict[str, str]]:
    """One ``{rendered node: state name}`` per item of ``codes`` ({node: int codes [B]})."""
    names = model.query_dag().decode({k: codes[k] for k in model.rendered})
    count = len(names[model.rendered[0]]) if model.rendered else 0
    return [{k: names[k][i] for k in model.rendered} for i in range(count)]


def write_query_images(
    run: str | Path,
    out: str | Path,
    evidence: Mapping[str, str] | None = None,
    do: Mapping[str, str] | None = None,
    n: int = 16,
    seed: int = 0,
    device: str = "cpu",
) -> list[dict[str, str]]:
    """``causalscene generate``: ``n`` images of a run's model for ``P(· | do(do), evidence)``
    (:func:`sample_images`) saved as a grid at ``out``; returns each image's rendered values.

    A run without a DAG (``--model dcgan``, ``--no-dag``) draws ``n`` unconditional samples
    (``model.sample``; no rendered values: empty dicts) and refuses ``evidence``/``do``."""
    set_seed(seed)
    model, config = load_run(run, device)
    if not isinstance(model, CausalVAE):
        return _write_unconditional(model, run, config, out, evidence, do, n, seed)
    images, codes = sample_images(model, evidence=evidence, do=do, n=n, seed=seed)
    save_image_grid(images, out)
    return named_codes(model, codes)


@torch.no_grad()
def _write_unconditional(
    model: Trainable,
    run: str | Path,
    config: TrainConfig,
    out: str | Path,
    evidence: Mapping[str, str] | None,
    do: Mapping[str, str] | None,
    n: int,
    seed: int,
) -> list[dict[str, str]]:
    """``n`` prior samples of a model without a DAG as a grid at ``out``."""
    if evidence or do:
        kind = "--model dcgan" if config.model == "dcgan" else "--no-dag"
        raise ValueError(
            f"{run}: a {kind} run has no DAG: it draws unconditional samples only "
            "(drop --evidence/--do)"
        )
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    save_image_grid(model.sample(n, seed=seed).float().cpu(), out)
    return [{} for _ in range(n)]


def dataset_items(
    model: CausalVAE, data: str | Path, index: Sequence[int]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Images ``[B, H, W, C]`` and rendered labels ``{node: [B]}`` of items ``index`` of ``data``."""
    images, labels = load_dataset(data, model.dag)
    check_image_size(images, model.image_size, data)
    bad = [i for i in index if not 0 <= i < len(images)]
    if bad:
        raise ValueError(f"--index {bad[0]} out of range (dataset has {len(images)} images)")
    rows = list(index)
    return images[rows], {k: labels[k][rows] for k in model.rendered}


def check_image_size(images: np.ndarray, size: int, data: str | Path) -> None:
    """The dataset's images are the model's size (``ValueError`` naming both otherwise)."""
    if images.ndim != 4 or images.shape[1:3] != (size, size):
        shape = "x".join(map(str, images.shape[1:3]))
        raise ValueError(f"{data}: images are {shape} px, the run's model wants {size}x{size}")


def counterfactual_grid(res: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Rows of factual | reconstruction | counterfactual ``[3B, C, H, W]`` for a 3-column grid."""
    columns = [res["factual"], res["reconstruction"], res["counterfactual"]]
    return torch.stack(columns, dim=1).flatten(0, 1)


def write_counterfactual_images(
    run: str | Path,
    out: str | Path,
    do: Mapping[str, str],
    images: Sequence[str | Path] | None = None,
    index: Sequence[int] | None = None,
    data: str | Path | None = None,
    mode: str = "map",
    seed: int = 0,
    device: str = "cpu",
) -> dict[str, Any]:
    """``causalscene counterfactual``: counterfactuals of image files (labels read by the
    classifier) or of dataset items ``index`` of ``data`` (default: the run's data; labels from
    the data), saved as a factual | reconstruction | counterfactual grid; returns a summary."""
    set_seed(seed)
    model, config = load_causal(run, device)
    labels = None
    if images:
        x = read_images(images, model.image_size)
    else:
        data = data or (Path(config.data) if config.data else None)
        if data is None:
            raise ValueError("--index needs --data DIR")
        x, labels = dataset_items(model, data, index or [])
    res = counterfactual_images(model, x, do, labels, mode=mode, seed=seed)
    save_image_grid(counterfactual_grid(res), out, ncol=3)
    return {
        "do": dict(do),
        "mode": res["mode"],
        "assumption": res["assumption"],
        "factual": named_codes(model, res["factual_codes"]),
        "counterfactual": named_codes(model, res["counterfactual_codes"]),
        "out": str(out),
        "columns": ["factual", "reconstruction", "counterfactual"],
    }


def infer_images(
    run: str | Path, paths: Sequence[str | Path], seed: int = 0, device: str = "cpu"
) -> list[dict[str, Any]]:
    """``causalscene infer``: per image file, what it shows (``q(node | x)``, rendered nodes) and
    implies (``p(node | x)``, hidden nodes) as ``{node: {state: probability}}``."""
    set_seed(seed)
    model, _ = load_causal(run, device)
    res = infer(model, read_images(paths, model.image_size))
    dag = model.query_dag()

    def named(probs: Mapping[str, np.ndarray], i: int) -> dict[str, dict[str, float]]:
        return {k: dict(zip(dag.states(k), map(float, v[i]))) for k, v in probs.items()}

    return [
        {"image": str(path), "shows": named(res["rendered"], i), "hidden": named(res["hidden"], i)}
        for i, path in enumerate(paths)
    ]


@dataclass
class EvaluationConfig:
    """Options of ``causalscene evaluate`` (its flags map onto these)."""

    n_per_state: int = 32  #: images generated per do(node = state)
    n_counterfactual: int = 48  #: real images whose counterfactuals are scored
    probe_epochs: int = 4  #: epochs of the image probe ψ
    probe_images: int = 3000  #: images ψ learns from (each also blurred)
    probe_batch_size: int = 128  #: images per step of ψ's training
    #: stop ψ's training after this many epochs without a held-out gain (0: all epochs run)
    probe_patience: int = 2
    #: the least held-out accuracy gain (any attribute) that counts as one
    probe_tolerance: float = 0.005
    #: fresh factorial items ψ's early stopping reads (a stream of their own)
    probe_heldout: int = 1000
    seed: int = 0
    device: str = "cpu"


def evaluate_run(
    run: str | Path, data: str | Path | None = None, config: EvaluationConfig | None = None
) -> dict[str, Any]:
    """``causalscene evaluate``: :func:`evaluate` a run's model on ``data`` (default: the run's)
    with the probe of :func:`evaluation_probe`; writes and returns ``RUN/eval.json``. On a GPU
    cuDNN runs its deterministic algorithms throughout, so the same seed gives the same file."""
    with deterministic_cudnn():
        return _evaluate_run(Path(run), data, config or EvaluationConfig())


def _evaluate_run(run: Path, data: str | Path | None, config: EvaluationConfig) -> dict[str, Any]:
    config = replace(config, device=str(resolve_device(config.device)))  # auto → cuda or cpu
    refuse_shipped(run)
    set_seed(config.seed)
    model, train_config = load_causal(run, config.device)
    data = data or (Path(train_config.data) if train_config.data else None)
    if data is None:
        raise ValueError("evaluate needs --data DIR (the run has no dataset recorded)")
    images, labels = load_dataset(data, model.dag)
    check_image_size(images, model.image_size, data)
    every_image = images  # the Fréchet distance's real side reads them too
    source = factorial_source(data, {node: model.dag.states(node) for node in model.rendered})
    probe = evaluation_probe(run, model, images, labels, source, config)
    n_probe = min(len(images), config.probe_images)
    accuracy = probe_heldout_accuracy(probe, source, images, labels, n_probe, config)
    if source is None and len(images) - n_probe >= config.n_counterfactual:
        # ψ learnt from the data's first images: counterfactuals start from images it never saw
        images, labels = images[n_probe:], {k: v[n_probe:] for k, v in labels.items()}
    tic = time.perf_counter()
    result = evaluate(
        model,
        probe,
        images,
        labels,
        config.n_per_state,
        config.n_counterfactual,
        seed=config.seed,
    )
    result["seconds"] = time.perf_counter() - tic
    result["probe_training"] = training_design(source)
    result["probe_heldout_accuracy"] = accuracy
    result["probe_fit"] = probe.fit_record
    result["run"] = str(run)
    result["train_device"] = train_config.device
    result.update(_training_cost(run))
    from causalscene.quality import FeatureNetwork, evaluation_frechet  # sample quality

    features = None
    if source is not None:  # ψ learnt from the renderer's factorial design: its features serve
        features = FeatureNetwork(
            probe,
            f"ImageProbe penultimate layer (128-d) of evaluate's probe psi (RUN/probe_factorial.pt"
            f"), trained on a factorial procgen {source['generator']} design",
        )
    result.update(
        evaluation_frechet(
            run,
            model,
            data,
            train_config,
            config.probe_images,
            config.probe_epochs,
            config.seed,
            config.device,
            network=features,
            images=every_image,
        )
    )
    atomic_write_json(run / "eval.json", result)
    return result


def refuse_shipped(run: Path) -> None:
    """A ValueError line when ``run`` is a pretrained model shipped in the package: ``evaluate``
    writes ``eval.json`` (and ψ) into its run folder, which would overwrite the shipped
    measurement."""
    from causalscene import pretrained

    name = pretrained.shipped(run)
    if name is not None:
        raise ValueError(
            f"{run}: the shipped pretrained model '{name}' is read-only here (evaluate writes "
            f"eval.json into the run folder); copy the folder and evaluate the copy"
        )


def _training_cost(run: Path) -> dict[str, Any]:
    """``train_seconds`` and ``train_epochs`` from ``RUN/metrics.jsonl`` (empty without it)."""
    metrics = run / "metrics.jsonl"
    if not metrics.is_file():
        return {}
    lines = [json.loads(s) for s in metrics.read_text().splitlines() if s.strip()]
    return {"train_seconds": sum(r["seconds"] for r in lines), "train_epochs": len(lines)}


def evaluation_probe(
    run: Path,
    model: CausalVAE,
    images: np.ndarray,
    labels: Mapping[str, np.ndarray],
    source: Mapping[str, Any] | None,
    config: EvaluationConfig,
) -> ImageProbe:
    """The image probe ψ, trained on ground truth (cached as RUN/probe_factorial.pt or probe.pt).

    On procedural data (``source``: :func:`causalscene.probes.factorial_source`) ψ is trained on
    fresh items of that generator with every rendered node drawn uniformly and independently (why:
    that function's docstring). Other data (CelebA) has no renderer, so ψ learns from the data and
    ``eval.json`` says so.

    ψ sees every training image twice: as is and Gaussian-blurred (σ drawn from 0.5-2 px), so
    that it reads attributes off a VAE's smoother images too. (Measured: a probe trained on sharp
    images only read eyeglasses at 100% on real faces but at chance on generated faces that all
    visibly wore glasses.)

    ψ trains for at most ``probe_epochs`` epochs: it stops earlier once its accuracy on fresh
    factorial items has stopped rising (:func:`probe_early_stopping`); ``probe.fit_record`` (in
    ``eval.json`` as ``probe_fit``) holds the epochs run and that accuracy per epoch."""
    path = run / ("probe_factorial.pt" if source is not None else "probe.pt")
    if path.is_file():  # cached per design: an older observational probe.pt is not reused
        return ImageProbe.load(path, config.device)
    n = min(len(images), config.probe_images)
    rng = np.random.default_rng(config.seed)
    if source is not None:  # procedural data: ψ learns from a factorial design (docstring)
        images, labels = factorial_training_set(
            source, n, model.image_size, rng, workers=procgen.default_workers()
        )
    blurred = blur_images(images[:n], rng.uniform(0.5, 2.0, size=n))
    train = np.concatenate([images[:n], blurred])
    codes = {k: np.concatenate([v[:n], v[:n]]) for k, v in labels.items()}
    probe = ImageProbe(model.dag, model.image_size)
    probe.fit(
        train,
        codes,
        epochs=config.probe_epochs,
        seed=config.seed,
        batch_size=config.probe_batch_size,
        device=config.device,
        early_stopping=probe_early_stopping(source, model.image_size, config),
    )
    probe.save(path)
    return probe


def probe_early_stopping(
    source: Mapping[str, Any] | None, size: int, config: EvaluationConfig
) -> EarlyStopping | None:
    """ψ's early stopping (:class:`~causalscene.probes.EarlyStopping`): on ``probe_heldout``
    fresh factorial items of ``source`` (seed ``[seed, 2]``: neither ψ's training items nor those
    of :func:`probe_heldout_accuracy`). None (every epoch runs) with ``probe_patience`` 0 or
    without a renderer (observational data keeps its spare images for the counterfactuals)."""
    if source is None or config.probe_patience == 0:
        return None
    rng = np.random.default_rng([config.seed, 2])
    n = config.probe_heldout
    held, codes = factorial_training_set(source, n, size, rng, procgen.default_workers())
    return EarlyStopping(held, codes, config.probe_patience, config.probe_tolerance)


def probe_heldout_accuracy(
    probe: ImageProbe,
    source: Mapping[str, Any] | None,
    images: np.ndarray,
    labels: Mapping[str, np.ndarray],
    n_probe: int,
    config: EvaluationConfig,
    n: int = 1000,
) -> dict[str, Any]:
    """ψ's accuracy per node on images it never saw: ``n`` fresh factorial items of ``source``
    (a seed of their own), or the data's images after the ``n_probe`` it learnt from."""
    if source is not None:
        rng = np.random.default_rng([config.seed, 1])
        size = images.shape[1]
        held, codes = factorial_training_set(source, n, size, rng, procgen.default_workers())
    else:
        held = images[n_probe : n_probe + n]
        codes = {k: v[n_probe : n_probe + n] for k, v in labels.items()}
    if len(held) == 0:
        return {"n": 0, "accuracy": {}}
    known = {k: np.asarray(v) for k, v in codes.items() if k in probe.cards}
    return {"n": int(len(held)), "accuracy": probe.accuracy(held, known)}


def blur_images(images: np.ndarray, sigmas: np.ndarray, batch: int = 512) -> np.ndarray:
    """Gaussian blur of uint8 NHWC images, one σ (pixels) per image; returns uint8 NHWC."""
    out = np.empty_like(images)
    radius = 4
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    for start in range(0, len(images), batch):
        x = torch.from_numpy(np.ascontiguousarray(images[start : start + batch]))
        x = x.permute(0, 3, 1, 2).float()
        sigma = torch.as_tensor(sigmas[start : start + batch], dtype=torch.float32)
        kernel = torch.exp(-0.5 * (offsets[None] / sigma[:, None]) ** 2)
        kernel = kernel / kernel.sum(-1, keepdim=True)  # [b, 2r+1]
        b, c, h, w = x.shape
        y = x.reshape(1, b * c, h, w)
        k = kernel.repeat_interleave(c, 0)  # [b*c, 2r+1]
        y = F.pad(y, (radius, radius, radius, radius), mode="replicate")
        y = F.conv2d(y, k[:, None, None, :], groups=b * c)
        y = F.conv2d(y, k[:, None, :, None], groups=b * c)
        y = y.reshape(b, c, h, w).permute(0, 2, 3, 1)
        out[start : start + batch] = y.round().clamp(0, 255).byte().numpy()
    return out
