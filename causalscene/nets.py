"""Convolutional building blocks of the generators: :class:`Encoder`, :class:`Decoder`, :class:`Classifier`.

Every block is sized by the image size (any power of two >= 8: 16, 32, 64, 128 ...): the number of
stride-2 stages is ``log2(image_size / 4)``, so the spatial grid is 4x4 at the bottleneck. Layers have
stable *names* so that forward hooks can find them (``decoder.conv1`` is the first transposed
convolution after the fully connected ``decoder.fc``; ``encoder.conv1`` the first convolution)::

    Encoder:  x [B,C,H,W] -> conv1 .. convK (stride 2, SiLU) -> flatten (+ cond [B,K']) -> fc -> loc, scale
    Decoder:  u [..., D]  -> fc -> [B, c, 4, 4] -> conv1 .. convK (transposed, stride 2) -> logits [..., C, H, W]
              (with cond_dim: the last cond_dim entries of u also shift every hidden map, cond1 ..)

The decoder accepts any leading batch shape (Pyro's enumeration adds dimensions on the left).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["Encoder", "Decoder", "Classifier", "num_stages", "channel_plan"]


def num_stages(image_size: int) -> int:
    """Number of stride-2 stages from ``image_size`` down to 4x4."""
    stages = math.log2(image_size / 4) if image_size >= 8 else -1
    if stages < 1 or stages != int(stages):
        raise ValueError(f"image_size must be a power of two >= 8, got {image_size}")
    return int(stages)


def channel_plan(image_size: int, base_channels: int) -> list[int]:
    """Channels after each encoder stage (doubling, capped at 8x base)."""
    return [base_channels * min(2**i, 8) for i in range(num_stages(image_size))]


class _ConvTrunk(nn.Module):
    """Stride-2 convolutions ``conv1 .. convK`` with SiLU; output flattened ``[B, c_K * 16]``."""

    def __init__(self, image_size: int, in_channels: int, base_channels: int):
        super().__init__()
        channels = channel_plan(image_size, base_channels)
        previous = in_channels
        self.names: list[str] = []
        for i, c in enumerate(channels, start=1):
            setattr(self, f"conv{i}", nn.Conv2d(previous, c, 4, stride=2, padding=1))
            self.names.append(f"conv{i}")
            previous = c
        self.out_features = previous * 16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for name in self.names:
            h = F.silu(getattr(self, name)(h))
        return h.flatten(1)


class Encoder(nn.Module):
    """q(z | x, cond): conv trunk, then ``fc`` on [features, cond] → ``(loc, scale)`` ``[B, D]``.

    Args:
        image_size: height = width of the images (power of two >= 8).
        latent_dim: D, the size of z.
        cond_dim: size of the conditioning vector (one-hots of rendered labels); 0 for none.
        in_channels: colour channels (3).
        base_channels: channels of the first stage (doubles per stage, capped at 8x).
    """

    def __init__(
        self,
        image_size: int,
        latent_dim: int,
        cond_dim: int = 0,
        in_channels: int = 3,
        base_channels: int = 32,
        hidden_dim: int = 256,
    ):
        super().__init__()
        self.trunk = _ConvTrunk(image_size, in_channels, base_channels)
        self.cond_dim = cond_dim
        self.latent_dim = latent_dim
        self.fc = nn.Linear(self.trunk.out_features + cond_dim, hidden_dim)
        self.fc_loc = nn.Linear(hidden_dim, latent_dim)
        self.fc_scale = nn.Linear(hidden_dim, latent_dim)

    def forward(
        self, x: torch.Tensor, cond: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(x)
        if self.cond_dim:
            if cond is None:
                raise ValueError(f"this encoder needs a condition of {self.cond_dim} values")
            h = torch.cat([h, cond.to(h.dtype)], dim=-1)
        h = F.silu(self.fc(h))
        loc = self.fc_loc(h)
        scale = F.softplus(self.fc_scale(h)) + 1e-4
        return loc, scale


class Decoder(nn.Module):
    """p(x | u) mean parameters: ``fc`` → 4x4 grid → transposed convs ``conv1 .. convK`` → logits.

    ``u`` may carry extra leading dimensions ``[..., B, D]``; the output is ``[..., B, C, H, W]``
    *logits* (the model maps them to a mean in [0, 1] with a sigmoid).
    """

    def __init__(
        self,
        image_size: int,
        input_dim: int,
        out_channels: int = 3,
        base_channels: int = 32,
        cond_dim: int = 0,
    ):
        super().__init__()
        channels = channel_plan(image_size, base_channels)[::-1]  # widest first
        self.image_size = image_size
        self.out_channels = out_channels
        self.input_dim = input_dim
        self.cond_dim = cond_dim
        self.grid_channels = channels[0]
        self.fc = nn.Linear(input_dim, channels[0] * 16)
        self.names: list[str] = []
        for i, c in enumerate(channels, start=1):
            out = channels[i] if i < len(channels) else out_channels
            setattr(self, f"conv{i}", nn.ConvTranspose2d(c, out, 4, stride=2, padding=1))
            if cond_dim and i < len(channels):
                # the conditioning part of u (its last cond_dim entries) also shifts every
                # intermediate feature map: labels reach each scale directly
                setattr(self, f"cond{i}", nn.Linear(cond_dim, out))
            self.names.append(f"conv{i}")

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        lead = u.shape[:-1]
        u = u.reshape(-1, u.shape[-1])
        h = F.silu(self.fc(u))
        h = h.view(-1, self.grid_channels, 4, 4)
        cond = u[:, u.shape[-1] - self.cond_dim :] if self.cond_dim else None
        last = len(self.names) - 1
        for i, name in enumerate(self.names):
            h = getattr(self, name)(h)
            if i < last:
                if cond is not None:
                    h = h + getattr(self, f"cond{i + 1}")(cond)[:, :, None, None]
                h = F.silu(h)
        return h.reshape(*lead, self.out_channels, self.image_size, self.image_size)


class Classifier(nn.Module):
    """q(node | x) for several categorical nodes at once: conv trunk → one logit head per node.

    Returns ``{node: logits [B, card]}``.
    """

    def __init__(
        self,
        image_size: int,
        cardinalities: dict[str, int],
        in_channels: int = 3,
        base_channels: int = 16,
        hidden_dim: int = 128,
    ):
        super().__init__()
        self.trunk = _ConvTrunk(image_size, in_channels, base_channels)
        self.fc = nn.Linear(self.trunk.out_features, hidden_dim)
        self.cardinalities = dict(cardinalities)
        self.head = nn.Linear(hidden_dim, max(1, sum(self.cardinalities.values())))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.head(F.silu(self.fc(self.trunk(x))))
        out, start = {}, 0
        for node, card in self.cardinalities.items():
            out[node] = logits[:, start : start + card]
            start += card
        return out
