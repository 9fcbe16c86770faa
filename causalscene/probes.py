"""Attribute probes: batched linear probes on latents, and a small CNN on images.

* :class:`LatentProbe` — CAGE's probabilistic linear classifiers φ_m(z) = σ(w_mᵀz + b_m), one per
  binary attribute m (Bose, Monti & Grover, TMLR 2022, section 3: the treatment's decision
  boundary in latent space, whose unit normal ĥ_m = w_m / ‖w_m‖ is the direction of an
  intervention). All probes — many attributes, and the many refits of a permutation null — are
  solved as *one* batched torch problem by :func:`fit_logistic_batched` (L2-regularised logistic
  regression, damped Newton steps on a ``[P, D + 1]`` parameter tensor; GPU when present).
* :class:`ImageProbe` — ψ, a small CNN with one softmax head per DAG node, used as CAGE's image
  outcome (eq. 9: ψ_e(decode(z))) and as an attribute-recovery check for procedural data.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from causalscene.runfolder import check_model_payload
from causalscene.safeio import load_torch
from causalscene.tensors import deterministic_cudnn, to_float_images
from causalscene.utils import atomic_torch_save

__all__ = [
    "EarlyStopping",
    "ImageProbe",
    "LatentProbe",
    "factorial_source",
    "factorial_training_set",
    "fit_logistic_batched",
    "training_design",
]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- training data
def factorial_source(data: str | Path, states: Mapping[str, Sequence[str]]) -> dict | None:
    """The procgen generator (and its options) that made the dataset folder ``data``, when it
    renders every node of ``states`` ({node: state names}) with exactly those states; else None
    (CelebA, arrays, another DAG, a hidden or re-coded node).

    An image probe meant to *measure* an attribute should learn from a factorial design of that
    generator (:func:`factorial_training_set`), not from the data: trained on the data, ψ learns
    the DAG's correlations as shortcuts. Measured (CPU, 6,000 training images): on *true* faces
    rendered under do(goatee = yes), women included, a probe trained on the data read "yes" 0.73 of
    the time and mustache 0.53; trained on the factorial design, 0.99 and 0.90."""
    from causalscene import procgen
    from causalscene.datasets import read_meta

    try:
        meta = read_meta(data)
    except (ValueError, OSError):
        return None
    name = meta.get("generator")
    if name not in procgen.GENERATORS:
        return None
    truth = procgen.load_dag(name)
    if any(
        node not in truth.rendered_nodes or list(truth.states(node)) != list(states[node])
        for node in states
    ):
        return None
    return {"generator": name, "options": dict(meta.get("options") or {})}


def factorial_training_set(
    source: Mapping[str, Any],
    n: int,
    size: int,
    seed: int | np.random.Generator = 0,
    workers: int = 1,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``n`` fresh items of ``source``'s generator (:func:`factorial_source`) at ``size`` px with
    every rendered node drawn uniformly and independently: ``(uint8 images, {node: codes})``,
    rendered by ``workers`` processes (the same items whatever their number)."""
    from causalscene import procgen

    images, labels, _ = procgen.sample_batch(
        source["generator"], n, size, seed, factorial=True, workers=workers, **source["options"]
    )
    return images, labels


def training_design(source: Mapping[str, Any] | None) -> str:
    """What a measuring probe learned from, as the JSON outputs record it: the factorial design of
    ``source`` (:func:`factorial_source`), or the data itself when there is none."""
    return f"factorial procgen {source['generator']}" if source else "the data (observational)"


#: mixed into the seed of :class:`LatentProbe`'s held-out split, so it never repeats a stream
#: that drew the labels (``default_rng(seed)``, procgen's)
HOLDOUT_SALT = 0x686F6C64


def _resident_images(images: Any, device: torch.device) -> torch.Tensor:
    """``images`` on ``device`` as ``[N, C, H, W]``: uint8 stays uint8 (a quarter of float32's
    memory; batches become floats in [0, 1] as they are used), floats stay floats."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if isinstance(images, torch.Tensor) and images.dtype == torch.uint8 and images.ndim == 4:
        if images.shape[-1] in (1, 3) and images.shape[1] not in (1, 3):
            images = images.permute(0, 3, 1, 2)
        return images.to(device).contiguous()
    return to_float_images(images, device)


@dataclass
class EarlyStopping:
    """When :meth:`ImageProbe.fit` may stop before its last epoch: after every epoch ψ's accuracy
    per attribute is read on held-out ``images`` / ``labels`` (never trained on); training stops
    once ``patience`` epochs in a row have raised no attribute's accuracy more than ``tolerance``
    above its best so far (``patience`` 0: every epoch runs). The weights are the last epoch's."""

    images: Any  #: uint8 NHWC or float NCHW
    labels: Mapping[str, Any]  #: ``{node: codes [N]}`` (-1 = missing)
    patience: int = 2
    tolerance: float = 0.005

    def __post_init__(self) -> None:
        if self.patience < 0 or not 0 <= self.tolerance <= 1:
            raise ValueError(
                f"early stopping needs patience >= 0 and tolerance in [0, 1], got "
                f"{self.patience} and {self.tolerance}"
            )


