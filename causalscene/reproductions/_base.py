"""What every reproduction shares: its record, its run context and the scale presets."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

SCALES = ("tiny", "small", "full")
T = TypeVar("T")


@dataclass(frozen=True)
class Context:
    """Where and how a reproduction runs."""

    out: Path  #: its output folder (exists)
    seed: int
    scale: str  #: one of :data:`SCALES`
    device: str  #: a resolved torch device name (``cpu``, ``cuda``, ``cuda:K``)

    def pick(self, tiny: T, small: T, full: T) -> T:
        """The preset value for this run's scale."""
        return {"tiny": tiny, "small": small, "full": full}[self.scale]


Measured = tuple[dict[str, Any], bool]


@dataclass(frozen=True)
class Reproduction:
    """One paper claim: ``fn(context) -> (measured, holds)``, ``holds`` computed from ``measured``."""

    name: str
    claim: str
    source: str
    fn: Callable[[Context], Measured]
