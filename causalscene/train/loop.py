"""Training a :class:`~causalscene.model.Trainable` on an image dataset — :func:`fit`: SVI of a
:class:`~causalscene.model.CausalVAE` or :class:`~causalscene.model.PlainVAE`, the two-player game
of a :class:`~causalscene.gan.DCGAN`.

The trainer knows the model only through :class:`~causalscene.model.Trainable` (it never asks
which class it has); how a model learns — optimisers, the update on a batch, the numbers an epoch
reports — is its :class:`~causalscene.train.steps.TrainingStep` (:mod:`.steps`); the run folder
and exact resume are in :mod:`.checkpoint`, per-epoch extras are callbacks (:mod:`.callbacks`).

Speed: the dataset lives on the device as uint8 ``[N, C, H, W]``; a step makes no host sync (its
metrics are accumulated on the device and read every ``log_every`` steps, which is also when the
NaN/inf guard looks); optional bf16 autocast and channels_last (``bf16``, ``channels_last``).
``cuda_graph`` (VAEs): the whole step is captured once as a CUDA graph and replayed (:mod:`.graph`).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyro
import torch

from causalscene.model import Trainable
from causalscene.tensors import resolve_device
from causalscene.train.callbacks import EPOCH_END, EpochCallback
from causalscene.train.checkpoint import (
    refuse_to_overwrite,
    resume_from_checkpoint,
    save_checkpoint,
    write_run_folder,
)
from causalscene.train.config import TrainConfig
from causalscene.train.data import TrainData, prepare_data
from causalscene.train.distributed import check_ranks_agree, epoch_order, join_process_group
from causalscene.train.graph import compile_networks, to_channels_last
from causalscene.train.guards import NonFiniteLoss, check_finite
from causalscene.train.state import TrainState

StepCallback = Callable[[dict[str, Any]], None]


def fit(
    model: Trainable,
    dataset: Any,
    config: TrainConfig,
    out: str | Path | None = None,
    resume: bool = False,
    callbacks: Sequence[StepCallback] = (),
    epoch_callbacks: Sequence[EpochCallback] = (),
) -> list[dict[str, Any]]:
    """Train ``model`` on ``dataset``; return the per-epoch metrics (also in metrics.jsonl).

    Args:
        model: a :class:`CausalVAE`, :class:`PlainVAE` or :class:`DCGAN` (any :class:`Trainable`).
        dataset: a dataset folder, a ``ShardDataset``, or ``(images uint8 [N,H,W,C], {node: codes})``;
            its labels are checked against ``model.label_dag``.
        config: the :class:`TrainConfig`.
        out: run folder (default ``config.out``); None → no files at all.
        resume: continue from ``out/checkpoint.pt`` (the config must match, except
            :data:`RESUME_MAY_CHANGE`).
        callbacks: called after every step with ``{"epoch", "step", "global_step", "metrics"
            (the step's means of ``step_fn.metrics``, a device tensor), "model"}``.
        epoch_callbacks: called at each epoch's end with ``(TrainState, record)``, after
            :data:`~causalscene.train.callbacks.EPOCH_END` (held-out ELBO, metrics, grids,
            checkpoint).
    """
    config.check()
    out = Path(out) if out is not None else (Path(config.out) if config.out else None)
    device, world, rank = join_process_group(resolve_device(config.device))
    data = prepare_data(model, dataset, config, device)
    torch.manual_seed(config.seed)
    run = _start_run(model, data, config, device, world, rank, out)
    if resume:
        resume_from_checkpoint(run)
    else:
        refuse_to_overwrite(run)
    if run.writes_files:
        write_run_folder(run)
    at_epoch_end = [*EPOCH_END, *epoch_callbacks]
    with _progress_bar(run), _training(model, config.validate):
        for epoch in range(run.start_epoch, config.epochs):
            run.epoch = epoch
            tic = time.perf_counter()
            _train_epoch(run, callbacks)
            check_finite(run.running, epoch, run.global_step, run.checkpoint_path)
            record = _epoch_record(run, time.perf_counter() - tic)
            for callback in at_epoch_end:
                callback(run, record)
    if world > 1:  # DDP or the captured steps' all-reduce kept every rank on rank 0's weights
        check_ranks_agree(model)
    return run.history


def _start_run(
    model: Trainable,
    data: TrainData,
    config: TrainConfig,
    device: torch.device,
    world: int,
    rank: int,
    out: Path | None,
) -> TrainState:
    """The model on the device and its training step (its optimisers, DDP under torchrun)."""
    model.to(device)
    if config.channels_last:
        to_channels_last(model)
    if config.compile:
        compile_networks(model)
    step_fn = model.training_step(config, data, device, world)
    if config.cuda_graph:  # static shapes: the last incomplete batch is dropped
        steps_per_epoch = (data.n_train // world) // config.batch_size
    else:
        steps_per_epoch = max(1, math.ceil((data.n_train // world) / config.batch_size))
    return TrainState(
        config=config,
        model=model,
        data=data,
        device=device,
        world=world,
        rank=rank,
        out=out,
        step_fn=step_fn,
        steps_per_epoch=steps_per_epoch,
        running=torch.zeros(len(step_fn.metrics), device=device, dtype=torch.float64),
    )


@contextlib.contextmanager
def _progress_bar(run: TrainState) -> Iterator[None]:
    """``run.bar``: a tqdm bar over all steps (rank 0, with ``progress``), closed at the end."""
    if run.config.progress and run.main_process:
        from tqdm.auto import tqdm

        run.bar = tqdm(
            total=run.steps_per_epoch * run.config.epochs,
            initial=run.start_epoch * run.steps_per_epoch + run.start_step,
            desc="train",
            unit="step",
        )
    try:
        yield
    finally:
        if run.bar is not None:
            run.bar.close()


@contextlib.contextmanager
def _training(model: Trainable, validate: bool) -> Iterator[None]:
    """Train mode and Pyro's argument validation as asked; eval mode after a finished run."""
    model.train()
    with pyro.validation_enabled(validate):
        yield
    model.eval()


def _train_epoch(run: TrainState, callbacks: Sequence[StepCallback]) -> None:
    """The steps of epoch ``run.epoch`` (from ``run.start_step`` in a resumed run's first)."""
    config, data, epoch = run.config, run.data, run.epoch
    order = epoch_order(data.n_train, config.seed, epoch, run.world, run.rank).to(run.device)
    first = run.start_step if epoch == run.start_epoch else 0
    if first == 0:
        run.running.zero_()
        run.counted = 0
    for step in range(first, run.steps_per_epoch):
        idx = order[step * config.batch_size : (step + 1) * config.batch_size]
        metrics = _take_step(run, idx)
        run.running += metrics.double() * len(idx)
        run.counted += len(idx)
        run.global_step += 1
        info = {"epoch": epoch, "step": step, "global_step": run.global_step, "model": run.model}
        for callback in callbacks:
            callback({**info, "metrics": metrics})
        if run.global_step % config.log_every == 0 or step + 1 == run.steps_per_epoch:
            check_finite(run.running, epoch, run.global_step, run.checkpoint_path)
            _show_progress(run)
        if run.global_step % config.checkpoint_every == 0 and step + 1 < run.steps_per_epoch:
            check_finite(run.running, epoch, run.global_step, run.checkpoint_path)
            save_checkpoint(run, epoch, step + 1)
        if run.bar is not None:
            run.bar.update(1)


def _take_step(run: TrainState, idx: torch.Tensor) -> torch.Tensor:
    """``run.step_fn(idx)``; a loss that cannot be formed (non-finite values) is divergence."""
    try:
        return run.step_fn(idx)
    except NonFiniteLoss:
        run.running.fill_(float("nan"))
        check_finite(run.running, run.epoch, run.global_step, run.checkpoint_path)
        raise  # not reached: the guard raises on NaN


def _epoch_means(run: TrainState) -> list[float]:
    """The epoch's means so far of the step's metrics (one host read)."""
    return (run.running / max(run.counted, 1)).tolist()


def _show_progress(run: TrainState) -> None:
    """The epoch's fields so far on the progress bar (rank 0, with ``progress``)."""
    if run.bar is not None:
        fields = run.step_fn.epoch_fields(_epoch_means(run))
        shown = {k: f"{v:.4g}" for k, v in fields.items() if math.isfinite(v)}
        run.bar.set_postfix(epoch=run.epoch + 1, **shown)


def _epoch_record(run: TrainState, seconds: float) -> dict[str, Any]:
    """The epoch's line of metrics.jsonl; held-out fields are filled in by a callback."""
    return {
        "epoch": run.epoch + 1,
        "step": run.global_step,
        **run.step_fn.epoch_fields(_epoch_means(run)),
        "seconds": seconds,
        "images_per_s": run.counted * run.world / max(seconds, 1e-9),
        "device": str(run.device),
        "world_size": run.world,
    }
