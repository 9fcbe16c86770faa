"""Training: stochastic variational inference of a :class:`~causalscene.model.CausalVAE` or
:class:`~causalscene.model.PlainVAE` on an image dataset.

The objective is Pyro's ``TraceEnum_ELBO`` (hidden DAG nodes summed out by parallel enumeration),
per image, minimised with a plain ``torch.optim.Adam``: one step is
``TraceEnum_ELBO().differentiable_loss(model.model, model.guide, x, labels) / B`` (+ the classifier's
auxiliary cross-entropy, + for a CausalVAE the decoder's label-consistency term
``consistency_weight * H * W * consistency_loss``, + ``sdr_weight * sdr_penalty(decoder)``), so the
whole step is one torch graph — the same estimator as ``pyro.infer.SVI`` without its per-parameter
param-store traffic.

Run folder (``out``)::

    config.json      the TrainConfig, command line, seed, package version
    model.json       the model's constructor arguments;   dag.json  the DAG (to_dict form)
    checkpoint.pt    state_dict + optimizer state + RNG states + position (epoch, step), atomic;
                     loadable with torch.load(weights_only=True)
    metrics.jsonl    one line per epoch: train ELBO, held-out ELBO, seconds, images/s
    samples_eNNN.png, recon_eNNN.png   per epoch

Exact resume: batches come from a permutation seeded by (seed, epoch), the torch RNG state is in
the checkpoint, checkpoints are written every ``checkpoint_every`` steps and at each epoch end,
and evaluation runs under a forked RNG; so a run killed at any point and resumed from its last
checkpoint takes the same steps as an uninterrupted one (bit-identical on CPU).

Speed: the dataset lives on the device as uint8 ``[N, C, H, W]``; a step makes no host sync (the
loss is accumulated on the device and read every ``log_every`` steps, which is also when the
NaN/inf guard looks); optional bf16 autocast and channels_last (``bf16``, ``channels_last``).

``cuda_graph``: the whole step is captured once as a CUDA graph and replayed (:class:`GraphedStep`),
which removes Pyro's per-step Python tracing; the epoch's last incomplete batch is dropped.

Multi-GPU: launched by ``torchrun``, :func:`fit` joins the process group (NCCL on CUDA, gloo on
CPU), wraps the loss in ``DistributedDataParallel`` and gives each rank the slice
``order[rank::world]`` of the epoch's permutation (``batch_size`` is per process). Rank 0 writes
the run folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyro
import torch
from pyro.infer import TraceEnum_ELBO
from torch import nn

from causalscene.dag import CausalDAG
from causalscene.model import CausalVAE, PlainVAE
from causalscene.tensors import resolve_device
from causalscene.utils import (
    atomic_torch_save,
    atomic_write_json,
    atomic_write_text,
    write_run_info,
)

__all__ = [
    "TrainConfig",
    "TrainingDiverged",
    "fit",
    "load_run",
    "build_model",
    "load_dataset",
    "resolve_device",
    "elbo_loss",
    "consistency_term",
    "GraphedStep",
    "GradientSpikeGuard",
]

log = logging.getLogger(__name__)

#: config fields that may change on ``--resume`` (everything else must match the checkpoint).
RESUME_MAY_CHANGE = (
    "epochs",
    "device",
    "progress",
    "out",
    "validate",
    "collapse_labels",
    "checkpoint_every",
    "log_every",
)
#: config fields added after checkpoints were first written, with the value that an older
#: checkpoint's run used (it predates them), so ``--resume`` of an old run is checked correctly
FIELDS_BEFORE_THEY_EXISTED = {"consistency_weight": 0.0, "consistency_fraction": 1.0}


@dataclass
class TrainConfig:
    """Training options (the CLI's flags map onto these; defaults fit a 2-core CPU in minutes)."""

    dag: str | None = None  #: DAG file (None with ``no_dag``)
    data: str | None = None  #: dataset folder (procgen format)
    out: str | None = None  #: run folder
    epochs: int = 8
    batch_size: int = 32
    lr: float = 2e-3
    latent_dim: int = 8
    likelihood: str = "gaussian"
    base_channels: int = 16
    device: str = "auto"  #: auto | cpu | cuda | cuda:K
    seed: int = 0
    learn_cpts: bool = False
    no_dag: bool = False
    sdr_weight: float = 0.0
    aux_weight: float = 1.0  #: weight of the classifier's cross-entropy on observed labels
    #: weight of the decoder's label-consistency term (:meth:`CausalVAE.consistency_loss`) *per
    #: pixel*: the term enters the per-image loss as ``consistency_weight * H * W * CE``, so it
    #: keeps its share of the -ELBO (a sum over pixels) at any image size; 0: the plain ELBO.
    #: What it buys (intervention fidelity, held-out ELBO), measured: README, Limits
    consistency_weight: float = 0.25
    #: share of each batch the consistency term is computed on (its first ``round(f * B)``
    #: images, a uniform sample since batches are shuffled; the term is a batch mean, so this is an
    #: unbiased estimate of it at a fraction of the cost of its extra encode, decode and
    #: classifier pass). Below 1 it pays off only with many steps: on the 64 px GPU budget 0.25
    #: kept every node's fidelity ≥ 0.93 at 94k images/s (1.0: 70k), but on small planted CPU data
    #: (600 images, batch 32) 0.125 left min fidelity at 0.56 (1.0: ≥ 0.9). Measured: README, Limits
    consistency_fraction: float = 1.0
    holdout_fraction: float = 0.1
    max_images: int | None = None  #: use only the first N images of the dataset
    checkpoint_every: int = 100  #: steps between checkpoints (and one at each epoch end)
    log_every: int = 10  #: steps between host reads of the loss (progress bar, NaN guard)
    grid_size: int = 16
    bf16: bool = False
    channels_last: bool = False
    progress: bool = True
    validate: bool = False  #: Pyro's distribution argument checks (slower; tests turn them on)
    #: complete labels + fixed CPTs: precompute the parameter-free log p(labels) once and leave
    #: the DAG sites out of each step (same gradient and ELBO; less per-step Python overhead)
    collapse_labels: bool = False
    #: rescale a step's gradient whose norm exceeds this many times the running mean of recent
    #: norms (0: off). Measured on the GPU (rpg, lr 2e-3, batch 512): without it held-out ELBO
    #: fell 23.7k → 2.0k at epoch 63 and never recovered; with it, no collapse in 100 epochs. It
    #: does not replace a sane learning rate (faces at lr 2e-3 still collapsed; 1e-3 did not)
    spike_factor: float = 5.0
    #: capture the whole step (Pyro loss, backward, Adam) as one CUDA graph and replay it: no
    #: per-step Python (Pyro's tracing runs once). CUDA only, one process; drops the epoch's last
    #: incomplete batch (a graph has static shapes)
    cuda_graph: bool = False


def to_channels_last(model: nn.Module) -> nn.Module:
    """Put the conv layers' weights in channels_last memory format (in place).

    Only conv modules: ``Module.to(memory_format=...)`` on the whole model would also try to
    convert 5-D buffers (CPTs of nodes with four parents), which channels_last cannot hold.
    """
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            module.to(memory_format=torch.channels_last)
    return model


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint was kept."""


# ------------------------------------------------------------------------------------ helpers
def load_dataset(
    data: Any, dag: CausalDAG | None = None, max_images: int | None = None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(images uint8 [N, H, W, C], {node: int64 [N]})`` from a folder, a ShardDataset or arrays;
    checked against ``dag`` (every label node present, codes in range, -1 = missing)."""
    if isinstance(data, tuple) and len(data) == 2:
        images, labels = data
        images = np.asarray(images)
        labels = {k: np.asarray(v) for k, v in (labels or {}).items()}
        source = "<arrays>"
    else:
        root = data if isinstance(data, (str, os.PathLike)) else getattr(data, "root", data)
        source = str(root)
        from causalscene.datasets import load_arrays

        images, labels = load_arrays(root, dag)
    if max_images is not None:
        images = images[:max_images]
        labels = {k: v[:max_images] for k, v in labels.items()}
    if images.ndim != 4 or images.dtype != np.uint8 or images.shape[-1] not in (1, 3):
        raise ValueError(
            f"{source}: images must be uint8 [N, H, W, C], got {images.dtype} {images.shape}"
        )
    n, h, w, _ = images.shape
    if h != w:
        raise ValueError(f"{source}: images must be square, got {h}x{w}")
    if n < 2:
        raise ValueError(f"{source}: need at least 2 images, got {n}")
    if dag is not None:
        for node in dag.label_nodes:
            if node not in labels:
                raise ValueError(
                    f"{source}: no labels for node '{node}' of DAG '{dag.name}' "
                    f"(dataset columns: {', '.join(sorted(labels)) or 'none'})"
                )
            codes = labels[node]
            if codes.shape != (n,):
                raise ValueError(
                    f"{source}: labels of '{node}' have shape {codes.shape}, expected ({n},)"
                )
            card = dag.cardinality(node)
            if codes.size and (codes.min() < -1 or codes.max() >= card):
                raise ValueError(
                    f"{source}: labels of '{node}' outside [-1, {card}) — dataset and DAG "
                    f"'{dag.name}' disagree on its states {list(dag.states(node))}"
                )
        labels = {k: labels[k].astype(np.int64) for k in dag.label_nodes}
    return images, labels


def build_model(model_config: Mapping[str, Any], dag: CausalDAG | None) -> nn.Module:
    """A model from its ``config()`` dict (``model.json``)."""
    cfg = dict(model_config)
    kind = cfg.pop("kind")
    if kind == "plain":
        return PlainVAE(**cfg)
    if kind == "causal":
        if dag is None:
            raise ValueError("a CausalVAE needs a DAG")
        return CausalVAE(dag, **cfg)
    raise ValueError(f"unknown model kind '{kind}'")


@contextlib.contextmanager
def _pyro_without_host_syncs():
    """Run ``TraceEnum_ELBO.differentiable_loss`` without its host syncs (they stall the GPU
    every step and make the step impossible to capture as a CUDA graph):

    * ``warn_if_nan(loss)`` reads the loss (and hooks its gradient) on the host each step; our
      own guard watches the accumulated loss every ``log_every`` steps instead.
    * ``Dice.compute_expectation`` checks ``mask.all()``; when the guide contributes no
      score-function factor (every guide site reparameterised: complete labels) Pyro's
      marginal probabilities of the cost terms are exp(0) = 1 everywhere and its result is
      Σ scale · ⟨1, cost⟩, computed here with Pyro's own dot product (bit for bit the same
      number; tested). With a tensor factor (missing labels) Pyro's own method runs.
    """
    from pyro.infer import traceenum_elbo
    from pyro.infer.util import Dice, _fulldot

    original = Dice.compute_expectation
    original_warn = traceenum_elbo.warn_if_nan

    def compute_expectation(self, costs):
        factors = {ordinal: self._get_log_factors(ordinal) for ordinal in costs}
        if any(torch.is_tensor(f) for fs in factors.values() for f in fs):
            return original(self, costs)
        total = 0.0
        for ordinal, cost_terms in costs.items():
            scale = math.exp(sum(factors[ordinal]))
            for cost in cost_terms:
                total = total + scale * _fulldot(torch.ones_like(cost), cost)
        return total

    Dice.compute_expectation = compute_expectation
    traceenum_elbo.warn_if_nan = lambda value, *args, **kwargs: value
    try:
        yield
    finally:
        Dice.compute_expectation = original
        traceenum_elbo.warn_if_nan = original_warn


def elbo_loss(
    model: nn.Module,
    x: torch.Tensor,
    labels: Mapping[str, torch.Tensor],
    partial=(),
    elbo=None,
    log_p_labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """-ELBO per image (nats), Pyro's ``TraceEnum_ELBO`` with the hidden nodes enumerated.

    With ``log_p_labels`` (``[B]``, see :meth:`CausalVAE.log_p_labels`) the model runs with
    ``collapse=True`` and the constant is added back."""
    elbo = elbo or TraceEnum_ELBO(max_plate_nesting=1)
    with _pyro_without_host_syncs():
        if log_p_labels is None:
            loss = elbo.differentiable_loss(model.model, model.guide, x, labels, partial)
            return loss / x.shape[0]
        loss = elbo.differentiable_loss(model.model, model.guide, x, labels, partial, True)
    return (loss - log_p_labels.sum()) / x.shape[0]


def consistency_term(
    model, x, labels, partial, weight_per_pixel: float, fraction: float = 1.0
) -> torch.Tensor:
    """The label-consistency term as it enters the per-image loss:
    ``weight_per_pixel * H * W * model.consistency_loss(x[:m], labels[:m], partial)`` with
    ``m = max(1, round(fraction * B))`` (see :attr:`TrainConfig.consistency_weight` and
    :attr:`TrainConfig.consistency_fraction`; a PlainVAE's is 0)."""
    weight = weight_per_pixel * x.shape[-1] * x.shape[-2]
    m = consistency_rows(x.shape[0], fraction)
    if m < x.shape[0]:
        x, labels = x[:m], {k: v[:m] for k, v in labels.items()}
    return weight * model.consistency_loss(x, labels, partial)


def consistency_rows(batch: int, fraction: float) -> int:
    """How many of a batch's images the consistency term sees."""
    return min(batch, max(1, round(fraction * batch)))


class _Objective(nn.Module):
    """The training loss as a module (so DistributedDataParallel can wrap it)."""

    def __init__(self, model: nn.Module, config: TrainConfig, partial: frozenset):
        super().__init__()
        self.model = model
        self.aux_weight = config.aux_weight
        self.consistency_weight = config.consistency_weight
        self.consistency_fraction = config.consistency_fraction
        self.sdr_weight = config.sdr_weight
        self.partial = partial
        self.bf16 = config.bf16
        self.channels_last = config.channels_last
        self.elbo = TraceEnum_ELBO(max_plate_nesting=1)

    def forward(self, images: torch.Tensor, labels: Mapping[str, torch.Tensor], log_p_labels=None):
        x = images.float().div_(255.0)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        # the autocast weight cache must be off while a CUDA graph is captured
        with torch.autocast(
            x.device.type, dtype=torch.bfloat16, enabled=self.bf16, cache_enabled=False
        ):
            neg_elbo = elbo_loss(self.model, x, labels, self.partial, self.elbo, log_p_labels)
            loss = neg_elbo
            if self.aux_weight:
                loss = loss + self.aux_weight * self.model.aux_loss(x, labels)
            if self.consistency_weight:
                loss = loss + consistency_term(
                    self.model,
                    x,
                    labels,
                    self.partial,
                    self.consistency_weight,
                    self.consistency_fraction,
                )
        if self.sdr_weight:
            from causalscene.sdr import sdr_penalty

            loss = loss + self.sdr_weight * sdr_penalty(self.model.decoder)
        return loss, neg_elbo.detach()


class GradientSpikeGuard:
    """Clip gradient spikes relative to the recent past, on the device (no host sync, so it can
    live inside a CUDA graph).

    With n = ‖∇‖ (all parameters) and m the running mean of past clipped norms (decay 0.99; the
    first step sets it), gradients are multiplied by min(1, factor · m / n). ``state`` (m) goes
    into checkpoints so that a resumed run clips exactly as an uninterrupted one.
    """

    def __init__(self, params: Sequence[nn.Parameter], factor: float, device, decay: float = 0.99):
        self.params = list(params)
        self.factor = float(factor)
        self.decay = float(decay)
        self.state = torch.zeros((), device=device)

    def __call__(self) -> None:
        if self.factor <= 0:
            return
        grads = [p.grad for p in self.params if p.grad is not None]
        if not grads:
            return
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        fresh = self.state <= 0
        limit = torch.where(fresh, norm, self.factor * self.state)
        torch._foreach_mul_(grads, torch.clamp(limit / (norm + 1e-12), max=1.0))
        clipped = torch.minimum(norm, limit)
        self.state.copy_(
            torch.where(fresh, clipped, self.decay * self.state + (1 - self.decay) * clipped)
        )


class GraphedStep:
    """One training step — the loss, ``backward()`` and ``optimizer.step()`` — captured once as a
    CUDA graph and replayed (``TrainConfig.cuda_graph``).

    Pyro traces the model and guide in Python on every call; captured, that Python runs once and
    each step is one graph launch on the GPU (the random draws stay fresh: CUDA graphs advance the
    Philox offset of the default generator at every replay). The only input is the batch's index
    vector, copied into a static buffer; the gather from the resident dataset is inside the graph.

    Warm-up steps (needed before capture, they allocate the optimizer state and autograd's
    buffers) are undone: parameters, optimizer state, the CUDA RNG state and any ``state``
    tensors the step updates (e.g. ``before_step``'s) are restored, so the
    graphed run takes the same steps as its first eager step would from there. The optimizer must
    be built with ``capturable=True``.
    """

    def __init__(
        self,
        objective: Callable[..., tuple[torch.Tensor, torch.Tensor]],
        optimizer: torch.optim.Optimizer,
        images: torch.Tensor,
        labels: Mapping[str, torch.Tensor],
        log_p_labels: torch.Tensor | None,
        batch_size: int,
        warmup: int = 3,
        before_step: Callable[[], None] | None = None,
        state: Sequence[torch.Tensor] = (),
    ):
        device = images.device
        if device.type != "cuda":
            raise ValueError("cuda_graph needs a CUDA device")
        if not all(g.get("capturable", False) for g in optimizer.param_groups):
            raise ValueError("cuda_graph needs an optimizer built with capturable=True")
        self.batch_size = batch_size
        self.index = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.index.copy_(torch.arange(batch_size, device=device) % len(images))

        def step() -> tuple[torch.Tensor, torch.Tensor]:
            idx = self.index
            extra = () if log_p_labels is None else (log_p_labels[idx],)
            loss, neg_elbo = objective(images[idx], {k: v[idx] for k, v in labels.items()}, *extra)
            loss.backward()
            if before_step is not None:
                before_step()
            optimizer.step()
            return loss.detach(), neg_elbo

        params = [p for g in optimizer.param_groups for p in g["params"]]
        saved_params = [p.detach().clone() for p in params]
        saved_state = {
            p: {k: v.clone() if torch.is_tensor(v) else v for k, v in optimizer.state[p].items()}
            for p in params
            if p in optimizer.state
        }
        saved_rng = torch.cuda.get_rng_state(device)
        saved_extra = [(t, t.clone()) for t in state]
        # argument validation reads tensors on the host: impossible inside a graph
        with pyro.validation_enabled(False):
            self._capture(
                step, optimizer, params, saved_params, saved_state, saved_extra, saved_rng, warmup
            )

    def _capture(
        self, step, optimizer, params, saved_params, saved_state, saved_extra, saved_rng, warmup
    ):
        device = self.index.device
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(warmup):
                optimizer.zero_grad(set_to_none=True)
                step()
        torch.cuda.current_stream(device).wait_stream(side)
        with torch.no_grad():  # undo the warm-up
            for p, value in zip(params, saved_params):
                p.copy_(value)
            for p in params:
                for k, v in optimizer.state[p].items():
                    if not torch.is_tensor(v):
                        continue
                    before = saved_state.get(p, {}).get(k)
                    v.copy_(before) if before is not None else v.zero_()
            for tensor, before in saved_extra:
                tensor.copy_(before)
        torch.cuda.set_rng_state(saved_rng, device)
        optimizer.zero_grad(set_to_none=True)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.loss, self.neg_elbo = step()

    def __call__(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run one step on the batch ``idx`` (``[batch_size]`` on the device); returns the
        (static) loss and -ELBO tensors, overwritten by the next call."""
        self.index.copy_(idx)
        self.graph.replay()
        return self.loss, self.neg_elbo


def _rng_state(device: torch.device) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _config_dict(config: TrainConfig) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(config)))


def _read_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # corrupt zip, truncated file, unpickling refused ...
        raise ValueError(
            f"{path}: corrupt or unreadable checkpoint ({type(exc).__name__}: {exc})"
        ) from None


def _dist_info() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return world, rank, local


# ----------------------------------------------------------------------------------------- fit
def fit(
    model: nn.Module,
    dataset: Any,
    config: TrainConfig,
    out: str | Path | None = None,
    resume: bool = False,
    callbacks: Sequence[Callable[[dict[str, Any]], None]] = (),
    dag: CausalDAG | None = None,
) -> list[dict[str, Any]]:
    """Train ``model`` on ``dataset`` by SVI; return the per-epoch metrics (also in metrics.jsonl).

    Args:
        model: a :class:`CausalVAE` or :class:`PlainVAE` (or anything with ``model``, ``guide``,
            ``aux_loss``, ``decoder`` and ``config()``).
        dataset: a dataset folder, a ``ShardDataset``, or ``(images uint8 [N,H,W,C], {node: codes})``.
        config: the :class:`TrainConfig`.
        out: run folder (default ``config.out``); None → no files at all.
        resume: continue from ``out/checkpoint.pt`` (the config must match, except
            :data:`RESUME_MAY_CHANGE`).
        callbacks: called after every step with ``{"epoch", "step", "global_step", "loss"
            (a device tensor), "model"}``.
    """
    out = Path(out) if out is not None else (Path(config.out) if config.out else None)
    dag = dag if dag is not None else getattr(model, "dag", None)
    world, rank, local_rank = _dist_info()
    device = resolve_device(config.device)
    if world > 1:
        import torch.distributed as dist

        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    main_process = rank == 0
    if config.batch_size < 1 or config.epochs < 0 or config.lr <= 0:
        raise ValueError("batch_size must be >= 1, epochs >= 0 and lr > 0")
    if not 0.0 <= config.holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in [0, 1), got {config.holdout_fraction}")
    if config.consistency_weight < 0:
        raise ValueError(f"consistency_weight must be >= 0, got {config.consistency_weight}")
    if not 0.0 < config.consistency_fraction <= 1.0:
        raise ValueError(
            f"consistency_fraction must be in (0, 1], got {config.consistency_fraction}"
        )

    images_np, labels_np = load_dataset(
        dataset, dag if isinstance(model, CausalVAE) else None, config.max_images
    )
    image_size = images_np.shape[1]
    if image_size != getattr(model, "image_size", image_size):
        raise ValueError(
            f"dataset images are {image_size}px, the model expects {model.image_size}px"
        )
    n_total = len(images_np)
    split = torch.randperm(n_total, generator=torch.Generator().manual_seed(config.seed))
    n_hold = min(n_total - 1, int(round(config.holdout_fraction * n_total)))
    train_idx, hold_idx = split[: n_total - n_hold], split[n_total - n_hold :]
    images = (
        torch.from_numpy(np.ascontiguousarray(images_np))
        .permute(0, 3, 1, 2)
        .contiguous()
        .to(device)
    )
    labels = {k: torch.from_numpy(v).to(device) for k, v in labels_np.items()}
    partial = frozenset(k for k, v in labels_np.items() if (v < 0).any())
    train_images, hold_images = images[train_idx.to(device)], images[hold_idx.to(device)]
    train_labels = {k: v[train_idx.to(device)] for k, v in labels.items()}
    hold_labels = {k: v[hold_idx.to(device)] for k, v in labels.items()}
    del images, labels
    n_train = len(train_images)
    train_logp = None
    if isinstance(model, CausalVAE):
        model.data_size = n_train
        if config.collapse_labels and not model.learn_cpts and not partial:
            train_logp = model.log_p_labels(train_labels)
            train_logp = train_logp.to(device) if train_logp is not None else None

    torch.manual_seed(config.seed)
    model.to(device)
    if config.channels_last:
        to_channels_last(model)
    objective = _Objective(model, config, partial)
    wrapped: nn.Module = objective
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        wrapped = DistributedDataParallel(
            objective, device_ids=[device.index] if device.type == "cuda" else None
        )
    if config.cuda_graph and (device.type != "cuda" or world > 1):
        raise ValueError("--cuda-graph needs one process on a CUDA device")
    if config.cuda_graph and partial:
        raise ValueError(
            f"--cuda-graph needs complete labels (missing values in: {', '.join(sorted(partial))})"
        )
    if config.cuda_graph and n_train < config.batch_size:
        raise ValueError(
            f"--cuda-graph drops incomplete batches: {n_train} training images < batch size "
            f"{config.batch_size}"
        )
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, capturable=config.cuda_graph)
    spike_guard = GradientSpikeGuard(model.parameters(), config.spike_factor, device)

    ckpt_path = out / "checkpoint.pt" if out else None
    start_epoch, start_step, global_step = 0, 0, 0
    running = torch.zeros((), device=device, dtype=torch.float64)
    counted = 0
    history: list[dict[str, Any]] = []
    if resume:
        if ckpt_path is None or not ckpt_path.is_file():
            raise ValueError(f"--resume: no checkpoint at {ckpt_path}")
        state = _read_checkpoint(ckpt_path, device)
        saved = json.loads(state["config"])
        mine = _config_dict(config)
        # fields added since the checkpoint was written: the value they had before they existed
        defaults = {**_config_dict(TrainConfig()), **FIELDS_BEFORE_THEY_EXISTED}
        saved = {**{k: v for k, v in defaults.items() if k not in saved}, **saved}
        differ = [k for k in mine if k not in RESUME_MAY_CHANGE and saved.get(k) != mine[k]]
        if mine["consistency_weight"] == saved.get("consistency_weight") == 0:
            differ = [k for k in differ if k != "consistency_fraction"]  # no term: no share
        if differ:
            detail = ", ".join(f"{k}: {saved.get(k)!r} → {mine[k]!r}" for k in differ)
            raise ValueError(f"--resume with a different config than {ckpt_path} ({detail})")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        _set_rng_state(state["rng"], device)
        start_epoch, start_step = int(state["epoch"]), int(state["step_in_epoch"])
        global_step, counted = int(state["global_step"]), int(state["counted"])
        running = state["running"].to(device=device, dtype=torch.float64)
        if "spike_guard" in state:
            spike_guard.state.copy_(state["spike_guard"].to(device))
        history = [json.loads(line) for line in state.get("history", [])]
        log.info("resumed from %s at epoch %d step %d", ckpt_path, start_epoch, start_step)
    elif ckpt_path is not None and ckpt_path.exists():
        raise ValueError(
            f"{out} already holds a run (checkpoint.pt); pass --resume or choose another --out"
        )
    if out is not None and main_process:
        out.mkdir(parents=True, exist_ok=True)
        write_run_info(out, config, seed=config.seed)
        atomic_write_json(out / "model.json", model.config())
        if dag is not None and isinstance(model, CausalVAE):
            atomic_write_json(out / "dag.json", dag.to_dict())
        _write_metrics(out, history)

    def save_checkpoint(epoch: int, step_in_epoch: int) -> None:
        if ckpt_path is None or not main_process:
            return
        atomic_torch_save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "rng": _rng_state(device),
                "epoch": epoch,
                "step_in_epoch": step_in_epoch,
                "global_step": global_step,
                "running": running.detach().cpu(),
                "spike_guard": spike_guard.state.detach().cpu(),
                "counted": counted,
                "history": [json.dumps(h) for h in history],
                "config": json.dumps(_config_dict(config)),
            },
            ckpt_path,
        )

    def guard(epoch: int) -> None:
        if not bool(torch.isfinite(running)):
            where = f"last good checkpoint kept at {ckpt_path}" if ckpt_path else "no checkpoint"
            raise TrainingDiverged(
                f"training diverged: the loss became NaN/inf in epoch {epoch + 1} "
                f"(by step {global_step}); {where}. Try a smaller --lr."
            )

    steps_per_epoch = max(1, math.ceil((n_train // world) / config.batch_size))
    graphed = None
    if config.cuda_graph:
        steps_per_epoch = n_train // config.batch_size
        graphed = GraphedStep(
            objective,
            optimizer,
            train_images,
            train_labels,
            train_logp,
            config.batch_size,
            before_step=spike_guard,
            state=[spike_guard.state],
        )
    bar = None
    if config.progress and main_process:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=steps_per_epoch * config.epochs,
            initial=start_epoch * steps_per_epoch + start_step,
            desc="train",
            unit="step",
        )
    model.train()
    validation = pyro.validation_enabled(config.validate)
    validation.__enter__()
    try:
        for epoch in range(start_epoch, config.epochs):
            tic = time.perf_counter()
            order = torch.randperm(
                n_train, generator=torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
            )
            if world > 1:
                order = order[: (n_train // world) * world][rank::world]
            order = order.to(device)
            first = start_step if epoch == start_epoch else 0
            if first == 0:
                running.zero_()
                counted = 0
            for step in range(first, steps_per_epoch):
                idx = order[step * config.batch_size : (step + 1) * config.batch_size]
                if graphed is not None:
                    loss, neg_elbo = graphed(idx)
                else:
                    try:
                        loss, neg_elbo = wrapped(
                            train_images[idx],
                            {k: v[idx] for k, v in train_labels.items()},
                            None if train_logp is None else train_logp[idx],
                        )
                    except ValueError as exc:  # Pyro's validation of distribution arguments
                        if "invalid values" not in str(exc):
                            raise
                        running.fill_(float("nan"))
                        guard(epoch)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    spike_guard()
                    optimizer.step()
                running += neg_elbo.double() * len(idx)
                counted += len(idx)
                global_step += 1
                for callback in callbacks:
                    callback(
                        {
                            "epoch": epoch,
                            "step": step,
                            "global_step": global_step,
                            "loss": loss,
                            "model": model,
                        }
                    )
                if global_step % config.log_every == 0 or step + 1 == steps_per_epoch:
                    guard(epoch)
                    if bar is not None:
                        bar.set_postfix(
                            epoch=epoch + 1, elbo=f"{-float(running) / max(counted, 1):.1f}"
                        )
                if global_step % config.checkpoint_every == 0 and step + 1 < steps_per_epoch:
                    guard(epoch)
                    save_checkpoint(epoch, step + 1)
                if bar is not None:
                    bar.update(1)
            guard(epoch)
            seconds = time.perf_counter() - tic
            train_elbo = -float(running) / max(counted, 1)
            heldout = evaluate_elbo(
                model, hold_images, hold_labels, config, seed=config.seed + epoch
            )
            record = {
                "epoch": epoch + 1,
                "step": global_step,
                "train_elbo": train_elbo,
                "heldout_elbo": heldout,
                "seconds": seconds,
                "images_per_s": counted * world / max(seconds, 1e-9),
                "device": str(device),
                "world_size": world,
            }
            history.append(record)
            log.info("epoch %d: train ELBO %.2f held-out ELBO %.2f", epoch + 1, train_elbo, heldout)
            if out is not None and main_process:
                _write_metrics(out, history)
                _write_grids(model, out, epoch + 1, hold_images, hold_labels, config)
            save_checkpoint(epoch + 1, 0)
    finally:
        validation.__exit__(None, None, None)
        if bar is not None:
            bar.close()
    model.eval()
    return history


@torch.no_grad()
def evaluate_elbo(
    model: nn.Module,
    images: torch.Tensor,
    labels: Mapping[str, torch.Tensor],
    config: TrainConfig,
    seed: int = 0,
) -> float:
    """Mean ELBO per image on ``images`` (uint8 ``[N, C, H, W]``), under a forked, seeded RNG."""
    if len(images) == 0:
        return float("nan")
    devices = [images.device] if images.device.type == "cuda" else []
    total = torch.zeros((), dtype=torch.float64, device=images.device)
    partial = frozenset(k for k, v in labels.items() if bool((v < 0).any()))
    elbo = TraceEnum_ELBO(max_plate_nesting=1)
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for start in range(0, len(images), 512):
            x = images[start : start + 512].float().div_(255.0)
            lab = {k: v[start : start + 512] for k, v in labels.items()}
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=config.bf16):
                total += elbo.loss(model.model, model.guide, x, lab, partial)
    return -float(total) / len(images)


def _write_metrics(out: Path, history: Sequence[Mapping[str, Any]]) -> None:
    atomic_write_text(out / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in history))


@torch.no_grad()
def _write_grids(model, out: Path, epoch: int, images, labels, config: TrainConfig) -> None:
    """``samples_eNNN.png`` (prior samples) and ``recon_eNNN.png`` (held-out: originals over
    reconstructions), under a forked RNG so training's random stream is untouched."""
    from causalscene.plots import save_image_grid

    was_training = model.training
    model.eval()
    devices = [images.device] if images.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(config.seed)
        if isinstance(model, CausalVAE):
            from causalscene.generate import sample_images

            samples, _ = sample_images(model, n=config.grid_size, seed=config.seed)
        else:
            samples = model.sample(config.grid_size, seed=config.seed)
        save_image_grid(samples, out / f"samples_e{epoch:03d}.png")
        if len(images):
            x = images[:8].float().div(255.0)
            lab = {k: v[:8] for k, v in labels.items()}
            recon = (
                model.reconstruct(x, lab) if isinstance(model, CausalVAE) else model.reconstruct(x)
            )
            save_image_grid(
                torch.cat([x, recon.float()]), out / f"recon_e{epoch:03d}.png", ncol=len(x)
            )
    model.train(was_training)


# ------------------------------------------------------------------------------------ load_run
def load_run(run_dir: str | Path, device: str = "cpu") -> tuple[nn.Module, TrainConfig]:
    """The trained model of a run folder (eval mode) and its :class:`TrainConfig`."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"{run_dir}: not a run folder")
    for name in ("config.json", "model.json", "checkpoint.pt"):
        if not (run_dir / name).is_file():
            raise ValueError(f"{run_dir}: missing {name} (not a finished training run?)")
    try:
        info = json.loads((run_dir / "config.json").read_text())
        model_config = json.loads((run_dir / "model.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{run_dir}: unreadable config.json/model.json ({exc})") from None
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in info["config"].items() if k in known})
    dag = None
    if model_config.get("kind") == "causal":
        dag = CausalDAG.from_dict(
            json.loads((run_dir / "dag.json").read_text()), source=str(run_dir / "dag.json")
        )
    model = build_model(model_config, dag)
    target = resolve_device(device)
    state = _read_checkpoint(run_dir / "checkpoint.pt", "cpu")
    try:
        model.load_state_dict(state["model"])
    except (KeyError, RuntimeError) as exc:
        raise ValueError(
            f"{run_dir / 'checkpoint.pt'}: does not match model.json ({exc})"
        ) from None
    return model.to(target).eval(), config
