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
images use it when present, else invert ``decode`` (:mod:`causalscene.inversion`). Layers for
hooks are found by name (``named_modules``); hooked passes call the module, so ``forward`` must
be ``decode``.

:func:`load_generator` reads a generator from a spec (the CLI's ``RUN`` or ``--generator``):

- a training run folder (``causalscene train --out``);
- ``planted:K``, the planted-modules toy generator of Besserve et al. 2020;
- ``package.module:factory`` or ``path/to/file.py:factory``: the module is imported and
  ``factory()`` (no arguments) returns the generator, an ``nn.Module``;
- ``FILE.pt``: a TorchScript module (``torch.jit.save``) exposing ``decode`` and
  ``sample_latents`` (``@torch.jit.export``) and ``latent_dim``; ``encode`` optional.
  TorchScript modules take no Python forward hooks, so ``modules`` and ``sdr`` refuse them
  (:func:`as_module`); ``cage`` works.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
import warnings
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
    "is_torchscript",
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
            hint = ""
            if is_torchscript(generator) and name != "latent_dim":
                hint = " (mark it @torch.jit.export before scripting)"
            raise ValueError(
                f"{what} ({_type_name(generator)}) has no {name}"
                f"{'' if name == 'latent_dim' else '()'}{hint}: see causalscene.generators.Generator"
            )
    if not isinstance(generator.latent_dim, int) or generator.latent_dim < 1:  # type: ignore[attr-defined]
        raise ValueError(f"{what} ({_type_name(generator)}): latent_dim must be an int >= 1")
    return generator  # type: ignore[return-value]


def is_torchscript(generator: object) -> bool:
    return isinstance(generator, torch.jit.ScriptModule)


def _type_name(generator: object) -> str:
    """The class name; a TorchScript module's original one (``RecursiveScriptModule`` says
    nothing)."""
    if is_torchscript(generator):
        return f"TorchScript {getattr(generator, 'original_name', 'module')}"
    return type(generator).__name__


def as_module(generator: Generator, what: str = "generator") -> nn.Module:
    """``generator`` as the ``torch.nn.Module`` that forward hooks need (layers are found and
    hooked by name), else ``ValueError``. Hooked passes call the module: ``forward`` must be
    ``decode``. TorchScript modules are refused: they take no Python forward hooks."""
    if is_torchscript(generator):
        raise ValueError(
            f"{what} is a TorchScript module, which takes no Python forward hooks, and this "
            "analysis hooks its layers: pass --generator module:factory (the nn.Module) instead"
        )
    if not isinstance(generator, nn.Module):
        raise ValueError(
            f"{what} ({type(generator).__name__}) is not a torch.nn.Module: hooks on its layers "
            "need one"
        )
    return generator


def device_of(generator: Generator) -> torch.device:
    """Where a generator module's parameters live (CPU when it has none)."""
    parameters = getattr(generator, "parameters", None)
    first = next(iter(parameters()), None) if callable(parameters) else None
    return first.device if first is not None else torch.device("cpu")


def default_output(spec: str, name: str) -> Path:
    """Where an analysis of ``spec`` writes by default: ``RUN/name`` for a run folder, else
    ``modules_out/<spec with every run of other characters than [A-Za-z0-9._-] → '_'>/name``
    (e.g. ``modules_out/planted_3``, ``modules_out/my_gen.py_factory``)."""
    if Path(spec).is_dir():
        return Path(spec) / name
    return Path("modules_out") / (re.sub(r"[^A-Za-z0-9._-]+", "_", spec).strip("_") or "_") / name


def load_generator(spec: str, device: str = "cpu") -> tuple[Generator, Any]:
    """``(generator, run config or None)`` for ``spec``: a training run folder, ``planted:K``,
    ``module:factory`` / ``file.py:factory`` or a TorchScript ``FILE.pt`` (module docstring).
    The generator is on ``device``, in eval mode, and checked (:func:`check_generator`)."""
    path = Path(spec)
    if path.is_dir():
        return _load_run(spec, device)
    if spec == "planted" or spec.startswith("planted:"):
        return _load_planted(spec, device), None
    if path.suffix in (".pt", ".pth", ".ts") and ":" not in path.name:
        generator = _load_torchscript(path, device)
    elif ":" in spec:
        generator = _load_factory(spec, device)
    else:
        return _load_run(spec, device)  # its own "not found" error
    return check_generator(generator, f"--generator {spec}"), None


def _load_run(run: str, device: str) -> tuple[Generator, Any]:
    from causalscene.train import load_run

    model, config = load_run(run, device=device)
    view: torch.nn.Module = model.as_generator()  # type: ignore[operator]
    return check_generator(view.eval(), f"run {run}"), config


def _load_planted(spec: str, device: str) -> Generator:
    """The planted-modules toy generator of Besserve et al. 2020, Model 1 (``planted:K``)."""
    from causalscene.modularity import PlantedModulesGenerator

    _, _, k = spec.partition(":")
    try:
        k_int = int(k or 4)
    except ValueError:
        raise ValueError(f"'{spec}': use planted:K with an integer K") from None
    if not 2 <= k_int <= 16:
        raise ValueError(f"'{spec}': K must lie in [2, 16]")
    return PlantedModulesGenerator(k=k_int).to(device).eval()


def _load_torchscript(path: Path, device: str) -> object:
    """``torch.jit.load(path)`` onto ``device``; ``ValueError`` for a missing or foreign file."""
    if not path.is_file():
        raise FileNotFoundError(f"--generator {path}: no such file")
    try:
        with warnings.catch_warnings():  # torch >= 2.9 calls TorchScript deprecated
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(str(path), map_location=device)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"--generator {path}: not a TorchScript file (torch.jit.save): {first}"
        ) from None
    return module.eval()


def _load_factory(spec: str, device: str) -> object:
    """``factory()`` of ``module:factory`` (a dotted module name or a ``.py`` file), as a
    module on ``device`` in eval mode."""
    target, _, name = spec.rpartition(":")
    if not target or not name.isidentifier():
        raise ValueError(f"--generator {spec}: use module:factory, file.py:factory or FILE.pt")
    module = _import_target(target, spec)
    factory = getattr(module, name, None)
    if not callable(factory):
        raise ValueError(f"--generator {spec}: {target} has no callable '{name}'")
    generator = factory()
    if isinstance(generator, nn.Module):
        generator = generator.to(device).eval()
    return generator


def _import_target(target: str, spec: str) -> Any:
    """The module ``target`` names: a ``.py`` file (imported under its stem) or a dotted name."""
    if target.endswith(".py") or "/" in target or "\\" in target:
        path = Path(target)
        if not path.is_file():
            raise FileNotFoundError(f"--generator {spec}: no such file {target}")
        module_name = f"_causalscene_generator_{re.sub(r'[^A-Za-z0-9_]', '_', path.stem)}"
        loader_spec = importlib.util.spec_from_file_location(module_name, path)
        if loader_spec is None or loader_spec.loader is None:
            raise ValueError(f"--generator {spec}: cannot import {target}")
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[module_name] = module  # dataclasses and pickling look modules up here
        try:
            loader_spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[module_name]
            raise
        return module
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        raise ValueError(f"--generator {spec}: cannot import {target} ({exc})") from None
