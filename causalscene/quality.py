"""Sample quality: a Fréchet distance between image sets, in the features of a renderer-trained net.

The Fréchet Inception Distance (Heusel et al., NeurIPS 2017) compares the Gaussians fitted to two
image sets' features, d² = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^½), the squared 2-Wasserstein
distance between N(μ₁, Σ₁) and N(μ₂, Σ₂). Inception's weights would have to be downloaded; our
data comes from a known renderer (procgen), so the feature network here is an
:class:`~causalscene.probes.ImageProbe` trained on a factorial design of that renderer (every
rendered node drawn uniformly and independently, sharp images only), and the features are its
penultimate layer (128-d, after ReLU). Numbers are comparable only under the same feature
network (its :attr:`FeatureNetwork.name` says which), like FIDs under one Inception.

* :func:`frechet_distance` — the closed form on two (μ, Σ);
* :func:`feature_network` — the network for a procgen source, trained once and cached;
* :func:`feature_stats` / :func:`image_frechet` — (μ, Σ) of uint8 images, and d² of two sets;
* :func:`dataset_frechet` — d² of two image sets of a procgen dataset folder.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from causalscene.probes import ImageProbe, factorial_training_set
from causalscene.tensors import to_float_images, to_uint8_images

__all__ = [
    "FeatureNetwork",
    "frechet_distance",
    "feature_network",
    "renderer_source",
    "image_features",
    "feature_stats",
    "image_frechet",
    "dataset_frechet",
]

log = logging.getLogger(__name__)


def frechet_distance(mu1: Any, cov1: Any, mu2: Any, cov2: Any, eps: float = 1e-6) -> float:
    """d² = ‖μ₁ − μ₂‖² + Tr(Σ₁) + Tr(Σ₂) − 2 Tr((Σ₁Σ₂)^½), in float64 (the FID's closed form).

    (Σ₁Σ₂)^½ by :func:`scipy.linalg.sqrtm`; when Σ₁Σ₂ is singular (sqrtm warns, or its result is
    not finite) both covariances get ``eps``·I and d² is that of the regularised pair (identical
    sets still give ≈ 0); an imaginary part from round-off is dropped when below 1e-3 of the
    trace, else a ``ValueError``. Tiny negative results of round-off are returned as they are.
    """
    mu1, mu2 = (
        np.atleast_1d(np.asarray(mu1, np.float64)),
        np.atleast_1d(np.asarray(mu2, np.float64)),
    )
    cov1, cov2 = (
        np.atleast_2d(np.asarray(cov1, np.float64)),
        np.atleast_2d(np.asarray(cov2, np.float64)),
    )
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or cov1.shape != (d, d) or cov2.shape != (d, d):
        raise ValueError(
            f"shapes do not match: mu {mu1.shape} / {mu2.shape}, cov {cov1.shape} / {cov2.shape}"
        )
    root, singular = _sqrtm(cov1 @ cov2)
    if singular or not np.isfinite(root).all():
        log.debug("Σ₁Σ₂ is singular: both covariances get %g on their diagonals", eps)
        cov1, cov2 = cov1 + eps * np.eye(d), cov2 + eps * np.eye(d)
        root, _ = _sqrtm(cov1 @ cov2)
    if np.iscomplexobj(root):
        scale = max(abs(np.trace(cov1)) + abs(np.trace(cov2)), 1e-12)
        if np.abs(np.trace(root.imag)) > 1e-3 * scale:
            raise ValueError(f"sqrtm(Σ₁Σ₂) has an imaginary trace {np.trace(root.imag):.3g}")
        root = root.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2 * np.trace(root))


def _sqrtm(m: np.ndarray) -> tuple[np.ndarray, bool]:
    """scipy's principal square root, and whether it warned that ``m`` is singular."""
    from scipy import linalg

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", linalg.LinAlgWarning)
        root = linalg.sqrtm(m)
    return np.asarray(root), any(issubclass(w.category, linalg.LinAlgWarning) for w in caught)


@dataclass
class FeatureNetwork:
    """An image probe whose penultimate layer gives the features, and what it was trained on."""

    probe: ImageProbe
    name: str  #: what the JSON outputs record, e.g. "ImageProbe penultimate (128-d), ..."


def renderer_source(data: str | Path) -> dict | None:
    """The procgen generator (and options) that made dataset folder ``data``, with every node it
    renders (:func:`~causalscene.probes.factorial_source`); None when not procgen."""
    from causalscene import procgen
    from causalscene.datasets import read_meta
    from causalscene.probes import factorial_source

    try:
        name = read_meta(data).get("generator")
    except (ValueError, OSError):
        return None
    if name not in procgen.GENERATORS:
        return None
    truth = procgen.load_dag(name)
    return factorial_source(data, {n: list(truth.states(n)) for n in truth.rendered_nodes})


def feature_network(
    source: Mapping[str, Any],
    image_size: int,
    n_images: int = 3000,
    epochs: int = 4,
    seed: int = 0,
    cache: str | Path | None = None,
    device: str = "cpu",
) -> FeatureNetwork:
    """The :class:`ImageProbe` of ``source``'s rendered nodes trained on ``n_images`` factorial
    items at ``image_size`` px (:func:`~causalscene.probes.factorial_training_set`), loaded from
    ``cache`` when that file holds one of the same design (weights-only), else trained and saved
    there atomically."""
    from causalscene import procgen

    truth = procgen.load_dag(source["generator"])
    cards = {n: int(truth.cardinality(n)) for n in truth.rendered_nodes}
    name = (
        f"ImageProbe penultimate layer (128-d), trained on {n_images} factorial procgen "
        f"{source['generator']} items at {image_size} px, {epochs} epochs, seed {seed}"
    )
    path = Path(cache) if cache is not None else None
    if path is not None and path.is_file():
        probe = ImageProbe.load(path, device)
        if probe.cards == cards and probe.image_size == image_size and _named(path) == name:
            return FeatureNetwork(probe, name)
    images, labels = factorial_training_set(
        source, n_images, image_size, seed, procgen.default_workers()
    )
    probe = ImageProbe(cards, image_size, images.shape[-1])
    probe.fit(images, {n: labels[n] for n in cards}, epochs=epochs, seed=seed, device=device)
    if path is not None:
        from causalscene.utils import atomic_write_text

        probe.save(path)
        atomic_write_text(path.with_suffix(".txt"), name + "\n")
    return FeatureNetwork(probe, name)


def _named(path: Path) -> str | None:
    """The design a cached network was trained with (its ``.txt`` beside it)."""
    text = path.with_suffix(".txt")
    return text.read_text().strip() if text.is_file() else None


@torch.no_grad()
def image_features(network: FeatureNetwork, images: Any, batch_size: int = 256) -> np.ndarray:
    """Penultimate-layer features ``[N, 128]`` (float64) of uint8 NHWC (or float NCHW) images."""
    probe = network.probe
    device = next(probe.parameters()).device
    x = to_float_images(images)
    if x.shape[-1] != probe.image_size or x.shape[1] != probe.channels:
        raise ValueError(
            f"images are {tuple(x.shape[1:])} (C, H, W); the feature network takes "
            f"{probe.channels} x {probe.image_size} x {probe.image_size}"
        )
    probe.eval()
    out = [
        probe.features(x[s : s + batch_size].to(device)).cpu() for s in range(0, len(x), batch_size)
    ]
    return torch.cat(out).double().numpy()


def feature_stats(network: FeatureNetwork, images: Any) -> tuple[np.ndarray, np.ndarray]:
    """(μ [F], Σ [F, F]) of the images' features (Σ with the unbiased 1/(N − 1)); N ≥ 2."""
    features = image_features(network, images)
    if len(features) < 2:
        raise ValueError(f"feature statistics need at least 2 images, got {len(features)}")
    return features.mean(0), np.cov(features, rowvar=False)


def image_frechet(network: FeatureNetwork, images_a: Any, images_b: Any) -> float:
    """d² between the feature Gaussians of two image sets (:func:`frechet_distance`)."""
    return frechet_distance(*feature_stats(network, images_a), *feature_stats(network, images_b))


def dataset_frechet(
    data: str | Path,
    images_a: np.ndarray,
    images_b: np.ndarray,
    *,
    cache: str | Path | None = None,
    n_images: int = 3000,
    epochs: int = 4,
    seed: int = 0,
    device: str = "cpu",
) -> dict[str, Any]:
    """``{"frechet": d², "features": the network's name}`` of two uint8 image sets, in the
    feature network of the procgen renderer that made dataset folder ``data``; a ``ValueError``
    when ``data`` is not a procgen dataset (no renderer to train the features on)."""
    source = renderer_source(data)
    if source is None:
        raise ValueError(f"{data}: not a procgen dataset; the Fréchet features need its renderer")
    network = feature_network(source, images_a.shape[1], n_images, epochs, seed, cache, device)
    return {"frechet": image_frechet(network, images_a, images_b), "features": network.name}


def evaluation_frechet(
    run: Path,
    model: Any,
    data: str | Path,
    train_config: Any,
    n_images: int = 3000,
    epochs: int = 4,
    seed: int = 0,
    device: str = "cpu",
    max_samples: int = 1000,
    network: FeatureNetwork | None = None,
    images: np.ndarray | None = None,
) -> dict[str, Any]:
    """What ``causalscene evaluate`` adds to ``eval.json``: ``frechet`` (d² between samples of a
    :class:`~causalscene.model.CausalVAE` and real test images), ``frechet_features`` (the
    network: ``network`` when given — evaluate passes its probe ψ, itself trained on the
    factorial design — else :func:`feature_network` cached as ``RUN/frechet_features.pt``),
    ``frechet_real`` (which real images) and
    ``frechet_samples``. The real images are the training run's held-out split when ``data`` is
    the run's dataset (the split of :func:`causalscene.train.data.prepare_data`), else all of
    ``data``; as many samples as real images, at most ``max_samples``. ``frechet`` is None (and
    ``frechet_features`` says why) when ``data`` has no procgen renderer. ``images``: all of
    ``data``'s images when the caller has them loaded already (read from ``data`` otherwise)."""
    from causalscene.generate import sample_images
    from causalscene.train import load_dataset
    from causalscene.train.data import holdout_split

    source = renderer_source(data)
    if source is None:
        return {"frechet": None, "frechet_features": "none: the data has no procgen renderer"}
    same = train_config.data is not None and Path(train_config.data) == Path(data)
    if images is None:
        images, _ = load_dataset(data, model.label_dag)
    what = f"all {len(images)} images of {data}"
    if same:
        images = images[: train_config.max_images]  # the images the run was trained on
        seed, fraction = train_config.seed, train_config.holdout_fraction
        _, hold = holdout_split(len(images), seed, fraction)
        images = images[hold.numpy()]
        what = f"the run's held-out split ({len(hold)} images)"
    n = min(len(images), max_samples)
    generated, _ = sample_images(model, n=n, seed=seed)
    samples = to_uint8_images(generated)
    if network is None:
        cache = run / "frechet_features.pt"
        network = feature_network(source, images.shape[1], n_images, epochs, seed, cache, device)
    return {
        "frechet": image_frechet(network, samples, images[:n]),
        "frechet_features": network.name,
        "frechet_real": what,
        "frechet_samples": n,
    }
