"""Per-epoch extras of :func:`~causalscene.train.fit`, as callbacks ``(run, record) -> None``
called in order at each epoch's end with the :class:`TrainState` and the epoch's record (a dict,
one line of ``metrics.jsonl``; a callback may fill in or add fields before it is kept).

:data:`EPOCH_END` is what ``fit`` always runs: the held-out ELBO, keep the record, write
``metrics.jsonl`` and the sample/reconstruction grids, checkpoint. ``fit(epoch_callbacks=...)``
adds more after them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from causalscene.model import TrainableVAE
from causalscene.train.checkpoint import save_checkpoint, write_metrics
from causalscene.train.config import TrainConfig
from causalscene.train.objective import Labels, evaluate_elbo
from causalscene.train.state import TrainState

log = logging.getLogger(__name__)

EpochCallback = Callable[[TrainState, dict[str, Any]], None]


def _due(run: TrainState, every: int) -> bool:
    """Whether this epoch's end is one of every ``every`` epochs' (or the run's last)."""
    return (run.epoch + 1) % every == 0 or run.epoch + 1 == run.config.epochs


def heldout_elbo(run: TrainState, record: dict[str, Any]) -> None:
    """``record["heldout_elbo"]``: mean ELBO of the held-out images (forked RNG, seeded by epoch),
    every ``eval_every`` epochs."""
    data, config = run.data, run.config
    if not _due(run, config.eval_every):
        return
    record["heldout_elbo"] = evaluate_elbo(
        run.model, data.hold_images, data.hold_labels, config, seed=config.seed + run.epoch
    )


def keep_record(run: TrainState, record: dict[str, Any]) -> None:
    """Append the record to the history (``fit``'s result) and log it."""
    run.history.append(record)
    log.info(
        "epoch %d: train ELBO %.2f held-out ELBO %.2f",
        record["epoch"],
        record["train_elbo"],
        record["heldout_elbo"],
    )


def write_metrics_file(run: TrainState, record: dict[str, Any]) -> None:
    """``metrics.jsonl``: the history so far (rank 0, with a run folder)."""
    if run.out is not None and run.writes_files:
        write_metrics(run.out, run.history)


def write_grids(run: TrainState, record: dict[str, Any]) -> None:
    """``samples_eNNN.png`` and ``recon_eNNN.png`` (rank 0, with a run folder), every
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
    heldout_elbo,
    keep_record,
    write_metrics_file,
    write_grids,
    checkpoint_at_epoch_end,
)


@torch.no_grad()
def draw_grids(
    model: TrainableVAE,
    out: Path,
    epoch: int,
    images: torch.Tensor,
    labels: Labels,
    config: TrainConfig,
) -> None:
    """``samples_eNNN.png`` (prior samples) and ``recon_eNNN.png`` (held-out: originals over
    reconstructions), under a forked RNG so training's random stream is untouched."""
    from causalscene.plots import save_image_grid

    was_training = model.training
    model.eval()
    devices = [images.device] if images.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(config.seed)
        samples = model.sample(config.grid_size, seed=config.seed)
        save_image_grid(samples, out / f"samples_e{epoch:03d}.png")
        if len(images):
            x = images[:8].float().div(255.0)
            lab = {k: v[:8] for k, v in labels.items()}
            recon = model.reconstruct(x, lab)
            save_image_grid(
                torch.cat([x, recon.float()]), out / f"recon_e{epoch:03d}.png", ncol=len(x)
            )
    model.train(was_training)
