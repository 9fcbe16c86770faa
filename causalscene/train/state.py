""":class:`TrainState`: everything one run's loop reads and updates — what the checkpoint saves
and restores, and what per-epoch callbacks receive."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from causalscene.model import Trainable
from causalscene.train.config import TrainConfig
from causalscene.train.data import TrainData
from causalscene.train.steps import TrainingStep


@dataclass
class TrainState:
    """One run: its pieces (model, data, its way of learning) and its position.

    ``running`` (float64 ``[len(step_fn.metrics)]`` on the device) and ``counted`` accumulate the
    epoch's metrics × images without a host sync; ``epoch`` is the current epoch (0-based);
    ``history`` the per-epoch records (metrics.jsonl)."""

    config: TrainConfig
    model: Trainable
    data: TrainData
    device: torch.device
    world: int
    rank: int
    out: Path | None
    step_fn: (
        TrainingStep  #: the model's update on a batch, its optimisers (``model.training_step``)
    )
    steps_per_epoch: int
    running: torch.Tensor
    counted: int = 0
    global_step: int = 0
    epoch: int = 0
    start_epoch: int = 0
    start_step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
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
