"""The ``Generator`` protocol: what every analysis (CAGE, hybrids, modules, SDR) takes.

A generator maps latents ``z: [B, D]`` to images ``x: [B, C, H, W]`` in [0, 1]::

    class MyGenerator(torch.nn.Module):
        latent_dim = 64
        def decode(self, z):                     # [B, 64] -> [B, 3, 64, 64] in [0, 1]
            return torch.sigmoid(self.net(z))
        def sample_latents(self, n, seed=None):  # draws from the prior p(z)
            g = torch.Generator().manual_seed(seed) if seed is not None else None
            return torch.randn(n, self.latent_dim, generator=g)
        def encode(self, x):                     # optional: posterior mean E[z | x]
            ...

``encode`` is optional (:class:`EncodingGenerator`); analyses that need latents of labelled
images use it when present. Layers for hooks are found by name (``named_modules``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

__all__ = [
    "Generator",
    "EncodingGenerator",
    "as_module",
    "check_generator",
    "default_output",
    "device_of",
    "has_encoder",
    "load_generator",
]

REQUIRED = ("decode", "sample_latents", "latent_dim")


@runtime_checkable
class Generator(Protocol):
    """``decode(z: [B, D]) -> x: [B, C, H, W]`` in [0, 1], ``sample_latents(n, seed)`` from the
    prior, ``latent_dim = D``."""

    latent_dim: int

    def decode(self, z: torch.Tensor) -> torch.Tensor: ...

    def sample_latents(self, n: int, seed: int | None = None) -> torch.Tensor: ...


@runtime_checkable
class EncodingGenerator(Generator, Protocol):
    """A :class:`Generator` with ``encode(x: [B, C, H, W]) -> z: [B, D]`` (posterior mean)."""

    def encode(self, x: torch.Tensor) -> torch.Tensor: ...


def has_encoder(generator: object) -> bool:
    return callable(getattr(generator, "encode", None))


def check_generator(generator: object, what: str = "generator") -> Generator:
    """``generator`` itself if it satisfies :class:`Generator`, else ``ValueError`` naming the
    first missing member."""
    for name in REQUIRED:
        member = getattr(generator, name, None)
        if member is None or (name != "latent_dim" and not callable(member)):
            raise ValueError(
                f"{what} ({type(generator).__name__}) has no {name}"
                f"{'' if name == 'latent_dim' else '()'}: see causalscene.generators.Generator"
            )
    if not isinstance(generator.latent_dim, int) or generator.latent_dim < 1:  # type: ignore[attr-defined]
        raise ValueError(f"{what} ({type(generator).__name__}): latent_dim must be an int >= 1")
    return generator  # type: ignore[return-value]


def as_module(generator: Generator, what: str = "generator") -> nn.Module:
    """``generator`` as the ``torch.nn.Module`` that forward hooks need (layers are found and
    hooked by name), else ``ValueError``. Hooked passes call the module: ``forward`` must be
    ``decode``."""
    if not isinstance(generator, nn.Module):
        raise ValueError(
            f"{what} ({type(generator).__name__}) is not a torch.nn.Module: hooks on its layers "
            "need one"
        )
    return generator


def device_of(generator: Generator) -> torch.device:
    """Where a generator module's parameters live (CPU when it has none)."""
    for param in as_module(generator).parameters():
        return param.device
    return torch.device("cpu")


def default_output(run: str, name: str) -> Path:
    """Where an analysis of ``run`` writes by default: ``RUN/name`` for a run folder, else
    ``modules_out/<run with ':' → '_'>/name`` (e.g. ``planted:3``)."""
    base = Path(run) if Path(run).is_dir() else Path("modules_out") / run.replace(":", "_")
    return base / name


def load_generator(run: str, device: str = "cpu") -> tuple[Generator, Any]:
    """``(generator, run config or None)`` for a training run folder or ``planted:K`` (the
    planted-modules toy generator of Besserve et al. 2020, Model 1)."""
    if run.startswith("planted"):
        from causalscene.modularity import PlantedModulesGenerator

        _, _, k = run.partition(":")
        try:
            k_int = int(k or 4)
        except ValueError:
            raise ValueError(f"'{run}': use planted:K with an integer K") from None
        if not 2 <= k_int <= 16:
            raise ValueError(f"'{run}': K must lie in [2, 16]")
        return PlantedModulesGenerator(k=k_int).to(device).eval(), None
    from causalscene.train import load_run

    model, config = load_run(run, device=device)
    view: torch.nn.Module = model.as_generator()  # type: ignore[operator]
    return check_generator(view.eval(), f"run {run}"), config
