"""The training objective: Pyro's ``TraceEnum_ELBO`` per image (hidden DAG nodes summed out by
parallel enumeration), plus the classifier's auxiliary cross-entropy, the decoder's
label-consistency term and the SDR penalty; and the held-out ELBO.

One step's loss is ``TraceEnum_ELBO().differentiable_loss(model.model, model.guide, x, labels) / B``
(+ ``aux_weight * aux_loss`` + ``consistency_weight * H * W * consistency_loss`` + ``sdr_weight *
sdr_penalty(decoder)``), minimised with a plain ``torch.optim.Adam``, so the whole step is one
torch graph — the same estimator as ``pyro.infer.SVI`` without its per-parameter param-store
traffic.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping

import torch
from pyro.infer import TraceEnum_ELBO
from torch import nn

from causalscene.model import TrainableVAE
from causalscene.train.config import TrainConfig

Labels = Mapping[str, torch.Tensor]


@contextlib.contextmanager
def _pyro_without_host_syncs() -> Iterator[None]:
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

    Dice.compute_expectation = compute_expectation  # type: ignore[method-assign]
    traceenum_elbo.warn_if_nan = lambda value, *args, **kwargs: value
    try:
        yield
    finally:
        Dice.compute_expectation = original  # type: ignore[method-assign]
        traceenum_elbo.warn_if_nan = original_warn


def elbo_loss(
    model: TrainableVAE,
    x: torch.Tensor,
    labels: Labels,
    partial: frozenset[str] | tuple[str, ...] = (),
    elbo: TraceEnum_ELBO | None = None,
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
    model: TrainableVAE,
    x: torch.Tensor,
    labels: Labels,
    partial: frozenset[str] | tuple[str, ...],
    weight_per_pixel: float,
    fraction: float = 1.0,
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
    """The training loss as a module (so DistributedDataParallel can wrap it): ``forward(images
    uint8 [B, C, H, W], labels, log_p_labels [B] | None) -> (loss, -ELBO detached)``."""

    def __init__(self, model: TrainableVAE, config: TrainConfig, partial: frozenset[str]):
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

    def forward(
        self,
        images: torch.Tensor,
        labels: Labels,
        log_p_labels: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
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


@torch.no_grad()
def evaluate_elbo(
    model: TrainableVAE,
    images: torch.Tensor,
    labels: Labels,
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
