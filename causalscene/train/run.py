"""One training run from a :class:`TrainConfig` alone: what ``causalscene train`` and the demo do.

``train_run(config)`` loads the DAG (``config.dag``) and the dataset (``config.data``), builds a
new :class:`~causalscene.model.CausalVAE` (or with ``no_dag`` a
:class:`~causalscene.model.PlainVAE`; with ``model="dcgan"`` a :class:`~causalscene.gan.DCGAN`,
no DAG, labels ignored), fits it into ``config.out`` and, when CPTs were learned,
writes ``cpts.json`` beside the run. The run's ``config.json`` records the dataset and a DAG file
as absolute paths (a shipped DAG by its name), so verbs that read them work from any directory.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from causalscene.dag import CausalDAG, is_shipped_name
from causalscene.model import CausalVAE, PlainVAE, Trainable
from causalscene.train.config import TrainConfig
from causalscene.train.data import load_dataset
from causalscene.train.distributed import leave_process_group
from causalscene.train.loop import fit
from causalscene.utils import atomic_write_json, set_seed

__all__ = ["new_model", "train_run", "write_learned_cpts", "portable_paths"]


def new_model(config: TrainConfig, dag: CausalDAG | None, image_size: int) -> Trainable:
    """A fresh model for ``config``: a CausalVAE over ``dag``, a PlainVAE with ``no_dag``, a DCGAN
    with ``model="dcgan"``."""
    if config.model == "dcgan":
        from causalscene.gan import DCGAN

        return DCGAN(image_size, config.latent_dim, config.base_channels)
    if dag is None or config.no_dag:
        return PlainVAE(image_size, config.latent_dim, config.likelihood, config.base_channels)
    return CausalVAE(
        dag,
        image_size,
        config.latent_dim,
        config.likelihood,
        learn_cpts=config.learn_cpts,
        base_channels=config.base_channels,
        seed=config.seed,
    )


def train_run(config: TrainConfig, resume: bool = False) -> tuple[Trainable, list[dict[str, Any]]]:
    """Train a new model as ``config`` says (or resume ``config.out``); ``(model, history)``.

    Raises ``ValueError`` for a config without a DAG that is not ``no_dag``, or that asks to
    learn CPTs without one; :class:`~causalscene.train.TrainingDiverged` when the loss blows up.
    """
    config.check()
    if config.dag is None and not config.no_dag and config.model == "vae":
        raise ValueError("--dag FILE is required (or --no-dag for a plain VAE, --model dcgan)")
    if config.learn_cpts and config.no_dag:
        raise ValueError("--learn-cpts needs a DAG (drop --no-dag)")
    if config.data is None:
        raise ValueError("--data DIR is required")
    config = portable_paths(config)
    dag = CausalDAG.load(config.dag) if config.dag else None
    data = load_dataset(config.data, dag, config.max_images)
    set_seed(config.seed)
    model = new_model(config, dag, image_size=data[0].shape[1])
    try:
        history = fit(model, data, config, out=config.out, resume=resume)
    finally:  # under torchrun: every collective is done (fit ends with the ranks' check)
        leave_process_group()
    if isinstance(model, CausalVAE) and model.learn_cpts and config.out:
        write_learned_cpts(model, Path(config.out))
    return model, history


def portable_paths(config: TrainConfig) -> TrainConfig:
    """A copy of ``config`` whose ``data`` and ``dag`` work from any directory: absolute, resolved
    paths (a shipped DAG's name, e.g. ``faces``, stays a name)."""
    dag = config.dag
    if dag and not (is_shipped_name(dag) and not Path(dag).is_file()):
        dag = str(Path(dag).resolve())
    data = str(Path(config.data).resolve()) if config.data else config.data
    return dataclasses.replace(config, dag=dag, data=data)


def write_learned_cpts(model: CausalVAE, out: Path) -> dict[str, dict[str, Any]]:
    """``cpts.json``: each node's learned CPT beside the DAG file's, and their largest gap."""
    dag, learned = model.dag, model.learned_cpts()
    table = {
        n: {
            "learned": learned[n],
            "true": np.asarray(dag.cpt(n)),
            "max_abs_error": float(np.abs(learned[n] - dag.cpt(n)).max()),
        }
        for n in dag.nodes
    }
    atomic_write_json(out / "cpts.json", table)
    return table
