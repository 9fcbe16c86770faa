"""Multi-GPU: launched by ``torchrun``, :func:`~causalscene.train.fit` joins the process group
(NCCL on CUDA, gloo on CPU), wraps the loss in ``DistributedDataParallel`` and gives each rank the
slice ``order[rank::world]`` of the epoch's permutation (``batch_size`` is per process). Rank 0
writes the run folder.

A captured step (``cuda_graph``) cannot hold DDP's reducer (autograd hooks, host-side bucket
bookkeeping): there the loss is not wrapped, rank 0's parameters are broadcast once
(:func:`broadcast_from_rank0`) and :class:`GradientAllReduce` averages the gradients between
``backward()`` and the optimiser, inside the graph. :func:`check_ranks_agree` ends a run by
checking that every rank holds rank 0's weights."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

import torch
from torch import nn

log = logging.getLogger(__name__)


def _dist_info() -> tuple[int, int, int]:
    """``(world size, rank, local rank)`` from torchrun's environment (1, 0, 0 without it)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return world, rank, local


def join_process_group(device: torch.device) -> tuple[torch.device, int, int]:
    """``(device, world, rank)``: under torchrun, this process's GPU (``cuda:LOCAL_RANK``) and the
    initialised process group; otherwise ``device`` unchanged, world 1, rank 0."""
    world, rank, local_rank = _dist_info()
    if world > 1:
        import torch.distributed as dist

        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device, world, rank


def leave_process_group() -> None:
    """Destroy the process group this process joined (nothing without one). A process that exits
    with gloo's threads still running can abort ("terminate called without an active
    exception"), which torchrun reports as a failed rank."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap_ddp(objective: nn.Module, device: torch.device, world: int) -> nn.Module:
    """``objective`` in ``DistributedDataParallel`` when there are several processes (it
    broadcasts rank 0's parameters now and averages gradients in ``backward``)."""
    if world <= 1:
        return objective
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        objective, device_ids=[device.index] if device.type == "cuda" else None
    )


def broadcast_from_rank0(module: nn.Module) -> None:
    """Rank 0's parameters and buffers on every rank (what DDP does when it wraps a module)."""
    import torch.distributed as dist

    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor, src=0)


class GradientAllReduce:
    """Average the gradients of ``params`` over the ``world`` processes: one flat buffer
    (allocated once), the gradients copied in, one ``all_reduce`` (sum), ``/ world``, copied back.

    No host sync and no branch on tensor values, so it can be captured in a CUDA graph (NCCL
    collectives can; one call before the capture creates NCCL's communicator). A parameter
    without a gradient adds zeros and keeps ``grad`` None (the same on every rank: which
    parameters get gradients depends on the code, not the data). Copying in and out, rather than
    gradients as views of the buffer, leaves ``zero_grad(set_to_none=True)`` and the graph's own
    allocation of the gradients as they are; the copies cost ~4 bytes x 4 per parameter.
    """

    def __init__(self, params: Iterable[nn.Parameter], world: int):
        self.params = [p for p in params if p.requires_grad]
        if not self.params:
            raise ValueError("GradientAllReduce needs at least one parameter that requires grad")
        kinds = {(p.dtype, p.device) for p in self.params}
        if len(kinds) > 1:
            raise ValueError(
                f"GradientAllReduce needs one dtype and device, got {sorted(map(str, kinds))}"
            )
        dtype, device = kinds.pop()
        self.world = world
        sizes = [p.numel() for p in self.params]
        self.buffer = torch.zeros(sum(sizes), dtype=dtype, device=device)
        self.views = [v.view(p.shape) for v, p in zip(self.buffer.split(sizes), self.params)]

    def __call__(self) -> None:
        import torch.distributed as dist

        with torch.no_grad():
            pairs = [(v, p.grad) for v, p in zip(self.views, self.params) if p.grad is not None]
            views = [v for v, _ in pairs]
            grads = [g for _, g in pairs]
            if len(grads) < len(self.params):
                self.buffer.zero_()
            if grads:
                torch._foreach_copy_(views, grads)
            dist.all_reduce(self.buffer)
            self.buffer.div_(self.world)
            if grads:
                torch._foreach_copy_(grads, views)


def check_ranks_agree(module: nn.Module) -> None:
    """Raise ``RuntimeError`` on every rank unless all ranks hold rank 0's parameters and buffers
    bit for bit (two collectives: a broadcast of the flat weights, a max of the differences)."""
    import torch.distributed as dist

    with torch.no_grad():
        flat = torch.cat([t.detach().reshape(-1).double() for t in module.state_dict().values()])
        reference = flat.clone()
        dist.broadcast(reference, src=0)
        differ = (flat != reference) & ~(flat.isnan() & reference.isnan())
        gap = (flat - reference).abs().nan_to_num(nan=float("inf"))
        both = torch.stack([differ.sum().double(), torch.where(differ, gap, 0.0).max()])
        dist.all_reduce(both, op=dist.ReduceOp.MAX)
    if both[0] > 0:
        raise RuntimeError(
            f"the ranks' weights diverged: {int(both[0])} of {len(flat)} values differ from rank 0's "
            f"(largest difference {float(both[1]):.3g})"
        )
    log.info(
        "rank %d of %d: all %d weights equal rank 0's (sum %.17g)",
        dist.get_rank(),
        dist.get_world_size(),
        len(flat),
        float(flat.sum()),
    )


def epoch_order(n_train: int, seed: int, epoch: int, world: int, rank: int) -> torch.Tensor:
    """This rank's training indices for ``epoch``: a permutation seeded by (seed, epoch) — so a
    resumed run draws the same batches — sliced ``[rank::world]`` after dropping the remainder."""
    order = torch.randperm(
        n_train, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    )
    if world > 1:
        order = order[: (n_train // world) * world][rank::world]
    return order
