"""Guards that keep a run sane without a host sync per step: gradient-spike clipping on the
device, and the NaN/inf check of the accumulated loss (every ``log_every`` steps)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint was kept."""


class NonFiniteLoss(ValueError):
    """Raised by a step whose loss cannot be formed from non-finite values (Pyro's argument
    validation); ``fit`` turns it into :class:`TrainingDiverged`."""


def check_finite(
    running: torch.Tensor, epoch: int, global_step: int, checkpoint: Path | None
) -> None:
    """Raise :class:`TrainingDiverged` when any accumulated metric in ``running`` is NaN/inf (one
    host read)."""
    if not bool(torch.isfinite(running).all()):
        raise TrainingDiverged(
            f"training diverged: the loss became NaN/inf in epoch {epoch + 1} "
            f"(by step {global_step}); {kept_checkpoint(checkpoint)}. Try a smaller --lr."
        )


def kept_checkpoint(checkpoint: Path | None) -> str:
    """What a divergence leaves: the last good checkpoint, named only when one exists."""
    if checkpoint is not None and checkpoint.is_file():
        return f"last good checkpoint kept at {checkpoint}"
    return "no checkpoint was written"


class GradientSpikeGuard:
    """Clip gradient spikes relative to the recent past, on the device (no host sync, so it can
    live inside a CUDA graph).

    With n = ‖∇‖ (all parameters) and m the running mean of past clipped norms (decay 0.99; the
    first step sets it), gradients are multiplied by min(1, factor · m / n). ``state`` (m) goes
    into checkpoints so that a resumed run clips exactly as an uninterrupted one.
    """

    def __init__(
        self,
        params: Iterable[nn.Parameter],
        factor: float,
        device: torch.device | str,
        decay: float = 0.99,
    ):
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