class _Watch:
    """The held-out record of one :meth:`ImageProbe.fit` under :class:`EarlyStopping`."""

    def __init__(self, probe: ImageProbe, rule: EarlyStopping, device: torch.device):
        self.rule = rule
        self.x = _resident_images(rule.images, device)
        self.y = {k: v.to(device) for k, v in probe._check_labels(rule.labels, len(self.x)).items()}
        self.best = {k: -1.0 for k in self.y}
        self.stale = 0
        self.accuracy: list[dict[str, float]] = []

    def stop(self, accuracy: dict[str, float]) -> bool:
        """Record one epoch's held-out accuracy; True when training should stop."""
        self.accuracy.append(accuracy)
        tolerance = self.rule.tolerance
        improved = any(acc > self.best[k] + tolerance for k, acc in accuracy.items())
        self.best = {k: max(self.best[k], acc) for k, acc in accuracy.items()}
        self.stale = 0 if improved else self.stale + 1
        return self.rule.patience > 0 and self.stale >= self.rule.patience

    def record(self, epochs: int) -> dict[str, Any]:
        return {
            "epochs_max": int(epochs),
            "epochs_run": len(self.accuracy),
            "patience": self.rule.patience,
            "tolerance": self.rule.tolerance,
            "heldout_n": int(len(self.x)),
            "heldout_accuracy": self.accuracy,
        }


def _attribute_cards(dag_or_attrs: Any) -> dict[str, int]:
    """``{attribute: cardinality}`` from a CausalDAG (its label nodes), a mapping or a name list."""
    if hasattr(dag_or_attrs, "label_nodes") and hasattr(dag_or_attrs, "cardinality"):
        return {n: int(dag_or_attrs.cardinality(n)) for n in dag_or_attrs.label_nodes}
    if isinstance(dag_or_attrs, Mapping):
        cards = {str(k): int(v) for k, v in dag_or_attrs.items()}
    elif isinstance(dag_or_attrs, Sequence) and not isinstance(dag_or_attrs, str):
        cards = {str(k): 2 for k in dag_or_attrs}
    else:
        raise ValueError(
            "ImageProbe needs a CausalDAG, a {name: cardinality} mapping or a list of names"
        )
    if not cards:
        raise ValueError("ImageProbe needs at least one attribute")
    bad = [k for k, v in cards.items() if v < 2]
    if bad:
        raise ValueError(f"attribute '{bad[0]}' has fewer than 2 states")
    return cards


