"""The captured step (``TrainConfig.cuda_graph``): loss, ``backward()`` and ``optimizer.step()``
recorded once as a CUDA graph and replayed, which removes Pyro's per-step Python tracing; the
epoch's last incomplete batch is dropped (a graph has static shapes). Also ``channels_last``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import pyro
import torch
from torch import nn


def to_channels_last(model: nn.Module) -> nn.Module:
    """Put the conv layers' weights in channels_last memory format (in place).

    Only conv modules: ``Module.to(memory_format=...)`` on the whole model would also try to
    convert 5-D buffers (CPTs of nodes with four parents), which channels_last cannot hold.
    """
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            module.to(memory_format=torch.channels_last)
    return model


def check_cuda_graph(
    device: torch.device, world: int, partial: frozenset[str], n_train: int, batch_size: int
) -> None:
    """What a captured step needs beyond the config: one process on a CUDA device, complete
    labels (no score-function sites: no host sync) and at least one full batch."""
    if device.type != "cuda" or world > 1:
        raise ValueError("--cuda-graph needs one process on a CUDA device")
    if partial:
        raise ValueError(
            f"--cuda-graph needs complete labels (missing values in: {', '.join(sorted(partial))})"
        )
    if n_train < batch_size:
        raise ValueError(
            f"--cuda-graph drops incomplete batches: {n_train} training images < batch size "
            f"{batch_size}"
        )


class GraphedStep:
    """One training step — the loss, ``backward()`` and ``optimizer.step()`` — captured once as a
    CUDA graph and replayed (``TrainConfig.cuda_graph``).

    Pyro traces the model and guide in Python on every call; captured, that Python runs once and
    each step is one graph launch on the GPU (the random draws stay fresh: CUDA graphs advance the
    Philox offset of the default generator at every replay). The only input is the batch's index
    vector, copied into a static buffer; the gather from the resident dataset is inside the graph.

    Warm-up steps (needed before capture, they allocate the optimizer state and autograd's
    buffers) are undone: parameters, optimizer state, the CUDA RNG state and any ``state``
    tensors the step updates (e.g. ``before_step``'s) are restored, so the
    graphed run takes the same steps as its first eager step would from there. The optimizer must
    be built with ``capturable=True``.
    """

    def __init__(
        self,
        objective: Callable[..., tuple[torch.Tensor, torch.Tensor]],
        optimizer: torch.optim.Optimizer,
        images: torch.Tensor,
        labels: Mapping[str, torch.Tensor],
        log_p_labels: torch.Tensor | None,
        batch_size: int,
        warmup: int = 3,
        before_step: Callable[[], None] | None = None,
        state: Sequence[torch.Tensor] = (),
    ):
        device = images.device
        if device.type != "cuda":
            raise ValueError("cuda_graph needs a CUDA device")
        if not all(g.get("capturable", False) for g in optimizer.param_groups):
            raise ValueError("cuda_graph needs an optimizer built with capturable=True")
        self.batch_size = batch_size
        self.index = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.index.copy_(torch.arange(batch_size, device=device) % len(images))

        def step() -> tuple[torch.Tensor, torch.Tensor]:
            idx = self.index
            extra = () if log_p_labels is None else (log_p_labels[idx],)
            loss, neg_elbo = objective(images[idx], {k: v[idx] for k, v in labels.items()}, *extra)
            loss.backward()
            if before_step is not None:
                before_step()
            optimizer.step()
            return loss.detach(), neg_elbo

        params = [p for g in optimizer.param_groups for p in g["params"]]
        saved_params = [p.detach().clone() for p in params]
        saved_state = {
            p: {k: v.clone() if torch.is_tensor(v) else v for k, v in optimizer.state[p].items()}
            for p in params
            if p in optimizer.state
        }
        saved_rng = torch.cuda.get_rng_state(device)
        saved_extra = [(t, t.clone()) for t in state]
        # argument validation reads tensors on the host: impossible inside a graph
        with pyro.validation_enabled(False):
            self._capture(
                step, optimizer, params, saved_params, saved_state, saved_extra, saved_rng, warmup
            )

    def _capture(
        self, step, optimizer, params, saved_params, saved_state, saved_extra, saved_rng, warmup
    ):
        device = self.index.device
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(warmup):
                optimizer.zero_grad(set_to_none=True)
                step()
        torch.cuda.current_stream(device).wait_stream(side)
        with torch.no_grad():  # undo the warm-up
            for p, value in zip(params, saved_params):
                p.copy_(value)
            for p in params:
                for k, v in optimizer.state[p].items():
                    if not torch.is_tensor(v):
                        continue
                    before = saved_state.get(p, {}).get(k)
                    v.copy_(before) if before is not None else v.zero_()
            for tensor, before in saved_extra:
                tensor.copy_(before)
        torch.cuda.set_rng_state(saved_rng, device)
        optimizer.zero_grad(set_to_none=True)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.loss, self.neg_elbo = step()

    def __call__(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run one step on the batch ``idx`` (``[batch_size]`` on the device); returns the
        (static) loss and -ELBO tensors, overwritten by the next call."""
        self.index.copy_(idx)
        self.graph.replay()
        return self.loss, self.neg_elbo
