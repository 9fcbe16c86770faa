"""Multi-GPU: launched by ``torchrun``, :func:`~causalscene.train.fit` joins the process group
(NCCL on CUDA, gloo on CPU), wraps the loss in ``DistributedDataParallel`` and gives each rank the
slice ``order[rank::world]`` of the epoch's permutation (``batch_size`` is per process). Rank 0
writes the run folder."""

from __future__ import annotations

import os

import torch
from torch import nn


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


def wrap_ddp(objective: nn.Module, device: torch.device, world: int) -> nn.Module:
    """``objective`` in ``DistributedDataParallel`` when there are several processes (it
    broadcasts rank 0's parameters now and averages gradients in ``backward``)."""
    if world <= 1:
        return objective
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        objective, device_ids=[device.index] if device.type == "cuda" else None
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
