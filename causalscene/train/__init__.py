"""Training a :class:`~causalscene.model.CausalVAE` or :class:`~causalscene.model.PlainVAE` by SVI,
or a :class:`~causalscene.gan.DCGAN` as a two-player game.

``from causalscene.train import fit, TrainConfig, load_run``. The pieces, one module each:

* :mod:`.config` — :class:`TrainConfig` and its validation (no torch: the CLI's parser reads it);
* :mod:`.data` — the dataset, checked and split, on the device;
* :mod:`.steps` — :class:`TrainingStep`, how a model learns as ``fit`` sees it, and the VAEs'
  :class:`SVIStep`; :mod:`.adversarial` — the GAN's ``AdversarialStep``;
* :mod:`.objective` — the VAEs' loss (TraceEnum ELBO + auxiliary terms), the held-out ELBO;
* :mod:`.guards` — gradient-spike clipping and the NaN/inf guard;
* :mod:`.graph` — the step captured as a CUDA graph;
* :mod:`.distributed` — torchrun / DistributedDataParallel;
* :mod:`.checkpoint` — the run folder, checkpoints and exact resume, :func:`load_run`;
* :mod:`.callbacks` — per-epoch extras (held-out fields, metrics.jsonl, grids, checkpoint);
* :mod:`.loop` — :func:`fit`;
* :mod:`.run` — :func:`train_run`: a new model trained from a :class:`TrainConfig` alone.

Everything but :mod:`.config` is imported on first use, so importing this package (or the CLI)
does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from causalscene.train.config import FIELDS_BEFORE_THEY_EXISTED, RESUME_MAY_CHANGE, TrainConfig

if TYPE_CHECKING:
    from causalscene.tensors import resolve_device
    from causalscene.train.callbacks import EPOCH_END, EpochCallback
    from causalscene.train.checkpoint import build_model, load_run
    from causalscene.train.data import load_dataset
    from causalscene.train.graph import GraphedStep, to_channels_last
    from causalscene.train.guards import GradientSpikeGuard, TrainingDiverged
    from causalscene.train.loop import fit
    from causalscene.train.objective import (
        _Objective as _Objective,
    )
    from causalscene.train.objective import (
        _pyro_without_host_syncs as _pyro_without_host_syncs,
    )
    from causalscene.train.objective import (
        consistency_rows,
        consistency_term,
        elbo_loss,
        evaluate_elbo,
    )
    from causalscene.train.run import new_model, train_run
    from causalscene.train.state import TrainState
    from causalscene.train.steps import SVIStep, TrainingStep

__all__ = [
    "TrainConfig",
    "TrainingDiverged",
    "fit",
    "train_run",
    "new_model",
    "load_run",
    "build_model",
    "load_dataset",
    "resolve_device",
    "elbo_loss",
    "consistency_term",
    "consistency_rows",
    "evaluate_elbo",
    "GraphedStep",
    "GradientSpikeGuard",
    "to_channels_last",
    "TrainState",
    "TrainingStep",
    "SVIStep",
    "EpochCallback",
    "EPOCH_END",
    "RESUME_MAY_CHANGE",
    "FIELDS_BEFORE_THEY_EXISTED",
]

#: where each lazily imported name lives
_LAZY = {
    "resolve_device": "causalscene.tensors",
    "EPOCH_END": "causalscene.train.callbacks",
    "EpochCallback": "causalscene.train.callbacks",
    "build_model": "causalscene.train.checkpoint",
    "load_run": "causalscene.train.checkpoint",
    "load_dataset": "causalscene.train.data",
    "GraphedStep": "causalscene.train.graph",
    "to_channels_last": "causalscene.train.graph",
    "GradientSpikeGuard": "causalscene.train.guards",
    "TrainingDiverged": "causalscene.train.guards",
    "fit": "causalscene.train.loop",
    "train_run": "causalscene.train.run",
    "new_model": "causalscene.train.run",
    "_Objective": "causalscene.train.objective",
    "_pyro_without_host_syncs": "causalscene.train.objective",
    "consistency_rows": "causalscene.train.objective",
    "consistency_term": "causalscene.train.objective",
    "elbo_loss": "causalscene.train.objective",
    "evaluate_elbo": "causalscene.train.objective",
    "TrainState": "causalscene.train.state",
    "TrainingStep": "causalscene.train.steps",
    "SVIStep": "causalscene.train.steps",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
