"""The one plain-VAE trainer of the reproductions: a procgen dataset and a PlainVAE fit on it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from causalscene.reproductions._base import Context
from causalscene.train.config import TrainConfig


@dataclass
class TrainedVAE:
    model: nn.Module  #: the PlainVAE, eval mode, on the context's device
    images: np.ndarray  #: uint8 [N, H, W, C], the whole dataset
    labels: dict[str, np.ndarray]  #: {node: codes [N]}
    history: list[dict[str, Any]]  #: fit's per-epoch metrics (empty when a finished run was reused)
    data: Path  #: the dataset folder


def plain_vae(
    context: Context,
    scene: str,
    *,
    n_images: int,
    image_size: int,
    epochs: int,
    latent_dim: int,
    base_channels: int = 16,
    batch_size: int = 32,
    folder: Path | None = None,
) -> TrainedVAE:
    """Generate ``n_images`` procgen ``scene`` images and train a :class:`PlainVAE` on them.

    Everything lives under ``folder`` (default: the reproduction's own folder): ``data/`` and
    ``run/``. A folder that already holds a finished run of the same settings is reused, so
    reproductions that share a model (``modules-faces`` and ``sdr``) train it once.
    """
    from causalscene.datasets import load_arrays
    from causalscene.model import PlainVAE
    from causalscene.procgen import make_dataset
    from causalscene.train import TrainConfig, fit, load_run
    from causalscene.utils import set_seed

    folder = Path(folder) if folder is not None else context.out
    data, run = folder / "data", folder / "run"
    config = TrainConfig(
        data=str(data),
        out=str(run),
        epochs=epochs,
        batch_size=batch_size,
        latent_dim=latent_dim,
        base_channels=base_channels,
        no_dag=True,
        seed=context.seed,
        progress=False,
        device=context.device,
        aux_weight=0.0,
    )
    if not (data / "meta.json").is_file():
        make_dataset(scene, n_images, image_size, seed=context.seed, out=data, overwrite=True)
    images, labels = load_arrays(data)
    if _finished(run, config):
        model, _ = load_run(run, device=context.device)
        return TrainedVAE(model, images, labels, [], data)
    set_seed(context.seed)
    model = PlainVAE(image_size, latent_dim=latent_dim, base_channels=base_channels)
    history = fit(model, (images, labels), config, out=run)
    return TrainedVAE(model.eval(), images, labels, history, data)


def _finished(run: Path, config: TrainConfig) -> bool:
    """``run`` holds a finished run whose settings equal ``config``'s (device aside)."""
    import json

    try:
        saved = json.loads((run / "config.json").read_text())["config"]
        epochs_done = len((run / "metrics.jsonl").read_text().splitlines())
    except (OSError, ValueError, KeyError):
        return False
    mine = config.to_dict()
    same = all(saved.get(k) == v for k, v in mine.items() if k not in ("device", "progress"))
    return same and epochs_done >= config.epochs and (run / "checkpoint.pt").is_file()