class _Pool4(nn.Module):
    """Average pooling to 4×4, as ``nn.AdaptiveAvgPool2d(4)``; where the map's sides are multiples
    of 4 (64 px images give 8×8) it is a plain ``avg_pool2d``, whose CUDA backward is
    deterministic (the adaptive one's adds atomically, so ψ's training differed from run to run)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % 4 or w % 4:
            return F.adaptive_avg_pool2d(x, 4)
        return F.avg_pool2d(x, (h // 4, w // 4))


class ImageProbe(nn.Module):
    """ψ: a small CNN predicting every attribute from an image, one softmax head per node.

    ``x: [B, C, H, W]`` in [0, 1] → three stride-2 convolutions → 4×4 average pooling
    (:class:`_Pool4`) → a shared hidden layer → ``{node: logits [B, card]}``. Trained with Adam on
    the summed cross-entropies; label code ``-1`` (missing) is ignored. Used as CAGE's image
    outcome ψ_e (Bose et al. 2022, eq. 9) and as the check that rendered attributes are
    recoverable from pixels.

    Args:
        dag_or_attrs: a :class:`~causalscene.dag.CausalDAG` (its label nodes), a mapping
            ``{node: cardinality}`` or a list of binary attribute names.
        image_size: side of the (square) input images; any size ≥ 8 works.
        channels: input channels (3 for the dataset format).
        width: channels of the first convolution (doubled once).
    """

    def __init__(self, dag_or_attrs: Any, image_size: int, channels: int = 3, width: int = 32):
        super().__init__()
        if int(image_size) < 8:
            raise ValueError(f"image_size must be >= 8, got {image_size}")
        self.cards = _attribute_cards(dag_or_attrs)
        self.image_size = int(image_size)
        self.channels = int(channels)
        self.width = int(width)
        w = self.width
        self.features = nn.Sequential(
            nn.Conv2d(self.channels, w, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 3, stride=2, padding=1),
            nn.ReLU(),
            _Pool4(),
            nn.Flatten(),
            nn.Linear(2 * w * 16, 128),
            nn.ReLU(),
        )
        self.heads = nn.ModuleDict({n: nn.Linear(128, k) for n, k in self.cards.items()})
        self.history: list[float] = []
        #: how the last :meth:`fit` went: epochs, and with :class:`EarlyStopping` the held-out
        #: accuracy per epoch (saved with the probe)
        self.fit_record: dict[str, Any] = {}

    @property
    def attributes(self) -> list[str]:
        return list(self.cards)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``x: [B, C, H, W]`` float in [0, 1] → ``{node: logits [B, card]}``."""
        h = self.features(x)
        return {n: head(h) for n, head in self.heads.items()}

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def _check_labels(self, labels: Mapping[str, Any], n: int) -> dict[str, torch.Tensor]:
        unknown = sorted(set(labels) - set(self.cards))
        if unknown:
            raise ValueError(
                f"unknown attribute '{unknown[0]}' (probe knows: {', '.join(self.cards)})"
            )
        if not labels:
            raise ValueError("labels must name at least one attribute")
        out = {}
        for name, codes in labels.items():
            codes = torch.as_tensor(np.asarray(codes), dtype=torch.int64).reshape(-1)
            if codes.numel() != n:
                raise ValueError(f"attribute '{name}' has {codes.numel()} labels for {n} images")
            if bool(((codes < -1) | (codes >= self.cards[name])).any()):
                raise ValueError(
                    f"attribute '{name}' has codes outside [-1, {self.cards[name] - 1}]"
                )
            out[name] = codes
        return out

    def fit(
        self,
        images: Any,
        labels: Mapping[str, Any],
        epochs: int = 10,
        seed: int = 0,
        batch_size: int = 128,
        lr: float = 1e-3,
        device: str | torch.device | None = None,
        early_stopping: EarlyStopping | None = None,
        cuda_graph: bool | None = None,
    ) -> ImageProbe:
        """Train on ``images`` (uint8 NHWC or float NCHW) and ``labels`` ``{node: codes [N]}``
        for at most ``epochs`` epochs (fewer under ``early_stopping``).

        Returns ``self``; the mean loss of each epoch is appended to ``self.history``, what the
        training did is in ``self.fit_record``. Reading the held-out accuracy draws no random
        numbers: the epochs that run are the full schedule's first epochs, bit for bit.

        ``cuda_graph`` (default: on a CUDA device with at least one full batch) captures the
        full-batch step — gather from the resident images, loss, ``backward()``, Adam — once as a
        CUDA graph and replays it (:class:`~causalscene.train.graph.GraphedStep`); an epoch's
        last, incomplete batch runs eagerly. Same batches, order and schedule as the eager loop;
        only Adam's capturable arithmetic differs from it, in the last bits.
        """
        if device is not None:
            self.to(device)
        dev = self._device()
        x_all = _resident_images(images, dev)
        n = x_all.shape[0]
        if n == 0:
            raise ValueError("no images to fit")
        if x_all.shape[1] != self.channels:
            raise ValueError(
                f"images have {x_all.shape[1]} channels, probe expects {self.channels}"
            )
        y_all = {k: v.to(dev) for k, v in self._check_labels(labels, n).items()}
        gen = torch.Generator().manual_seed(int(seed))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            for module in self.modules():
                reset = getattr(module, "reset_parameters", None)
                if callable(reset) and module is not self:
                    reset()
        capture = dev.type == "cuda" and n >= batch_size if cuda_graph is None else cuda_graph
        if capture and (dev.type != "cuda" or n < batch_size):
            raise ValueError(
                f"cuda_graph needs a CUDA device and at least one full batch ({n} images, "
                f"batch {batch_size}, device {dev})"
            )
        optimizer = torch.optim.Adam(self.parameters(), lr=lr, capturable=capture)
        watch = _Watch(self, early_stopping, dev) if early_stopping is not None else None
        self.train()
        with deterministic_cudnn():  # same seed, same ψ
            run = self._fit_epochs(x_all, y_all, optimizer, gen, batch_size, epochs, capture, watch)
        self.eval()
        self.fit_record = {"epochs_max": int(epochs), "epochs_run": run}
        if watch is not None:
            self.fit_record = watch.record(epochs)
        return self

    def _fit_epochs(
        self,
        x_all: torch.Tensor,
        y_all: Mapping[str, torch.Tensor],
        optimizer: torch.optim.Optimizer,
        gen: torch.Generator,
        batch_size: int,
        epochs: int,
        capture: bool,
        watch: _Watch | None,
    ) -> int:
        """The epochs of :meth:`fit` (full batches replayed when ``capture``); how many ran."""
        names = list(y_all)
        y_stack = torch.stack([y_all[k] for k in names], 1)  # [N, nodes]
        graphed = (
            self._graphed_step(x_all, y_stack, names, optimizer, batch_size) if capture else None
        )
        run = 0
        for epoch in range(int(epochs)):
            self.history.append(
                self._fit_epoch(x_all, y_stack, names, optimizer, gen, batch_size, graphed)
            )
            log.info("image probe epoch %d: loss %.4f", epoch, self.history[-1])
            run += 1
            if watch is not None and watch.stop(self._accuracy(watch.x, watch.y)):
                log.info("image probe: held-out accuracy flat, stopped after epoch %d", epoch)
                break
        return run

    @torch.no_grad()
    def _accuracy(
        self, x_all: Any, y_all: Mapping[str, torch.Tensor], batch_size: int = 512
    ) -> dict[str, float]:
        """Accuracy per attribute (missing codes skipped; NaN when none is known): each batch of
        images made float on the probe's device (resident images stay where they are), the hits
        counted there and read from the device once."""
        dev = self._device()
        was_training = self.training
        self.eval()
        hits = {k: torch.zeros((), device=dev, dtype=torch.int64) for k in y_all}
        for start in range(0, len(x_all), batch_size):
            logits = self(to_float_images(x_all[start : start + batch_size], dev))
            for name, codes in y_all.items():
                target = codes[start : start + batch_size].to(dev)
                hits[name] += (logits[name].argmax(-1) == target).sum()
        self.train(was_training)
        known = torch.stack([(y >= 0).sum() for y in y_all.values()])
        counts = torch.stack(list(hits.values())).cpu().tolist()
        totals = known.cpu().tolist()
        return {k: c / t if t else float("nan") for k, c, t in zip(y_all, counts, totals)}

    def _batch_loss(
        self, x: torch.Tensor, targets: torch.Tensor, names: Sequence[str]
    ) -> torch.Tensor:
        """The summed cross-entropies of a batch (``targets: [B, len(names)]``, -1 = missing),
        each node's averaged over its known labels.

        The labels of every node are counted in one reduction: fewer kernels per step than one
        count per node, same numbers."""
        logits = self(to_float_images(x))
        # a batch without any label of a node adds 0 for it (cross_entropy would give NaN)
        known = (targets >= 0).sum(0).clamp(min=1)
        loss = logits[next(iter(logits))].new_zeros(())
        for i, name in enumerate(names):
            term = F.cross_entropy(logits[name], targets[:, i], ignore_index=-1, reduction="sum")
            loss = loss + term / known[i]
        return loss

    def _graphed_step(
        self,
        x_all: torch.Tensor,
        y_stack: torch.Tensor,
        names: Sequence[str],
        optimizer: torch.optim.Optimizer,
        batch_size: int,
    ) -> Any:
        from causalscene.train.graph import GraphedStep

        def objective(
            x: torch.Tensor, labels: Mapping[str, torch.Tensor]
        ) -> tuple[torch.Tensor, torch.Tensor]:
            loss = self._batch_loss(x, labels["y"], names)
            # the second output outlives the step: detached, it keeps no autograd graph (whose
            # gradient accumulators would then meet the eager last batch on another stream)
            return loss, loss.detach()

        return GraphedStep(objective, optimizer, x_all, {"y": y_stack}, None, batch_size)

    def _fit_epoch(
        self,
        x_all: torch.Tensor,
        y_stack: torch.Tensor,
        names: Sequence[str],
        optimizer: torch.optim.Optimizer,
        gen: torch.Generator,
        batch_size: int,
        graphed: Any = None,
    ) -> float:
        """One pass in a random order (full batches through ``graphed`` when given); the mean
        loss, read once (no host sync per step)."""
        n = x_all.shape[0]
        order = torch.randperm(n, generator=gen).to(x_all.device)
        total = torch.zeros((), device=x_all.device, dtype=torch.float64)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            if graphed is not None and len(idx) == batch_size:
                loss = graphed(idx)[0]
            else:
                loss = self._batch_loss(x_all[idx], y_stack[idx], names)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            total += loss.detach().double() * len(idx)
        return float(total) / n

    @torch.no_grad()
    def predict_proba_tensor(self, images: Any, batch_size: int = 512) -> dict[str, torch.Tensor]:
        """``{node: probabilities [N, card]}`` as tensors on the probe's device."""
        x_all = to_float_images(images)
        dev = self._device()
        was_training = self.training
        self.eval()
        chunks: dict[str, list[torch.Tensor]] = {n: [] for n in self.cards}
        for start in range(0, x_all.shape[0], batch_size):
            logits = self(x_all[start : start + batch_size].to(dev))
            for name, value in logits.items():
                chunks[name].append(value.softmax(-1))
        self.train(was_training)
        return {
            n: torch.cat(v) if v else torch.zeros(0, self.cards[n], device=dev)
            for n, v in chunks.items()
        }

    def predict_proba(self, images: Any, batch_size: int = 512) -> dict[str, np.ndarray]:
        """``{node: probabilities [N, card]}`` (numpy)."""
        probs = self.predict_proba_tensor(images, batch_size)
        return {n: p.cpu().numpy() for n, p in probs.items()}

    def predict(self, images: Any) -> dict[str, np.ndarray]:
        """``{node: most probable state index [N]}`` (int64)."""
        return {n: p.argmax(-1).astype(np.int64) for n, p in self.predict_proba(images).items()}

    def accuracy(self, images: Any, labels: Mapping[str, Any]) -> dict[str, float]:
        """Fraction of correct predictions per attribute in ``labels`` (missing codes skipped)."""
        to_float_images(images[:1])  # the layout checked up front
        return self._accuracy(images, self._check_labels(labels, len(images)))

    def save(self, path: str | Path) -> Path:
        """Plain ``state_dict`` plus the constructor's arguments (loadable with weights_only)."""
        state = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        payload = {
            "config": {
                "cards": dict(self.cards),
                "image_size": self.image_size,
                "channels": self.channels,
                "width": self.width,
            },
            "state_dict": state,
            "fit_record": dict(self.fit_record),
        }
        return atomic_torch_save(payload, path)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> ImageProbe:
        payload = load_torch(path, "probe", device)  # SHA-256 verified, weights only
        config: Any = payload.get("config") if isinstance(payload, dict) else None
        try:
            probe = cls(config["cards"], config["image_size"], config["channels"], config["width"])
        except (TypeError, KeyError, ValueError, AttributeError, RuntimeError):
            raise ValueError(f"{path}: not a probe file (no valid 'config')") from None
        check_model_payload({"model": payload.get("state_dict")}, probe, Path(path))
        probe.load_state_dict(payload["state_dict"])
        record = payload.get("fit_record")
        probe.fit_record = dict(record) if isinstance(record, dict) else {}
        probe.eval()
        return probe.to(device)


