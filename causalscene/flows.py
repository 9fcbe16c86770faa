"""A masked autoregressive flow as a Generator, for CAGE's 2-D Gaussian-mixture toy.

Bose, Monti & Grover (TMLR 2022), section 5.1 (Q1) probe a flow trained on a 2-D mixture. The flow
here is a stack of Pyro ``AffineAutoregressive`` transforms (each conditioner an
``AutoRegressiveNN``, MADE-style masking), the order of the inputs reversed between layers:

    z ~ N(0, I_2),    x = T_L ∘ … ∘ T_1 (z),    T_l(u)_i = μ_l,i(u_{<i}) + σ_l,i(u_{<i}) · u_i

(in the autoregressive order of layer l). ``order`` fixes the first layer's order; ``order=(1, 0)``
is the anti-causal input ordering of the paper's Appendix C.2. Generator protocol:
``decode(z) = T(z)`` (= ``forward``), ``encode(x) = T⁻¹(x)`` (exact inverse, not a posterior mean),
``sample_latents(n, seed)`` draws from N(0, I).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pyro.distributions as dist
import torch
from pyro.distributions.transforms import AffineAutoregressive
from pyro.nn import AutoRegressiveNN
from torch import nn

__all__ = ["FlowConfig", "MAFGenerator"]

log = logging.getLogger(__name__)


@dataclass
class FlowConfig:
    """Options of :class:`MAFGenerator` and its :meth:`~MAFGenerator.fit`."""

    dim: int = 2
    num_layers: int = 5
    hidden_dims: tuple[int, ...] = (64, 64)
    order: tuple[int, ...] | None = None  #: first layer's autoregressive input order
    steps: int = 2000
    batch_size: int = 512
    lr: float = 3e-3
    seed: int = 0
    standardize: bool = True  #: fit on standardised data (the affine map is part of decode)
    extra: dict[str, Any] = field(default_factory=dict)


class MAFGenerator(nn.Module):
    """Masked autoregressive flow ``x = T(z)``, ``z ~ N(0, I)``, with the Generator protocol."""

    loc: torch.Tensor  #: buffers of the standardisation: x = loc + scale · (flow output)
    scale: torch.Tensor

    def __init__(self, config: FlowConfig | None = None):
        super().__init__()
        self.config = config or FlowConfig()
        d = int(self.config.dim)
        if d < 2:
            raise ValueError(f"a flow needs dim >= 2, got {d}")
        self.latent_dim = d  #: D of the Generator protocol (= the data dimension)
        order = tuple(self.config.order) if self.config.order is not None else tuple(range(d))
        if sorted(order) != list(range(d)):
            raise ValueError(f"order must be a permutation of 0..{d - 1}, got {order}")
        self.order = order
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.config.seed))
            layers = []
            for i in range(int(self.config.num_layers)):
                perm = torch.tensor(order if i % 2 == 0 else order[::-1], dtype=torch.long)
                arn = AutoRegressiveNN(
                    d, list(self.config.hidden_dims), permutation=cast(torch.LongTensor, perm)
                )
                layers.append(AffineAutoregressive(arn))
        # MAF layout (Papamakarios et al. 2017): each module maps data towards the latent in one
        # parallel pass (density evaluation is fast); decoding inverts them one coordinate at a time.
        self.layers = nn.ModuleList(layers)
        self.register_buffer("loc", torch.zeros(d))
        self.register_buffer("scale", torch.ones(d))
        self.history: list[float] = []

    def _base(self) -> dist.Distribution:
        zeros = self.loc.new_zeros(self.latent_dim)
        return dist.Normal(zeros, torch.ones_like(zeros)).to_event(1)

    def _transforms(self) -> list[AffineAutoregressive]:
        return [cast(AffineAutoregressive, layer) for layer in self.layers]

    def _to_latent(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_det = u.new_zeros(u.shape[0])
        for layer in self._transforms():
            out = layer(u)
            log_det = log_det + layer.log_abs_det_jacobian(u, out)
            u = out
        return u, log_det

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) = log N(T⁻¹(x)) + log |det ∂T⁻¹/∂x| ``[B]`` (standardisation included)."""
        z, log_det = self._to_latent((x - self.loc) / self.scale)
        return self._base().log_prob(z) + log_det - self.scale.log().sum()

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """x = T(z): ``[B, D]`` latents → ``[B, D]`` points."""
        u = z
        for layer in reversed(self._transforms()):
            u = layer.inv(u)
        return u * self.scale + self.loc

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.decode(z)

    def encode(self, x: Any) -> torch.Tensor:
        """z = T⁻¹(x) (exact; the flow is a bijection)."""
        xt = torch.as_tensor(
            np.asarray(x) if not isinstance(x, torch.Tensor) else x, dtype=torch.float32
        )
        xt = xt.to(self.loc.device)
        return self._to_latent((xt - self.loc) / self.scale)[0]

    def sample_latents(self, n: int, seed: int | None = None) -> torch.Tensor:
        """``[n, D]`` draws from the prior N(0, I)."""
        gen = torch.Generator().manual_seed(int(seed)) if seed is not None else None
        return torch.randn(int(n), self.latent_dim, generator=gen).to(self.loc.device)

    def fit(self, points: Any, steps: int | None = None, seed: int | None = None) -> MAFGenerator:
        """Maximum likelihood with Adam on ``points: [N, D]``; returns ``self`` (losses in ``history``)."""
        x = torch.as_tensor(np.asarray(points), dtype=torch.float32).to(self.loc.device)
        if x.ndim != 2 or x.shape[1] != self.latent_dim:
            raise ValueError(f"points must be [N, {self.latent_dim}], got {tuple(x.shape)}")
        if len(x) < 2:
            raise ValueError("need at least 2 points to fit a flow")
        if self.config.standardize:
            self.loc.copy_(x.mean(0))
            self.scale.copy_(x.std(0).clamp_min(1e-6))
        steps = int(self.config.steps if steps is None else steps)
        seed = int(self.config.seed if seed is None else seed)
        gen = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.Adam(self.layers.parameters(), lr=self.config.lr)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, steps))
        self.train()
        threads = torch.get_num_threads()
        if x.device.type == "cpu":
            torch.set_num_threads(1)  # tiny matmuls: threading costs more than it saves
        try:
            self._train_loop(x, steps, gen, optimizer, schedule)
        finally:
            torch.set_num_threads(threads)
        self.eval()
        return self

    def _train_loop(self, x, steps, gen, optimizer, schedule) -> None:
        for step in range(steps):
            idx = torch.randint(len(x), (min(self.config.batch_size, len(x)),), generator=gen)
            loss = -self.log_prob(x[idx.to(x.device)]).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            self.history.append(float(loss.detach()))
            if step % 500 == 0:
                log.info("flow step %d: nll %.4f", step, self.history[-1])

    def orders(self) -> Sequence[tuple[int, ...]]:
        """The autoregressive input order of every layer."""
        return [
            self.order if i % 2 == 0 else self.order[::-1] for i in range(self.config.num_layers)
        ]
