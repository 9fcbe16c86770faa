"""The captured step (``TrainConfig.cuda_graph``): loss, ``backward()`` and ``optimizer.step()``
recorded once as a CUDA graph and replayed, which removes Pyro's per-step Python tracing; the
epoch's last incomplete batch is dropped (a graph has static shapes). Under torchrun each process
captures its own step, with the gradients' all-reduce inside the graph
(:class:`~causalscene.train.distributed.GradientAllReduce`). Also ``channels_last``.
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


def compile_networks(model: nn.Module) -> list[str]:
    """``torch.compile`` each child module of ``model`` that holds a convolution, in place
    (``Module.compile``: parameter names, state dicts and checkpoints stay as they are); returns
    their names. Static shapes: each batch shape compiles once, on its first call.

    Inductor's deterministic mode: it picks its reduction kernels' block sizes by heuristics, not
    by timing them on the device, so two fresh compiles give the same numbers (timed picks can
    differ between processes: two cold-compiled GPU budgets with one seed ended at different
    ELBOs, 22,515.8 and 22,623.0)."""
    import torch._inductor.config as inductor

    options = {"deterministic": True} if hasattr(inductor, "deterministic") else None
    names = []
    for name, child in model.named_children():
        if any(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) for m in child.modules()):
            child.compile(dynamic=False, options=options)
            names.append(name)
    return names


def check_cuda_graph(
    device: torch.device, world: int, partial: frozenset[str], n_train: int, batch_size: int
) -> None:
    """What a captured step needs beyond the config: a CUDA device (one per process), complete
    labels (no score-function sites: no host sync) and at least one full batch per process."""
    if device.type != "cuda":
        raise ValueError("--cuda-graph needs a CUDA device")
    if partial:
        raise ValueError(
            f"--cuda-graph needs complete labels (missing values in: {', '.join(sorted(partial))})"
        )
    if n_train // world < batch_size:
        each = f" ({world} processes: {n_train // world} each)" if world > 1 else ""
        raise ValueError(
            f"--cuda-graph drops incomplete batches: {n_train} training images{each} < batch "
            f"size {batch_size}"
        )


def make_step(
    objective: Callable[..., tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: Mapping[str, torch.Tensor],
    log_p_labels: torch.Tensor | None,
    index: torch.Tensor,
    reduce: Callable[[], None] | None = None,
    before_step: Callable[[], None] | None = None,
) -> Callable[[], tuple[torch.Tensor, torch.Tensor]]:
    """The step :class:`GraphedStep` captures, on the batch ``images[index]``: the loss,
    ``backward()``, ``reduce`` (the gradients' all-reduce under torchrun), ``before_step``
    (the spike guard), ``optimizer.step()``; returns ``(loss, -ELBO)`` detached. Gradients must
    be zero (or None) before each call."""

    def step() -> tuple[torch.Tensor, torch.Tensor]:
        extra = () if log_p_labels is None else (log_p_labels[index],)
        loss, neg_elbo = objective(images[index], {k: v[index] for k, v in labels.items()}, *extra)
        loss.backward()
        if reduce is not None:
            reduce()
        if before_step is not None:
            before_step()
        optimizer.step()
        return loss.detach(), neg_elbo

    return step


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

    ``reduce`` (several processes): run after ``backward()``, captured with the rest, e.g. a
    :class:`~causalscene.train.distributed.GradientAllReduce`. The warm-up runs it too (NCCL's
    communicator must exist before a capture) and every rank must build its ``GraphedStep`` at the
    same point and replay it equally often.
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
        reduce: Callable[[], None] | None = None,
    ):
        device = images.device
        if device.type != "cuda":
            raise ValueError("cuda_graph needs a CUDA device")
        if not all(g.get("capturable", False) for g in optimizer.param_groups):
            raise ValueError("cuda_graph needs an optimizer built with capturable=True")
        self.batch_size = batch_size
        # with NCCL in the step, CUDA calls of other threads (NCCL's watchdog polling its events)
        # must not invalidate the capture: only this thread's unsafe calls are errors
        self.capture_mode = "global" if reduce is None else "thread_local"
        self.index = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.index.copy_(torch.arange(batch_size, device=device) % len(images))
        step = make_step(
            objective, optimizer, images, labels, log_p_labels, self.index, reduce, before_step
        )

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
        # no work of the warm-up left pending (NCCL's watchdog polls its events) at the capture
        torch.cuda.synchronize(device)
        self.graph = torch.cuda.CUDAGraph()
        # captured on the warm-up's stream: autograd's gradient accumulators, made during the
        # warm-up, then run on the stream they were made on (no cross-stream synchronisation)
        with torch.cuda.graph(self.graph, stream=side, capture_error_mode=self.capture_mode):
            self.loss, self.neg_elbo = step()

    def __call__(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run one step on the batch ``idx`` (``[batch_size]`` on the device); returns the
        (static) loss and -ELBO tensors, overwritten by the next call."""
        self.index.copy_(idx)
        self.graph.replay()
        return self.loss, self.neg_elbo
