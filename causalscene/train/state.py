""":class:`TrainState`: everything one run's loop reads and updates — what the checkpoint saves
and restores, and what per-epoch callbacks receive."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from causalscene.model import TrainableVAE
from causalscene.train.config import TrainConfig
from causalscene.train.data import TrainData
from causalscene.train.graph import GraphedStep
from causalscene.train.guards import GradientSpikeGuard


@dataclass
class TrainState:
    """One run: its pieces (model, data, loss, optimizer) and its position.

    ``running`` (float64 on the device) and ``counted`` accumulate the epoch's -ELBO × images
    without a host sync; ``epoch`` is the current epoch (0-based); ``history`` the per-epoch
    records (metrics.jsonl)."""

    config: TrainConfig
    model: TrainableVAE
    data: TrainData
    device: torch.device
    world: int
    rank: int
    out: Path | None
    objective: nn.Module  #: the loss (``_Objective``)
    step_fn: nn.Module  #: the loss as called in a step: ``objective``, DDP-wrapped under torchrun
    optimizer: torch.optim.Optimizer
    spike_guard: GradientSpikeGuard
    steps_per_epoch: int
    running: torch.Tensor
    counted: int = 0
    global_step: int = 0
    epoch: int = 0
    start_epoch: int = 0
    start_step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    graphed: GraphedStep | None = None
    bar: Any = None  #: the tqdm progress bar, or None

    @property
    def main_process(self) -> bool:
        return self.rank == 0

    @property
    def writes_files(self) -> bool:
        """Whether this process writes the run folder (rank 0, with a folder)."""
        return self.out is not None and self.main_process

    @property
    def checkpoint_path(self) -> Path | None:
        return self.out / "checkpoint.pt" if self.out is not None else None
