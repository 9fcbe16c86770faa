"""Tensor helpers shared by the whole library: the one device resolver, the one seeded
generator, the one image conversion (uint8 dataset images → float ``[N, C, H, W]`` in [0, 1])."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = [
    "deterministic_cudnn",
    "resolve_device",
    "seeded_generator",
    "to_float_images",
    "to_uint8_images",
]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cpu``, ``cuda``, ``cuda:K`` as given.

    Raises ``ValueError`` for an unknown name or CUDA asked for on a machine without it."""
    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine")
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"--device must be auto, cpu or cuda[:K], got '{device}'")
    return torch.device(device)


def deterministic_cudnn() -> Any:
    """A context in which cuDNN uses only deterministic algorithms (no atomic adds, no timing-based
    picks): same inputs, same bits on the same GPU. A no-op on the CPU."""
    return torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True)


def seeded_generator(seed: int | None, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed`` (``None``: a fresh random seed)."""
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(int(seed))
    return generator


def to_float_images(images: Any, device: str | torch.device | None = None) -> torch.Tensor:
    """Images as a float tensor ``[N, C, H, W]`` in [0, 1].

    Accepts uint8 ``[N, H, W, C]`` (the dataset format) or ``[N, C, H, W]`` (numpy or torch;
    C in (1, 3)), or a float ``[N, C, H, W]`` in [0, 1] (a generator's output), returned as float32.
    Anything else raises ``ValueError``.
    """
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if not isinstance(images, torch.Tensor):
        raise ValueError(
            f"images must be a numpy array or torch tensor, got {type(images).__name__}"
        )
    if images.ndim != 4:
        raise ValueError(f"images must have 4 dimensions, got shape {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        if images.shape[-1] in (1, 3) and images.shape[1] not in (1, 3):
            images = images.permute(0, 3, 1, 2)
        elif images.shape[1] not in (1, 3):
            raise ValueError(
                f"uint8 images must be [N, H, W, C] or [N, C, H, W] with C in (1, 3), "
                f"got {tuple(images.shape)}"
            )
        out = images.float().div_(255.0)
    elif images.is_floating_point():
        if images.shape[1] not in (1, 3):
            raise ValueError(
                f"float images must be [N, C, H, W] with C in (1, 3), got {tuple(images.shape)}"
            )
        out = images.float()
    else:
        raise ValueError(f"images must be uint8 or float, got dtype {images.dtype}")
    return out.to(device) if device is not None else out


def to_uint8_images(images: torch.Tensor) -> np.ndarray:
    """A generator's float ``[N, C, H, W]`` images in [0, 1] as the dataset format, uint8
    ``[N, H, W, C]`` numpy (clamped to [0, 1], rounded): the inverse of :func:`to_float_images`."""
    return (images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
