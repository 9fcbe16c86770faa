"""Small shared helpers: atomic writes, strict JSON, seeding, run folders, ``k=v`` parsing."""

from __future__ import annotations

import io
import json
import math
import random
import sys
from collections.abc import Iterable
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_torch_save",
    "atomic_savefig",
    "set_seed",
    "parse_assignments",
    "write_run_info",
    "package_version",
    "to_jsonable",
    "dumps",
]


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder, then rename.

    A crash leaves either the old file or the new one, never a half-written file; a device, FIFO
    or folder at ``path`` is refused, a symlink written through (:func:`causalscene.safeio.atomic_write`).
    """
    from causalscene.safeio import atomic_write

    return atomic_write(path, data)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def to_jsonable(value: Any) -> Any:
    """Numpy/torch scalars and arrays, dataclasses and paths to plain JSON types.

    Strict JSON has no NaN or Infinity: a non-finite float (Python, numpy or torch) becomes
    ``None`` (``null``), so every file and every line we write parses anywhere."""
    if is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(asdict(value))
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if hasattr(value, "detach") and hasattr(value, "tolist"):  # torch tensor
        return to_jsonable(value.detach().cpu().tolist())
    return value


def dumps(obj: Any, indent: int | None = None) -> str:
    """``obj`` as strict JSON text (:func:`to_jsonable`, then ``allow_nan=False``, so a value that
    slips past the conversion raises instead of writing ``NaN``). Every JSON the CLI prints and
    every JSON file the library writes goes through here."""
    return json.dumps(to_jsonable(obj), indent=indent, allow_nan=False)


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = 2) -> Path:
    """``obj`` as strict JSON (:func:`dumps`) at ``path``, atomically."""
    return atomic_write_text(path, dumps(obj, indent=indent) + "\n")


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to memory, then an atomic write (checkpoints are never half-written), with
    its SHA-256 in ``path.sha256`` (:func:`causalscene.safeio.write_with_sidecar`)."""
    import torch

    from causalscene.safeio import write_with_sidecar

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return write_with_sidecar(path, buffer.getvalue())


def atomic_savefig(fig: Any, path: str | Path, **kwargs: Any) -> Path:
    """Save a matplotlib figure as PNG atomically, then close it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", **{"dpi": 120, "bbox_inches": "tight", **kwargs})
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def set_seed(seed: int) -> np.random.Generator:
    """Seed Python, numpy, torch and Pyro; return a numpy Generator for explicit use."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        import torch

        torch.manual_seed(seed)
        import pyro

        pyro.set_rng_seed(seed)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return np.random.default_rng(seed)


def parse_assignments(items: Iterable[str] | None, what: str = "assignment") -> dict[str, str]:
    """``["a=x", "b=y"]`` → ``{"a": "x", "b": "y"}``; a malformed item raises ``ValueError``."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise ValueError(f"{what} '{item}' is not of the form name=state")
        if key in out:
            raise ValueError(f"{what} names '{key}' twice")
        out[key] = value
    return out


def package_version() -> str:
    from causalscene import __version__

    return __version__


def write_run_info(folder: str | Path, config: Any, seed: int | None = None) -> None:
    """Write ``config.json`` (the config, the command line, seed, package version) into a run folder."""
    folder = Path(folder)
    info = {
        "config": to_jsonable(config),
        "command": sys.argv,
        "seed": seed,
        "version": package_version(),
    }
    atomic_write_json(folder / "config.json", info)
