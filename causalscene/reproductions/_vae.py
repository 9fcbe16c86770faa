"""The trainers of the reproductions: a procgen dataset and a PlainVAE (:func:`plain_vae`) or a
DCGAN (:func:`procgen_dcgan`) fit on it, reused when a finished run of the same settings is there."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import nn

from causalscene.reproductions._base import Context
from causalscene.train.config import TrainConfig

if TYPE_CHECKING:
    from causalscene.model import Trainable


@dataclass
class TrainedVAE:
    """A trained model (despite the name, also a DCGAN: :func:`procgen_dcgan`) and its data."""

    model: nn.Module  #: the PlainVAE (or DCGAN), eval mode, on the context's device
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
    from causalscene.model import PlainVAE

    folder = Path(folder) if folder is not None else context.out
    fields = _run_fields(context, folder, epochs, batch_size, latent_dim, base_channels)
    config = TrainConfig(**fields, no_dag=True, aux_weight=0.0)
    return _train_on_procgen(
        context,
        scene,
        config,
        n_images,
        image_size,
        lambda: PlainVAE(image_size, latent_dim=latent_dim, base_channels=base_channels),
    )


def procgen_dcgan(
    context: Context,
    scene: str,
    *,
    n_images: int,
    image_size: int,
    epochs: int,
    base_channels: int,
    latent_dim: int = 100,
    batch_size: int = 64,
    folder: Path,
) -> TrainedVAE:
    """Generate ``n_images`` procgen ``scene`` images in ``folder / "data"`` and train a
    :class:`~causalscene.gan.DCGAN` on them (Radford et al.'s Adam settings) in ``folder / "run"``;
    a finished run of the same settings there is reused."""
    from causalscene.gan import DCGAN

    fields = _run_fields(context, folder, epochs, batch_size, latent_dim, base_channels)
    config = TrainConfig.for_model("dcgan", **fields)
    return _train_on_procgen(
        context,
        scene,
        config,
        n_images,
        image_size,
        lambda: DCGAN(image_size, latent_dim, base_channels),
    )


def _run_fields(
    context: Context,
    folder: Path,
    epochs: int,
    batch_size: int,
    latent_dim: int,
    base_channels: int,
) -> dict[str, Any]:
    """The TrainConfig fields every reproduction's run shares: ``folder/data``, ``folder/run``,
    the sizes, the context's seed and device, no progress bar."""
    return {
        "data": str(folder / "data"),
        "out": str(folder / "run"),
        "epochs": epochs,
        "batch_size": batch_size,
        "latent_dim": latent_dim,
        "base_channels": base_channels,
        "seed": context.seed,
        "progress": False,
        "device": context.device,
    }


def _train_on_procgen(
    context: Context,
    scene: str,
    config: TrainConfig,
    n_images: int,
    image_size: int,
    new_model: Callable[[], Trainable],
) -> TrainedVAE:
    """The dataset ``config.data`` (generated when missing) and the model of run ``config.out``:
    loaded when finished with the same settings, else ``new_model()`` fit there."""
    from causalscene.datasets import load_arrays
    from causalscene.procgen import make_dataset
    from causalscene.train import fit, load_run
    from causalscene.utils import set_seed

    assert config.data is not None and config.out is not None
    data, run = Path(config.data), Path(config.out)
    if not (data / "meta.json").is_file():
        make_dataset(scene, n_images, image_size, seed=context.seed, out=data, overwrite=True)
    images, labels = load_arrays(data)
    if _finished(run, config):
        return TrainedVAE(load_run(run, device=context.device)[0], images, labels, [], data)
    set_seed(context.seed)
    model = new_model()
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
