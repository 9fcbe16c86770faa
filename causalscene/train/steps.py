"""How a model learns, as :func:`~causalscene.train.fit` sees it: a :class:`TrainingStep`.

``fit`` owns what every run shares — the data on the device, the batches of an epoch, the
progress bar, checkpoints and exact resume, the NaN/inf guard, the run folder — and asks the
model (:meth:`~causalscene.model.Trainable.training_step`) for the rest: the optimisers, the
update on one batch and the numbers an epoch reports. Two implement it:

* :class:`SVIStep` — a VAE: one loss (the -ELBO and its auxiliary terms, :mod:`.objective`),
  one Adam, the gradient-spike guard, DDP under torchrun, optionally captured as a CUDA graph
  (then with the gradients' all-reduce inside the graph instead of DDP);
* :class:`causalscene.train.adversarial.AdversarialStep` — a GAN: the discriminator's update,
  then the generator's, each with its own Adam.

A step returns per-image means of its :attr:`~TrainingStep.metrics` as one detached device
tensor; ``fit`` accumulates them (no host sync per step), checks them for NaN/inf every
``log_every`` steps and hands the epoch's means back to :meth:`~TrainingStep.epoch_fields`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import torch

from causalscene.train.config import TrainConfig
from causalscene.train.data import TrainData
from causalscene.train.distributed import GradientAllReduce, broadcast_from_rank0, wrap_ddp
from causalscene.train.graph import GraphedStep, check_cuda_graph
from causalscene.train.guards import GradientSpikeGuard, NonFiniteLoss
from causalscene.train.objective import _Objective, evaluate_elbo

if TYPE_CHECKING:
    from causalscene.model import TrainableVAE


class TrainingStep(Protocol):
    """One run's way of learning: all ``fit`` knows of the objective."""

    #: names of the per-image means a step returns, in order
    metrics: tuple[str, ...]

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimisers by their checkpoint keys (what resume and the finite check read)."""
        ...

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        """Update the model on the training images ``idx`` (``[b]`` on the device); return the
        batch's per-image means of :attr:`metrics` (``[len(metrics)]``, detached). Raises
        :class:`~causalscene.train.guards.NonFiniteLoss` where the loss cannot even be formed."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """The optimisers' (and guards') state: entries of the checkpoint."""
        ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s entries from a checkpoint's dict."""
        ...

    def epoch_fields(self, means: Sequence[float]) -> dict[str, float]:
        """The epoch's fields of ``metrics.jsonl`` from its means of :attr:`metrics` (held-out
        fields NaN until :meth:`heldout` fills them)."""
        ...

    def heldout(self, seed: int) -> dict[str, float]:
        """Held-out fields of the epoch's record (under a forked RNG seeded by ``seed``)."""
        ...


class SVIStep:
    """A VAE's step: the -ELBO and auxiliary terms (:class:`~.objective._Objective`, DDP-wrapped
    under torchrun), ``backward()``, the gradient-spike guard, Adam; with ``cuda_graph`` the whole
    step is captured on its first call (after a resume has restored the state) and replayed.

    Under torchrun with ``cuda_graph`` (or ``manual_allreduce=True``) the loss is not wrapped in
    DDP: rank 0's weights are broadcast now and a
    :class:`~causalscene.train.distributed.GradientAllReduce` averages the gradients after
    ``backward()`` — inside the graph when captured."""

    metrics: tuple[str, ...] = ("neg_elbo",)

    def __init__(
        self,
        model: TrainableVAE,
        config: TrainConfig,
        data: TrainData,
        device,
        world: int,
        manual_allreduce: bool | None = None,
    ):
        if config.cuda_graph:
            check_cuda_graph(device, world, data.partial, data.n_train, config.batch_size)
        self.model, self.config, self.data = model, config, data
        self.objective = _Objective(model, config, data.partial)
        manual = config.cuda_graph if manual_allreduce is None else manual_allreduce
        self.reduce: GradientAllReduce | None = None
        if world > 1 and manual:
            broadcast_from_rank0(model)
            self.reduce = GradientAllReduce(model.parameters(), world)
        self.loss_fn = (
            wrap_ddp(self.objective, device, world) if self.reduce is None else self.objective
        )
        self.optimizer = torch.optim.Adam(
            model.parameters(),
            lr=config.lr,
            betas=(config.beta1, config.beta2),
            capturable=config.cuda_graph,
        )
        self.spike_guard = GradientSpikeGuard(model.parameters(), config.spike_factor, device)
        self.graphed: GraphedStep | None = None

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        if self.config.cuda_graph:
            if self.graphed is None:
                self.graphed = self._capture()
            return self.graphed(idx)[1].reshape(1)
        return self._eager(idx).reshape(1)

    def _eager(self, idx: torch.Tensor) -> torch.Tensor:
        """Loss, ``backward()``, spike guard, Adam; returns the batch's -ELBO per image."""
        data = self.data
        try:
            loss, neg_elbo = self.loss_fn(
                data.train_images[idx],
                {k: v[idx] for k, v in data.train_labels.items()},
                None if data.train_log_p_labels is None else data.train_log_p_labels[idx],
            )
        except ValueError as exc:  # Pyro's validation of distribution arguments
            if "invalid values" not in str(exc):
                raise
            raise NonFiniteLoss(str(exc)) from exc
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.reduce is not None:
            self.reduce()
        self.spike_guard()
        self.optimizer.step()
        return neg_elbo

    def _capture(self) -> GraphedStep:
        data = self.data
        return GraphedStep(
            self.objective,
            self.optimizer,
            data.train_images,
            data.train_labels,
            data.train_log_p_labels,
            self.config.batch_size,
            before_step=self.spike_guard,
            state=[self.spike_guard.state],
            reduce=self.reduce,
        )

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optimizer": self.optimizer}

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "spike_guard": self.spike_guard.state.detach().cpu(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if "spike_guard" in state:  # checkpoints from before the guard have none
            self.spike_guard.state.copy_(state["spike_guard"].to(self.spike_guard.state.device))

    def epoch_fields(self, means: Sequence[float]) -> dict[str, float]:
        return {"train_elbo": -means[0], "heldout_elbo": float("nan")}

    def heldout(self, seed: int) -> dict[str, float]:
        data = self.data
        elbo = evaluate_elbo(self.model, data.hold_images, data.hold_labels, self.config, seed)
        return {"heldout_elbo": elbo}