# --------------------------------------------------------------------------- latents
def fit_logistic_batched(
    x: torch.Tensor,
    y: torch.Tensor,
    weight: torch.Tensor | None = None,
    l2: float = 1e-3,
    max_iter: int = 50,
    tol: float | None = None,
    chunk_elements: int = 2**26,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit P independent L2-regularised logistic regressions at once (damped Newton / IRLS).

    Problem p minimises ``Σ_n ω_pn · BCE(σ(w_pᵀx_n + b_p), y_pn) / Σ_n ω_pn + (l2 / 2)‖w_p‖²``
    (the bias is not penalised; a 1e-8 ridge on it keeps separable problems finite).

    Args:
        x: shared design ``[N, D]`` or one per problem ``[P, N, D]``.
        y: targets in {0, 1}, ``[P, N]``.
        weight: optional sample weights ``[P, N]`` (0 drops a sample, e.g. a missing label).
        l2: ridge strength on ``w``; must be > 0 so every problem has a unique solution.
        tol: stop a problem when its Newton decrement gᵀH⁻¹g falls below ``tol`` (default 1e-12
            in float64, 1e-9 in float32) or when a line search can no longer lower its loss.
    Returns:
        ``(w [P, D], b [P])``. Every Newton step is one batched linear solve over the still
        active problems' ``(D + 1) × (D + 1)`` Hessians, with a per-problem backtracking line
        search; converged problems drop out of the batch.
    """
    if l2 <= 0:
        raise ValueError(f"l2 must be > 0, got {l2}")
    if tol is None:
        tol = 1e-12 if x.dtype == torch.float64 else 1e-9
    problem = _LogisticProblems.build(x, y, weight, l2, chunk_elements)
    d = problem.d
    theta = x.new_zeros(problem.p, d + 1)
    active = torch.arange(problem.p, device=x.device)
    for it in range(int(max_iter)):
        if active.numel() == 0:
            break
        th = theta[active]
        loss, step, decrement = problem.newton_step(th, active)
        new_th, accepted = problem.line_search(th, active, loss, step, decrement)
        theta[active] = new_th
        done = (decrement < tol) | ~accepted
        log.debug(
            "newton %d: %d active, max decrement %.3g", it, len(active), float(decrement.max())
        )
        active = active[~done]
    return theta[:, :d].contiguous(), theta[:, d].contiguous()


@dataclass
class _LogisticProblems:
    """The P problems of :func:`fit_logistic_batched`: design, targets, normalised weights, ridge.

    Methods take ``idx``, the still active problems, and ``t``, their parameters ``[A, D + 1]``.
    """

    xa: torch.Tensor  #: design with a ones column, ``[N, D+1]`` (shared) or ``[P, N, D+1]``
    y: torch.Tensor  #: targets ``[P, N]``
    omega: torch.Tensor  #: sample weights, each row summing to 1, ``[P, N]``
    ridge: torch.Tensor  #: ``[D+1]``: l2 on w, 1e-8 on the bias
    shared: bool
    chunk: int  #: problems per Hessian chunk

    @classmethod
    def build(
        cls,
        x: torch.Tensor,
        y: torch.Tensor,
        weight: torch.Tensor | None,
        l2: float,
        chunk_elements: int,
    ) -> _LogisticProblems:
        y = y.to(x.dtype)
        n = y.shape[1]
        d = x.shape[-1]
        ones = x.new_ones(*x.shape[:-1], 1)
        xa = torch.cat([x, ones], dim=-1)  # [N, D+1] or [P, N, D+1]
        omega = torch.ones_like(y) if weight is None else weight.to(x.dtype)
        omega = omega / omega.sum(1, keepdim=True).clamp_min(1e-12)
        ridge = torch.full((d + 1,), float(l2), dtype=x.dtype, device=x.device)
        ridge[-1] = 1e-8
        chunk = max(1, int(chunk_elements // max(1, n * (d + 1))))
        return cls(xa, y, omega, ridge, x.ndim == 2, chunk)

    @property
    def p(self) -> int:
        return self.y.shape[0]

    @property
    def d(self) -> int:
        return self.xa.shape[-1] - 1

    def logits(self, t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        if self.shared:
            return t @ self.xa.T  # [A, N]
        return torch.einsum("pnd,pd->pn", self.xa[idx], t)

    def objective(self, t: torch.Tensor, logits: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        bce = F.binary_cross_entropy_with_logits(logits, self.y[idx], reduction="none")
        return (self.omega[idx] * bce).sum(1) + 0.5 * (self.ridge * t * t).sum(1)

    def newton_step(
        self, th: torch.Tensor, idx: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(loss [A], Newton step [A, D+1], decrement gᵀH⁻¹g [A])`` at ``th``."""
        xa, d = self.xa, self.d
        logits = self.logits(th, idx)
        loss = self.objective(th, logits, idx)
        prob = torch.sigmoid(logits)
        om = self.omega[idx]
        resid = om * (prob - self.y[idx])  # [A, N]
        if self.shared:
            grad = resid @ xa + self.ridge * th
        else:
            grad = torch.einsum("pn,pnd->pd", resid, xa[idx]) + self.ridge * th
        s = om * prob * (1 - prob)
        hess = torch.empty(len(idx), d + 1, d + 1, dtype=xa.dtype, device=xa.device)
        for start in range(0, len(idx), self.chunk):
            sl = slice(start, start + self.chunk)
            xs = xa if self.shared else xa[idx[sl]]
            hess[sl] = (xs * s[sl, :, None]).transpose(1, 2) @ xs
        step = torch.linalg.solve(hess + torch.diag(self.ridge), grad.unsqueeze(-1)).squeeze(-1)
        return loss, step, (grad * step).sum(1)  # Newton decrement² (≥ 0)

    def line_search(
        self,
        th: torch.Tensor,
        idx: torch.Tensor,
        loss: torch.Tensor,
        step: torch.Tensor,
        decrement: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Backtracking: per problem, the largest t in {1, 1/2, ..., 1/2^10} that lowers the
        loss. Returns the new parameters and which problems accepted a step."""
        t = th.new_ones(len(idx))
        accepted = torch.zeros(len(idx), dtype=torch.bool, device=th.device)
        new_th = th
        for _ in range(11):
            cand = th - t[:, None] * step
            cand_loss = self.objective(cand, self.logits(cand, idx), idx)
            ok = (~accepted) & (cand_loss <= loss - 1e-4 * t * decrement)
            new_th = torch.where(ok[:, None], cand, new_th)
            accepted |= ok
            if bool(accepted.all()):
                break
            t = torch.where(accepted, t, t * 0.5)
        return new_th, accepted


def _binary_codes(name: str, codes: Any, n: int) -> np.ndarray:
    codes = np.asarray(codes).reshape(-1)
    if codes.shape[0] != n:
        raise ValueError(f"attribute '{name}' has {codes.shape[0]} labels for {n} latents")
    if not np.issubdtype(codes.dtype, np.integer) and not np.issubdtype(codes.dtype, np.bool_):
        if not np.all(np.isin(codes, (0, 1, -1))):
            raise ValueError(f"attribute '{name}' is not binary (codes must be 0/1, -1 = missing)")
    codes = codes.astype(np.int64)
    bad = np.setdiff1d(np.unique(codes), [-1, 0, 1])
    if bad.size:
        raise ValueError(f"attribute '{name}' is not binary: it has code {int(bad[0])}")
    for cls in (0, 1):
        if int((codes == cls).sum()) < 2:
            raise ValueError(
                f"attribute '{name}' has fewer than 2 examples of class {cls}: a probe needs both"
            )
    return codes


class LatentProbe:
    """CAGE's latent probes φ_m(z) = σ(w_mᵀ z + b_m), one per binary attribute m.

    Bose, Monti & Grover (TMLR 2022), section 3.1: the treatment's decision boundary in latent
    space is the hyperplane w_mᵀz + b_m = 0; its unit normal ĥ_m = w_m / ‖w_m‖ is the direction of
    an intervention on m (eq. 4). All attributes are fitted together by
    :func:`fit_logistic_batched`. With ``holdout > 0``, a random fraction of the latents is kept
    out of fitting and the held-out accuracy per attribute is stored in ``accuracy_`` (the
    paper's linear-separability check); the final probes are then refitted on all data.

    ``method="svm"`` fits sklearn's ``LinearSVC`` per attribute instead (the paper's choice) and
    turns its margin into a probability with Platt scaling (sklearn ``CalibratedClassifierCV`` is
    avoided: the probability is σ(a·f(z) + c) with (a, c) fitted by the same batched solver).
    """

    def __init__(
        self,
        l2: float = 1e-3,
        max_iter: int = 50,
        method: str = "logistic",
        device: str | torch.device | None = None,
    ):
        if method not in ("logistic", "svm"):
            raise ValueError(f"method must be 'logistic' or 'svm', got '{method}'")
        if l2 <= 0:
            raise ValueError(f"l2 must be > 0, got {l2}")
        self.l2 = float(l2)
        self.max_iter = int(max_iter)
        self.method = method
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.attributes: list[str] = []
        self.weight: torch.Tensor | None = None  # [A, D]
        self.bias: torch.Tensor | None = None  # [A]
        self.accuracy_: dict[str, float] = {}
        self.train_accuracy_: dict[str, float] = {}

    # ------------------------------------------------------------------ fitting
    def _solve(
        self, z: torch.Tensor, y: torch.Tensor, w: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.method == "logistic":
            return fit_logistic_batched(z, y, w, l2=self.l2, max_iter=self.max_iter)
        from sklearn.svm import LinearSVC

        weights, biases = [], []
        zc = z.cpu().numpy()
        for row in range(y.shape[0]):
            keep = w[row].cpu().numpy() > 0
            svm = LinearSVC(C=1.0 / (self.l2 * keep.sum()), dual="auto", max_iter=5000)
            svm.fit(zc[keep], y[row].cpu().numpy()[keep])
            weights.append(svm.coef_[0])
            biases.append(svm.intercept_[0])
        wt = torch.as_tensor(np.stack(weights), dtype=z.dtype, device=z.device)
        bt = torch.as_tensor(np.array(biases), dtype=z.dtype, device=z.device)
        margin = (z @ wt.T + bt).T  # [A, N]
        a, c = fit_logistic_batched(margin[:, :, None], y, w, l2=1e-6, max_iter=self.max_iter)
        return wt * a, bt * a[:, 0] + c

    def fit(
        self,
        z: Any,
        labels: Mapping[str, Any],
        holdout: float = 0.2,
        seed: int = 0,
    ) -> LatentProbe:
        """Fit one probe per attribute of ``labels`` (``{name: codes [N]}`` in {0, 1}; -1 missing).

        ``z: [N, D]``. Raises ``ValueError`` for a non-binary attribute or one with fewer than two
        examples of a class.
        """
        zt = torch.as_tensor(np.asarray(z) if not isinstance(z, torch.Tensor) else z)
        zt = zt.to(self.device, torch.float64 if zt.dtype == torch.float64 else torch.float32)
        if zt.ndim != 2:
            raise ValueError(f"z must be [N, D], got shape {tuple(zt.shape)}")
        n = zt.shape[0]
        if not labels:
            raise ValueError("labels must name at least one attribute")
        codes = {k: _binary_codes(k, v, n) for k, v in labels.items()}
        self.attributes = list(codes)
        y = torch.as_tensor(
            np.stack([np.clip(c, 0, 1) for c in codes.values()]), device=self.device
        )
        valid = torch.as_tensor(np.stack([c >= 0 for c in codes.values()]), device=self.device)
        y = y.to(zt.dtype)
        self.accuracy_, self.train_accuracy_ = {}, {}
        if holdout > 0:
            if not 0 < holdout < 1:
                raise ValueError(f"holdout must be in [0, 1), got {holdout}")
            # a stream of its own: from default_rng(seed), the split repeated a label drawn from
            # that same stream (procgen.sample_batch(seed=seed)), and every held-out image of a
            # 300-image faces set had one gender (accuracy 0.21 on a one-class test set)
            rng = np.random.default_rng([seed, HOLDOUT_SALT])
            test = torch.as_tensor(rng.random(n) < holdout, device=self.device)
            train_w = (valid & ~test).to(zt.dtype)
            w, b = self._solve(zt, y, train_w)
            predicted = ((zt @ w.T + b) > 0).T.to(zt.dtype)  # [A, N]
            correct = (predicted == y).to(zt.dtype)
            for i, name in enumerate(self.attributes):
                mask_test = valid[i] & test
                mask_train = valid[i] & ~test
                self.accuracy_[name] = (
                    float(correct[i][mask_test].mean()) if mask_test.any() else float("nan")
                )
                self.train_accuracy_[name] = float(correct[i][mask_train].mean())
        w, b = self._solve(zt, y, valid.to(zt.dtype))
        self.weight, self.bias = w, b
        return self

    # ------------------------------------------------------------------ queries
    def _index(self, name: str) -> int:
        if self.weight is None:
            raise ValueError("probe is not fitted")
        if name not in self.attributes:
            raise ValueError(f"unknown attribute '{name}' (probes: {', '.join(self.attributes)})")
        return self.attributes.index(name)

    def params(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(w [D], b)`` of attribute ``name``."""
        i = self._index(name)
        assert self.weight is not None and self.bias is not None
        return self.weight[i], self.bias[i]

    def normal(self, name: str) -> torch.Tensor:
        """ĥ_m = w_m / ‖w_m‖, the unit normal of the decision boundary (points towards m = 1)."""
        w, _ = self.params(name)
        return w / w.norm().clamp_min(1e-12)

    def logits(self, z: Any, name: str) -> torch.Tensor:
        """w_mᵀz + b_m for ``z: [..., D]`` → ``[...]``."""
        w, b = self.params(name)
        zt = torch.as_tensor(z).to(w.device, w.dtype)
        return zt @ w + b

    def predict_proba(self, z: Any, name: str) -> torch.Tensor:
        """φ_m(z) = σ(w_mᵀz + b_m)."""
        return torch.sigmoid(self.logits(z, name))

    def predict(self, z: Any, name: str) -> torch.Tensor:
        """The factual treatment m(z) = 1[φ_m(z) > ½] (int64)."""
        return (self.logits(z, name) > 0).long()
