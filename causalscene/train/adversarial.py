"""A GAN's :class:`~causalscene.train.steps.TrainingStep`: the two-player update of
:class:`~causalscene.gan.DCGAN` (Radford et al. 2016's recipe: Adam, lr 2e-4, beta1 0.5 —
``TrainConfig.for_model("dcgan")``).

One step on a batch of ``b`` real images ``x`` and ``b`` fresh ``z ~ N(0, I)``:

1. D: minimise ``-mean log D(x) - mean log(1 - D(G(z)))`` (G's output detached), one Adam step;
2. G: minimise the non-saturating ``-mean log D(G(z))`` on the same ``G(z)`` through the updated
   D, one Adam step.

Metrics per step (batch means; an epoch's line of ``metrics.jsonl`` has their epoch means):
``loss_d``, ``loss_g``, ``d_real`` = mean D(x) and ``d_fake`` = mean D(G(z)), both read in the
D update (before D's step). One process only (no DDP) and no CUDA graph.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from causalscene.gan import discriminator_loss, generator_loss
from causalscene.train.config import TrainConfig
from causalscene.train.data import TrainData

if TYPE_CHECKING:
    from causalscene.gan import DCGAN


class AdversarialStep:
    """D's update, then G's, each with its own Adam (``lr``, ``beta1``, ``beta2`` of the config);
    bf16 autocast and channels_last as the config says."""

    metrics: tuple[str, ...] = ("loss_d", "loss_g", "d_real", "d_fake")

    def __init__(self, model: DCGAN, config: TrainConfig, data: TrainData, world: int):
        if world > 1:
            raise ValueError("--model dcgan trains in one process: torchrun (DDP) is for the VAEs")
        self.model, self.config, self.data = model, config, data
        betas = (config.beta1, config.beta2)
        self.optimizer_d = torch.optim.Adam(
            model.discriminator.parameters(), lr=config.lr, betas=betas
        )
        self.optimizer_g = torch.optim.Adam(model.generator.parameters(), lr=config.lr, betas=betas)

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        generator, discriminator = self.model.generator, self.model.discriminator
        real = self.data.train_images[idx].float().div_(255.0)
        if self.config.channels_last:
            real = real.contiguous(memory_format=torch.channels_last)
        z = torch.randn(len(idx), generator.latent_dim, device=real.device)
        with self._autocast(real):
            fake = generator(z)
            real_logits, fake_logits = discriminator(real), discriminator(fake.detach())
            loss_d = discriminator_loss(real_logits, fake_logits)
        self.optimizer_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.optimizer_d.step()
        with self._autocast(real):
            loss_g = generator_loss(discriminator(fake))
        self.optimizer_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.optimizer_g.step()
        d_real, d_fake = torch.sigmoid(real_logits).mean(), torch.sigmoid(fake_logits).mean()
        return torch.stack([loss_d, loss_g, d_real, d_fake]).detach().float()

    def _autocast(self, x: torch.Tensor) -> torch.autocast:
        return torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.config.bf16)

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optimizer_d": self.optimizer_d, "optimizer_g": self.optimizer_g}

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizer_d": self.optimizer_d.state_dict(),
            "optimizer_g": self.optimizer_g.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for name in ("optimizer_d", "optimizer_g"):
            if name not in state:
                raise ValueError(f"checkpoint has no {name}: not a DCGAN run's")
        self.optimizer_d.load_state_dict(state["optimizer_d"])
        self.optimizer_g.load_state_dict(state["optimizer_g"])

    def epoch_fields(self, means: Sequence[float]) -> dict[str, float]:
        return dict(zip(self.metrics, means))

    def heldout(self, seed: int) -> dict[str, float]:
        """None: D's numbers on held-out images depend on its BatchNorm mode (batch or running
        statistics of mixed real and fake batches), so they are not reported."""
        return {}
