"""Per-epoch extras of :func:`~causalscene.train.fit`, as callbacks ``(run, record) -> None``
called in order at each epoch's end with the :class:`TrainState` and the epoch's record (a dict,
one line of ``metrics.jsonl``; a callback may fill in or add fields before it is kept).

:data:`EPOCH_END` is what ``fit`` always runs: the held-out fields (a VAE's held-out ELBO),
keep the record, warn of a collapse of the held-out ELBO, write
``metrics.jsonl`` and the epoch's image grids, checkpoint. ``fit(epoch_callbacks=...)``
adds more after them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from causalscene.model import Trainable
from causalscene.train.checkpoint import save_checkpoint, write_metrics
from causalscene.train.config import TrainConfig
from causalscene.train.objective import Labels
from causalscene.train.state import TrainState

log = logging.getLogger(__name__)

EpochCallback = Callable[[TrainState, dict[str, Any]], None]


def _due(run: TrainState, every: int) -> bool:
    """Whether this epoch's end is one of every ``every`` epochs' (or the run's last)."""
    return (run.epoch + 1) % every == 0 or run.epoch + 1 == run.config.epochs


#: how :func:`epoch_summary` names a record's fields, and their format
FIELD_LABELS = {
    "train_elbo": ("train ELBO", ".1f"),
    "heldout_elbo": ("held-out ELBO", ".1f"),
    "loss_d": ("D loss", ".3f"),
    "loss_g": ("G loss", ".3f"),
    "d_real": ("D(x)", ".3f"),
    "d_fake": ("D(G(z))", ".3f"),
}


def heldout(run: TrainState, record: dict[str, Any]) -> None:
    """The training step's held-out fields (a VAE's ``heldout_elbo``: mean ELBO of the held-out
    images, forked RNG seeded by epoch), every ``eval_every`` epochs."""
    if _due(run, run.config.eval_every):
        record.update(run.step_fn.heldout(run.config.seed + run.epoch))


def epoch_summary(record: dict[str, Any]) -> str:
    """One line for an epoch's record: its fields named in :data:`FIELD_LABELS`, in order."""
    return ", ".join(
        f"{label} {record[key]:{spec}}"
        for key, (label, spec) in FIELD_LABELS.items()
        if key in record
    )


def keep_record(run: TrainState, record: dict[str, Any]) -> None:
    """Append the record to the history (``fit``'s result) and log it."""
    run.history.append(record)
    log.info("epoch %d: %s", record["epoch"], epoch_summary(record))


#: a held-out ELBO that falls back by more than this share of what the run had gained (best minus
#: first evaluation) is reported as a collapse
COLLAPSE_SHARE = 0.5


def _measured(record: dict[str, Any]) -> bool:
    value = record.get("heldout_elbo")
    return value is not None and math.isfinite(value)


def warn_collapse(run: TrainState, record: dict[str, Any]) -> None:
    """A warning when the held-out ELBO falls back by more than :data:`COLLAPSE_SHARE` of the
    run's gain so far: once per fall, from the third evaluation on.

    Why: such a collapse is not a NaN, so nothing else stops or flags it, and the run ends with a
    worse model than it had. Measured on the GPU budget at batch 1024 and lr 1.414e-3 (faces, 1
    seed of 4; rpg): the held-out ELBO rose to 22,264 and fell to 2,771 within 10 epochs, where
    lr 1e-3 rose throughout (docs/benchmarks.md)."""
    if not _measured(record):  # epochs between evaluations hold NaN (null in metrics.jsonl)
        return
    before = [
        (r["epoch"], r["heldout_elbo"]) for r in run.history if r is not record and _measured(r)
    ]
    if len(before) < 2:
        return
    value = record["heldout_elbo"]
    best_epoch, best = max(before, key=lambda ev: ev[1])
    floor = best - COLLAPSE_SHARE * (best - before[0][1])
    if best > before[0][1] and value < floor <= before[-1][1]:
        log.warning(
            "epoch %d: held-out ELBO fell to %.1f from its best %.1f (epoch %d): the model may "
            "have collapsed; train again with a smaller --lr",
            record["epoch"],
            value,
            best,
            best_epoch,
        )


def write_metrics_file(run: TrainState, record: dict[str, Any]) -> None:
    """``metrics.jsonl``: the history so far (rank 0, with a run folder)."""
    if run.out is not None and run.writes_files:
        write_metrics(run.out, run.history)


def write_grids(run: TrainState, record: dict[str, Any]) -> None:
    """The model's grids, e.g. ``samples_eNNN.png`` (rank 0, with a run folder), every
    ``eval_every`` epochs."""
    if run.out is not None and run.writes_files and _due(run, run.config.eval_every):
        data = run.data
        draw_grids(
            run.model, run.out, record["epoch"], data.hold_images, data.hold_labels, run.config
        )


def checkpoint_at_epoch_end(run: TrainState, record: dict[str, Any]) -> None:
    """``checkpoint.pt`` at the start of the next epoch, every ``save_every`` epochs."""
    if _due(run, run.config.save_every):
        save_checkpoint(run, run.epoch + 1, 0)


EPOCH_END: tuple[EpochCallback, ...] = (
    heldout,
    keep_record,
    warn_collapse,
    write_metrics_file,
    write_grids,
    checkpoint_at_epoch_end,
)


@torch.no_grad()
def draw_grids(
    model: Trainable,
    out: Path,
    epoch: int,
    images: torch.Tensor,
    labels: Labels,
    config: TrainConfig,
) -> None:
    """The model's :meth:`~causalscene.model.Trainable.epoch_grids` as ``PREFIX_eNNN.png`` (a
    VAE's: ``samples`` from the prior, ``recon``: held-out originals over reconstructions), in
    eval mode, under a forked RNG so training's random stream is untouched."""
    from causalscene.plots import save_image_grid

    was_training = model.training
    model.eval()
    devices = [images.device] if images.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(config.seed)
        x = images[:8].float().div(255.0)
        lab = {k: v[:8] for k, v in labels.items()}
        grids = model.epoch_grids(config.grid_size, config.seed, x, lab)
        for prefix, (grid, ncol) in grids.items():
            save_image_grid(grid, out / f"{prefix}_e{epoch:03d}.png", ncol=ncol)
    model.train(was_training)
