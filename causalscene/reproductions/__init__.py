"""``causalscene reproduce NAME``: the seeds' claims, each checked at a chosen scale.

One module per paper (:mod:`.tutorial`, :mod:`.bose2022`, :mod:`.besserve2020`,
:mod:`.besserve2021`), each listing its :class:`Reproduction` records in ``REPRODUCTIONS``; the
registry below names those modules explicitly. A reproduction's function receives a
:class:`Context` (output folder, seed, scale, device) and returns ``(measured, holds)`` where
``holds`` is computed from ``measured``, never set by hand. :func:`run` adds the contract fields
(name, claim, source, measured, holds, seed, scale, device, seconds) and writes ``result.json``.

Scales: ``tiny`` (seconds on a CPU; what the tests run — too small for the claim to mean
anything), ``small`` (CPU minutes; the default), ``full`` (paper size, meant for a GPU).
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path
from typing import Any

from causalscene.reproductions._base import SCALES, Context, Reproduction
from causalscene.utils import atomic_write_json, set_seed, to_jsonable

__all__ = ["SCALES", "Context", "Reproduction", "registry", "run"]

#: the per-paper modules, in the order ``reproduce`` lists them
MODULES = ("tutorial", "bose2022", "besserve2020", "besserve2021")


def registry() -> dict[str, Reproduction]:
    """Every reproduction by name (imports the per-paper modules named in :data:`MODULES`)."""
    found: dict[str, Reproduction] = {}
    for name in MODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        for entry in module.REPRODUCTIONS:
            if entry.name in found:
                raise RuntimeError(f"reproduction '{entry.name}' is declared twice")
            found[entry.name] = entry
    return found


def run(
    name: str, out: str | Path, seed: int = 0, scale: str = "small", device: str = "auto"
) -> dict[str, Any]:
    """Run reproduction ``name`` into ``out``; return (and write to ``out/result.json``) its record."""
    from causalscene.tensors import resolve_device

    known = registry()
    if name not in known:
        raise ValueError(f"unknown reproduction '{name}' (known: {', '.join(known)})")
    if scale not in SCALES:
        raise ValueError(f"--scale must be one of {', '.join(SCALES)}, got '{scale}'")
    entry = known[name]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    context = Context(out=out, seed=seed, scale=scale, device=str(resolve_device(device)))
    set_seed(seed)
    start = time.perf_counter()
    measured, holds = entry.fn(context)
    result = {
        "name": name,
        "claim": entry.claim,
        "source": entry.source,
        "measured": to_jsonable(measured),
        "holds": bool(holds),
        "seed": seed,
        "scale": scale,
        "device": context.device,
        "seconds": round(time.perf_counter() - start, 3),
    }
    atomic_write_json(out / "result.json", result)
    return result
