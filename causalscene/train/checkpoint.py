"""The run folder: writing it, checkpoints (save, read, exact resume) and :func:`load_run`.

Run folder (``out``)::

    config.json      the TrainConfig, command line, seed, package version
    model.json       the model's constructor arguments;   dag.json  the DAG (to_dict form)
                     (the files of ``model.run_files()``)
    checkpoint.pt    state_dict + the training step's state (optimisers: ``optimizer`` for a VAE,
                     ``optimizer_d``/``optimizer_g`` for a GAN) + RNG states + position (epoch,
                     step), atomic; loadable with torch.load(weights_only=True)
    metrics.jsonl    one line per epoch: the step's fields (VAE: train and held-out ELBO; GAN:
                     D and G losses, mean D(x) and D(G(z))), seconds, images/s
    samples_eNNN.png (and a VAE's recon_eNNN.png)   per epoch

Exact resume: batches come from a permutation seeded by (seed, epoch), the torch RNG state is in
the checkpoint, checkpoints are written every ``checkpoint_every`` steps and at each epoch end,
and evaluation runs under a forked RNG; so a run killed at any point and resumed from its last
checkpoint takes the same steps as an uninterrupted one (bit-identical on CPU).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from causalscene.dag import CausalDAG
from causalscene.model import CausalVAE, PlainVAE, Trainable
from causalscene.runfolder import (
    check_config_json,
    check_dag_json,
    check_model_json,
    check_model_payload,
    check_resume_payload,
    read_json,
    saved_config,
)
from causalscene.safeio import first_nonfinite, load_torch
from causalscene.tensors import resolve_device
from causalscene.train.config import FIELDS_BEFORE_THEY_EXISTED, RESUME_MAY_CHANGE, TrainConfig
from causalscene.train.guards import TrainingDiverged, kept_checkpoint
from causalscene.train.state import TrainState
from causalscene.utils import (
    atomic_torch_save,
    atomic_write_json,
    atomic_write_text,
    dumps,
    write_run_info,
)

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------- run folder
def write_run_folder(run: TrainState) -> None:
    """``config.json``, the model's files (``model.json``, ``dag.json``) and ``metrics.jsonl``
    (the history so far: empty, or a resumed run's)."""
    assert run.out is not None
    run.out.mkdir(parents=True, exist_ok=True)
    write_run_info(run.out, run.config, seed=run.config.seed)
    for name, content in run.model.run_files().items():
        atomic_write_json(run.out / name, content)
    write_metrics(run.out, run.history)


def write_metrics(out: Path, history: Sequence[Mapping[str, Any]]) -> None:
    atomic_write_text(out / "metrics.jsonl", "".join(dumps(h) + "\n" for h in history))


# ---------------------------------------------------------------------------------- checkpoints
def save_checkpoint(run: TrainState, epoch: int, step_in_epoch: int) -> None:
    """``checkpoint.pt`` at position (``epoch``, ``step_in_epoch``), atomically; rank 0 only."""
    path = run.checkpoint_path
    refuse_nonfinite_state(run)  # only finite state is ever written: the last good one stays
    if path is None or not run.main_process:
        return
    atomic_torch_save(
        {
            "model": run.model.state_dict(),
            **run.step_fn.state_dict(),
            "rng": rng_state(run.device),
            "epoch": epoch,
            "step_in_epoch": step_in_epoch,
            "global_step": run.global_step,
            "running": run.running.detach().cpu(),
            "counted": run.counted,
            "history": [json.dumps(h) for h in run.history],
            "config": json.dumps(run.config.to_dict()),
        },
        path,
    )


def resume_from_checkpoint(run: TrainState) -> None:
    """Continue ``run`` from its checkpoint: same config (but :data:`RESUME_MAY_CHANGE`), then
    parameters, the training step's state (optimisers, spike guard), RNG states, position,
    accumulators and history."""
    path = run.checkpoint_path
    if path is None or not path.is_file():
        raise ValueError(f"--resume: no checkpoint at {path}")
    state = read_checkpoint(path, run.device)
    check_resume_config(saved_config(state, path), run.config, path)
    optimizers, n_metrics = run.step_fn.optimizers, len(run.step_fn.metrics)
    check_resume_payload(state, run.model, optimizers, path, n_metrics)
    run.model.load_state_dict(state["model"])
    run.step_fn.load_state_dict(state)
    set_rng_state(state["rng"], run.device)
    run.start_epoch, run.start_step = int(state["epoch"]), int(state["step_in_epoch"])
    run.global_step, run.counted = int(state["global_step"]), int(state["counted"])
    # (a VAE checkpoint from before the step's metrics were a vector holds a scalar)
    running = state["running"].to(device=run.device, dtype=torch.float64)
    run.running = running.reshape(run.running.shape)
    run.history = [json.loads(line) for line in state.get("history", [])]
    log.info("resumed from %s at epoch %d step %d", path, run.start_epoch, run.start_step)


def refuse_to_overwrite(run: TrainState) -> None:
    """A fresh run must not write over another run's checkpoint."""
    path = run.checkpoint_path
    if path is not None and path.exists():
        raise ValueError(
            f"{run.out} already holds a run (checkpoint.pt); pass --resume or choose another --out"
        )


def check_resume_config(saved: dict[str, Any], config: TrainConfig, path: Path) -> None:
    """Refuse to resume the run recorded with config ``saved`` under a different ``config``
    (fields of :data:`RESUME_MAY_CHANGE` may differ)."""
    mine = config.to_dict()
    # fields added since the checkpoint was written: the value they had before they existed
    defaults = {**TrainConfig().to_dict(), **FIELDS_BEFORE_THEY_EXISTED}
    saved = {**{k: v for k, v in defaults.items() if k not in saved}, **saved}
    for key in ("data", "dag"):  # runs that recorded a path relative to where train ran
        old, new = saved.get(key), mine[key]
        if old and new and old != new and Path(old).resolve() == Path(new).resolve():
            saved[key] = new
    differ = [k for k in mine if k not in RESUME_MAY_CHANGE and saved.get(k) != mine[k]]
    if mine["consistency_weight"] == saved.get("consistency_weight") == 0:
        differ = [k for k in differ if k != "consistency_fraction"]  # no term: no share
    if differ:
        detail = ", ".join(f"{k}: {saved.get(k)!r} → {mine[k]!r}" for k in differ)
        raise ValueError(f"--resume with a different config than {path} ({detail})")


def read_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """A checkpoint's dict, read with ``weights_only=True`` (nothing in it can run code) after
    its SHA-256 sidecar is verified (:func:`causalscene.safeio.load_torch`)."""
    return load_torch(path, "checkpoint", device)


def refuse_nonfinite_state(run: TrainState) -> None:
    """:class:`TrainingDiverged` when a parameter or optimizer tensor is NaN/inf (one host read)."""
    named = [*run.model.state_dict().items()]
    for key, optimizer in run.step_fn.optimizers.items():
        named += _optimizer_items(key, optimizer)
    bad = first_nonfinite(named)
    if bad is not None:
        raise TrainingDiverged(
            f"training diverged: '{bad}' became NaN/inf by step {run.global_step}; "
            f"{kept_checkpoint(run.checkpoint_path)}. Try a smaller --lr."
        )


def _optimizer_items(key: str, optimizer: torch.optim.Optimizer) -> list[tuple[str, torch.Tensor]]:
    state = optimizer.state_dict()["state"]
    return [(f"{key}.{k}.{n}", v) for k, s in state.items() for n, v in s.items()]


def rng_state(device: torch.device) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


# ------------------------------------------------------------------------------------ load_run
def build_model(model_config: Mapping[str, Any], dag: CausalDAG | None) -> Trainable:
    """A model from its ``config()`` dict (``model.json``): its ``kind`` names the class."""
    cfg = dict(model_config)
    kind = cfg.pop("kind", None)
    if kind == "causal":
        if dag is None:
            raise ValueError("a CausalVAE needs a DAG")
        return CausalVAE(dag, **cfg)
    if kind == "plain":
        return PlainVAE(**cfg)
    if kind == "dcgan":
        from causalscene.gan import DCGAN

        return DCGAN(**cfg)
    raise ValueError(f"unknown model kind '{kind}'")


def load_run(run_dir: str | Path, device: str = "cpu") -> tuple[Trainable, TrainConfig]:
    """The trained model of a run folder (eval mode) and its :class:`TrainConfig`."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"{run_dir}: not a run folder")
    for name in ("config.json", "model.json", "checkpoint.pt"):
        if not (run_dir / name).is_file():
            raise ValueError(f"{run_dir}: missing {name} (not a finished training run?)")
    config = check_config_json(run_dir / "config.json", read_json(run_dir / "config.json"))
    model_config = check_model_json(run_dir / "model.json", read_json(run_dir / "model.json"))
    dag = None
    if model_config.get("kind") == "causal":
        dag = check_dag_json(run_dir / "dag.json", read_json(run_dir / "dag.json"))
    model = build_model(model_config, dag)
    target = resolve_device(device)
    state = read_checkpoint(run_dir / "checkpoint.pt", "cpu")
    check_model_payload(state, model, run_dir / "checkpoint.pt")  # names, shapes, finite
    model.load_state_dict(state["model"])
    return model.to(target).eval(), config
