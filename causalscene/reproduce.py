"""``causalscene reproduce NAME``: each paper claim, checked at a CPU-friendly size.

Reproductions register themselves with :func:`reproduction`; the function receives the output
folder, the seed and the scale (``"small"`` or ``"full"``) and returns ``(measured, holds)`` where
``holds`` is computed from ``measured`` — never set by hand. :func:`run` adds the contract fields
(DESIGN.md): name, claim, source, measured, holds, seed, seconds, and writes ``result.json``.
"""

from __future__ import annotations

import importlib
import pkgutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from causalscene.utils import atomic_write_json, set_seed, to_jsonable

ReproduceFn = Callable[[Path, int, str], tuple[dict[str, Any], bool]]


@dataclass(frozen=True)
class Reproduction:
    name: str
    claim: str
    source: str
    fn: ReproduceFn


_REGISTRY: dict[str, Reproduction] = {}


def reproduction(name: str, claim: str, source: str) -> Callable[[ReproduceFn], ReproduceFn]:
    """Decorator registering a reproduction under ``name``."""

    def wrap(fn: ReproduceFn) -> ReproduceFn:
        _REGISTRY[name] = Reproduction(name, claim, source, fn)
        return fn

    return wrap


def registry() -> dict[str, Reproduction]:
    """All reproductions (importing every command module, where they are declared)."""
    import causalscene.commands as commands_pkg

    for info in pkgutil.iter_modules(commands_pkg.__path__):
        importlib.import_module(f"{commands_pkg.__name__}.{info.name}")
    return dict(sorted(_REGISTRY.items()))


def run(name: str, out: str | Path, seed: int = 0, scale: str = "small") -> dict[str, Any]:
    known = registry()
    if name not in known:
        raise ValueError(f"unknown reproduction '{name}' (known: {', '.join(known)})")
    if scale not in ("small", "full"):
        raise ValueError(f"--scale must be 'small' or 'full', got '{scale}'")
    entry = known[name]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    set_seed(seed)
    start = time.perf_counter()
    measured, holds = entry.fn(out, seed, scale)
    result = {
        "name": name,
        "claim": entry.claim,
        "source": entry.source,
        "measured": to_jsonable(measured),
        "holds": bool(holds),
        "seed": seed,
        "scale": scale,
        "seconds": round(time.perf_counter() - start, 3),
    }
    atomic_write_json(out / "result.json", result)
    return result
