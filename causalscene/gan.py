"""The DCGAN of Radford, Metz & Chintala, "Unsupervised representation learning with deep
convolutional generative adversarial networks", ICLR 2016 (arXiv:1511.06434) — the generator
whose modules Besserve et al. (2020, §4.1) uncovered by counterfactual hybridization.

Generative story: ``z ~ N(0, I_D)``, ``x = G(z)``; no DAG, no labels, no encoder. ``G`` and the
discriminator ``D`` are trained as a two-player game with the non-saturating loss (Goodfellow et
al. 2014, §3) — :func:`discriminator_loss`, :func:`generator_loss`; the step is
:class:`causalscene.train.adversarial.AdversarialStep`. The paper's architecture guidelines::

    G:  z [B, D] → project: ConvTranspose2d(D, c·2^(K-1), 4) → 4×4, BatchNorm, ReLU
                 → conv1 .. conv(K-1): ConvTranspose2d stride 2, BatchNorm, ReLU   (×2 each)
                 → convK: ConvTranspose2d stride 2 → Tanh → x [B, 3, S, S]
    D:  x → conv1: Conv2d stride 2, LeakyReLU(0.2)         (no BatchNorm on D's input layer)
          → conv2 .. convK: Conv2d stride 2, BatchNorm, LeakyReLU(0.2) → 4×4
          → head: Conv2d(·, 1, 4) → logit [B]              (no pooling, no fully connected layer)

with ``K = log2(S / 4)`` stride-2 stages (S = 64: the paper's four fractionally-strided
convolutions, 1024 → 512 → 256 → 128 → 3 channels at ``base_channels = 128``) and every weight
drawn from N(0, 0.02) (BatchNorm scales from N(1, 0.02), as the reference implementation).

``G`` outputs ``tanh`` in [-1, 1]; :meth:`DCGANGenerator.decode` maps it to [0, 1] (the
:class:`~causalscene.generators.Generator` protocol), and ``D`` maps its [0, 1] input back to
[-1, 1] first — so the pair computes exactly the paper's D(G(z)) on [-1, 1] images.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn import functional as F

from causalscene.dag import CausalDAG
from causalscene.model import Trainable
from causalscene.nets import num_stages
from causalscene.tensors import seeded_generator

if TYPE_CHECKING:
    from causalscene.train.config import TrainConfig
    from causalscene.train.data import TrainData
    from causalscene.train.steps import TrainingStep

__all__ = [
    "DCGAN",
    "DCGANGenerator",
    "DCGANDiscriminator",
    "dcgan_stages",
    "discriminator_loss",
    "generator_loss",
    "init_dcgan_weights",
]


def dcgan_stages(image_size: int) -> int:
    """``K``, the stride-2 stages between 4×4 and ``image_size`` (a power of two, 16 to 128)."""
    if image_size not in (16, 32, 64, 128):
        raise ValueError(f"a DCGAN's image_size must be 16, 32, 64 or 128, got {image_size}")
    return num_stages(image_size)


def init_dcgan_weights(module: nn.Module) -> None:
    """Radford et al.'s initialisation: conv weights N(0, 0.02); BatchNorm scale N(1, 0.02),
    shift 0 (apply with ``net.apply``)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class DCGANGenerator(nn.Module):
    """``G``: ``decode(z [B, D]) -> x [B, C, S, S]`` in [0, 1] (module docstring); a
    :class:`~causalscene.generators.Generator` without ``encode``. Layers ``project``,
    ``conv1 .. convK`` (transposed convolutions; hook them by name) and ``bn0 .. bn(K-1)``."""

    def __init__(
        self,
        image_size: int = 64,
        latent_dim: int = 100,
        base_channels: int = 64,
        channels: int = 3,
    ):
        super().__init__()
        if latent_dim < 1 or base_channels < 1:
            raise ValueError(
                f"latent_dim and base_channels must be >= 1, got {latent_dim}, {base_channels}"
            )
        stages = dcgan_stages(image_size)
        widths = [base_channels * 2 ** (stages - 1 - i) for i in range(stages)] + [channels]
        self.image_size, self.latent_dim, self.stages = image_size, latent_dim, stages
        self.project = nn.ConvTranspose2d(latent_dim, widths[0], 4, 1, 0, bias=False)
        self.bn0 = nn.BatchNorm2d(widths[0])
        for i in range(1, stages + 1):
            conv = nn.ConvTranspose2d(widths[i - 1], widths[i], 4, 2, 1, bias=False)
            setattr(self, f"conv{i}", conv)
            if i < stages:
                setattr(self, f"bn{i}", nn.BatchNorm2d(widths[i]))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.decode(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z ``[B, D]`` → images ``[B, C, S, S]`` in [0, 1]: ``(tanh(G's last layer) + 1) / 2``."""
        h = F.relu(self.bn0(self.project(z[:, :, None, None])))
        for i in range(1, self.stages):
            h = F.relu(self.get_submodule(f"bn{i}")(self.get_submodule(f"conv{i}")(h)))
        return (torch.tanh(self.get_submodule(f"conv{self.stages}")(h)) + 1) / 2

    def sample_latents(self, n: int, seed: int | None = None) -> torch.Tensor:
        """``n`` draws of ``z ~ N(0, I_D)`` ``[n, D]`` on the generator's device."""
        device = next(self.parameters()).device
        return torch.randn(n, self.latent_dim, generator=seeded_generator(seed)).to(device)


class DCGANDiscriminator(nn.Module):
    """``D``: images ``[B, C, S, S]`` in [0, 1] → logits ``[B]`` (module docstring). Layers
    ``conv1 .. convK``, ``bn2 .. bnK``, ``head``."""

    def __init__(self, image_size: int = 64, base_channels: int = 64, channels: int = 3):
        super().__init__()
        stages = dcgan_stages(image_size)
        widths = [channels] + [base_channels * 2**i for i in range(stages)]
        self.stages = stages
        for i in range(1, stages + 1):
            setattr(self, f"conv{i}", nn.Conv2d(widths[i - 1], widths[i], 4, 2, 1, bias=False))
            if i > 1:
                setattr(self, f"bn{i}", nn.BatchNorm2d(widths[i]))
        self.head = nn.Conv2d(widths[-1], 1, 4, 1, 0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.get_submodule("conv1")(x * 2 - 1), 0.2)
        for i in range(2, self.stages + 1):
            h = F.leaky_relu(self.get_submodule(f"bn{i}")(self.get_submodule(f"conv{i}")(h)), 0.2)
        return self.head(h).flatten()


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """``-mean log D(x) - mean log(1 - D(G(z)))`` from D's logits (BCE-with-logits against 1 on
    real images and 0 on generated ones; ``D = sigmoid(logit)``)."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """The non-saturating generator loss ``-mean log D(G(z))`` (Goodfellow et al. 2014, §3: it
    gives strong gradients early, where ``log(1 - D(G(z)))`` saturates)."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


class DCGAN(Trainable):
    """Generator and discriminator of one run, trained by :func:`causalscene.train.fit` (their
    step: :class:`~causalscene.train.adversarial.AdversarialStep`).

    Args:
        image_size: S, height = width of the images (16, 32, 64 or 128).
        latent_dim: D, the size of z (the paper: 100).
        base_channels: c, the width of G's last hidden layer and D's first (the paper: 128;
            the layers between double per stage).
        channels: colour channels (3).
    """

    def __init__(
        self,
        image_size: int = 64,
        latent_dim: int = 100,
        base_channels: int = 64,
        channels: int = 3,
    ):
        super().__init__()
        self.image_size, self.latent_dim = image_size, latent_dim
        self.base_channels, self.channels = base_channels, channels
        self.generator = DCGANGenerator(image_size, latent_dim, base_channels, channels)
        self.discriminator = DCGANDiscriminator(image_size, base_channels, channels)
        self.apply(init_dcgan_weights)

    def config(self) -> dict:
        return {
            "kind": "dcgan",
            "image_size": self.image_size,
            "latent_dim": self.latent_dim,
            "base_channels": self.base_channels,
            "channels": self.channels,
        }

    def as_generator(self) -> DCGANGenerator:
        """The :class:`~causalscene.generators.Generator` view: ``G`` (no ``encode``)."""
        return self.generator

    def sample(self, n: int, seed: int | None = None) -> torch.Tensor:
        """``n`` images ``G(z)``, ``z ~ N(0, I)`` ``[n, C, S, S]`` in [0, 1]."""
        return self.generator.decode(self.generator.sample_latents(n, seed))

    # what the trainer asks (Trainable) --------------------------------------------------------
    @property
    def label_dag(self) -> CausalDAG | None:
        """None: a DCGAN uses no labels, so any dataset will do."""
        return None

    def training_step(
        self, config: TrainConfig, data: TrainData, device: Any, world: int
    ) -> TrainingStep:
        """The two-player step (:class:`~causalscene.train.adversarial.AdversarialStep`)."""
        from causalscene.train.adversarial import AdversarialStep

        return AdversarialStep(self, config, data, world)
