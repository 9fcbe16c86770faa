"""Latent inversion: the latents of images for a generator without ``encode``.

For each image ``x_i`` (in [0, 1]) the latent is a minimiser of the reconstruction objective

    L_i(z) = MSE(decode(z), x_i) + λ ‖z‖² / 2,      MSE = mean over pixels and channels,

found by Adam on ``z`` from a prior sample (``generator.sample_latents``) or a given start (e.g.
an encoder's output), with the learning rate annealed along a cosine to 0 over a fixed number of
steps. With ``restarts > 1`` every image is inverted from several starts at once and the start
with the lowest final objective wins. ``λ > 0`` (the prior penalty: the negative log density of
a standard normal prior, up to a constant) pulls the latents toward the prior's bulk; ``λ = 0``
fits the image alone.

Images are inverted in batches on the generator's device. Each image's objective depends only on
its own latent and Adam updates coordinate by coordinate, so the batch size does not change the
result (up to floating point). Gradients are taken with respect to ``z`` only: the generator's
parameters are neither changed nor given ``.grad``.

This is the optimisation route of GAN inversion (Xia et al., "GAN inversion: a survey", TPAMI
2022, section 3.2).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from causalscene.generators import Generator, check_generator, device_of

__all__ = ["InversionConfig", "Inversion", "invert"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InversionConfig:
    """Options of one inversion: Adam ``steps`` at learning rate ``lr`` (cosine-annealed to 0),
    prior penalty ``prior`` (λ), ``restarts`` starts per image, ``batch_size`` images per
    batch, ``seed`` of the prior starts."""

    steps: int = 300
    lr: float = 0.1
    prior: float = 0.0
    restarts: int = 1
    batch_size: int = 256
    seed: int = 0

    def validate(self) -> InversionConfig:
        """``self``, or ``ValueError`` naming the first bad field."""
        for name in ("steps", "restarts", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"inversion {name} must be an integer >= 1, got {value!r}")
        if not np.isfinite(self.lr) or self.lr <= 0:
            raise ValueError(f"inversion lr must be a positive number, got {self.lr!r}")
        if not np.isfinite(self.prior) or self.prior < 0:
            raise ValueError(f"inversion prior (λ) must be >= 0, got {self.prior!r}")
        return self


@dataclass
class Inversion:
    """What :func:`invert` found: ``latents: [N, D]`` and ``recon_mse: [N]`` (float32, CPU)."""

    latents: torch.Tensor
    recon_mse: torch.Tensor  #: MSE(decode(z_i), x_i) per image, without the prior term
    config: InversionConfig

    def summary(self, images: np.ndarray | None = None) -> dict[str, Any]:
        """``{"method": "inversion", <config>, recon_mse_mean / _p90 / _max}`` (for JSON); with
        the inverted uint8 ``images``, also their ``pixel_variance`` (in [0, 1] units) to judge
        the MSE by."""
        mse = self.recon_mse.double().numpy()
        out = {
            "method": "inversion",
            **asdict(self.config),
            "recon_mse_mean": float(mse.mean()),
            "recon_mse_p90": float(np.percentile(mse, 90)),
            "recon_mse_max": float(mse.max()),
        }
        if images is not None:
            out["pixel_variance"] = float(np.var(np.asarray(images, np.float64) / 255.0))
        return out


def invert(
    generator: Generator,
    images: Any,
    config: InversionConfig | None = None,
    init: torch.Tensor | None = None,
    progress: bool = False,
) -> Inversion:
    """Latents ``[N, D]`` whose decodings reconstruct ``images`` (module docstring).

    ``images``: uint8 ``[N, H, W, C]`` (the dataset format) or float ``[N, C, H, W]`` in [0, 1].
    ``init: [N, D]`` starts the first restart (e.g. an encoder's latents); the other restarts,
    or all without ``init``, start from ``generator.sample_latents(restarts * N, seed)``.
    ``progress`` draws a tqdm bar on stderr. Put the generator in eval mode first.
    """
    config = (config or InversionConfig()).validate()
    check_generator(generator)
    n = len(images)
    if n < 1:
        raise ValueError("no images to invert")
    starts = _starts(generator, n, config, init)  # [R, N, D] on the generator's device
    latents, mse = [], []
    bar = _bar(progress, config.steps * -(-n // config.batch_size))
    try:
        for lo in range(0, n, config.batch_size):
            hi = min(n, lo + config.batch_size)
            z, err = _invert_batch(generator, images[lo:hi], starts[:, lo:hi], config, bar)
            latents.append(z.detach().float().cpu())
            mse.append(err.detach().float().cpu())
    finally:
        if bar is not None:
            bar.close()
    result = Inversion(torch.cat(latents), torch.cat(mse), config)
    log.info("inverted %d images: reconstruction MSE mean %.3g", n, float(result.recon_mse.mean()))
    return result


def _starts(
    generator: Generator, n: int, config: InversionConfig, init: torch.Tensor | None
) -> torch.Tensor:
    """Starting latents ``[restarts, N, D]``: prior samples, the first restart ``init``."""
    device, d = device_of(generator), generator.latent_dim
    prior = generator.sample_latents(config.restarts * n, seed=config.seed)
    if tuple(prior.shape) != (config.restarts * n, d):
        raise ValueError(
            f"sample_latents({config.restarts * n}) gave shape {tuple(prior.shape)}, "
            f"expected ({config.restarts * n}, {d})"
        )
    starts = prior.to(device=device, dtype=torch.float32).reshape(config.restarts, n, d)
    if init is not None:
        if tuple(init.shape) != (n, d):
            raise ValueError(f"init must be [N, D] = ({n}, {d}), got {tuple(init.shape)}")
        starts[0] = init.to(device=device, dtype=torch.float32)
    return starts


def _objective(
    generator: Generator, z: torch.Tensor, target: torch.Tensor, prior: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-latent ``(objective, MSE)``, both ``[B]``: MSE(decode(z), target) + λ‖z‖²/2."""
    x = generator.decode(z)
    if x.shape != target.shape:
        raise ValueError(
            f"decode gives images of shape {tuple(x.shape[1:])}, the data's are "
            f"{tuple(target.shape[1:])}"
        )
    mse = (x.float() - target).square().flatten(1).mean(dim=1)
    return mse + 0.5 * prior * z.square().sum(dim=1), mse


def _invert_batch(
    generator: Generator, images: Any, starts: torch.Tensor, config: InversionConfig, bar: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """Adam on ``starts: [R, B, D]`` against one batch of images; the best restart per image:
    ``(z [B, D], MSE [B])``."""
    from causalscene.tensors import to_float_images

    restarts, b, d = starts.shape
    target = to_float_images(images, starts.device).repeat(restarts, 1, 1, 1)
    z = starts.reshape(restarts * b, d).clone().requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=config.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.steps)
    for _ in range(config.steps):
        objective, _ = _objective(generator, z, target, config.prior)
        (z.grad,) = torch.autograd.grad(objective.sum(), z)
        optimizer.step()
        schedule.step()
        if bar is not None:
            bar.update(1)
    with torch.no_grad():
        objective, mse = _objective(generator, z, target, config.prior)
        best = objective.reshape(restarts, b).argmin(dim=0)  # [B]
        columns = torch.arange(b, device=z.device)
        z_best = z.detach().reshape(restarts, b, d)[best, columns]
        return z_best, mse.reshape(restarts, b)[best, columns]


def _bar(progress: bool, total: int) -> Any:
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="inverting", unit="step", leave=False)
