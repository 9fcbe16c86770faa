"""Range checks of numeric options and checks of output paths, run before any work starts.

:class:`Range` states what a number may be (integer or finite real, bounds); :func:`check_numbers`
applies a table of them to an object's attributes (a :class:`~causalscene.train.TrainConfig`, a
verb's parsed flags) and raises one ``ValueError`` line naming the option. :data:`TRAIN_RANGES`
is the table of the training options. :func:`check_out_file` and :func:`check_out_folder` refuse
an output path that cannot be written as asked (a folder where a file is meant, a file above it,
a device/FIFO/socket, no write permission) before a verb computes anything.

No torch here: the CLI's parser and ``TrainConfig`` import this module.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "Range",
    "TRAIN_RANGES",
    "VERB_RANGES",
    "SEED",
    "check_numbers",
    "check_out_file",
    "check_out_folder",
]


@dataclass(frozen=True)
class Range:
    """``low <= x <= high`` (``<`` where ``open_low``/``open_high``); ``integer``: an int (not a
    bool); otherwise a finite real. ``optional``: None is allowed too."""

    low: float = -math.inf
    high: float = math.inf
    integer: bool = False
    open_low: bool = False
    open_high: bool = False
    optional: bool = False

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a finite number"
        left = "(" if self.open_low else "["
        right = ")" if self.open_high else "]"
        if self.high == math.inf:
            return f"{kind} {'>' if self.open_low else '>='} {_num(self.low)}"
        return f"{kind} in {left}{_num(self.low)}, {_num(self.high)}{right}"

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.optional
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if not math.isfinite(value):
            return False
        above = value > self.low if self.open_low else value >= self.low
        below = value < self.high if self.open_high else value <= self.high
        return above and below


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


#: the numeric fields of :class:`~causalscene.train.TrainConfig` and what each may be
TRAIN_RANGES: dict[str, Range] = {
    "epochs": Range(0, integer=True),
    "batch_size": Range(1, integer=True),
    "lr": Range(0, open_low=True),
    "latent_dim": Range(1, integer=True),
    "base_channels": Range(1, integer=True),
    "seed": Range(0, 2**63 - 1, integer=True),
    "sdr_weight": Range(0),
    "aux_weight": Range(0),
    "consistency_weight": Range(0),
    "consistency_fraction": Range(0, 1, open_low=True),
    "holdout_fraction": Range(0, 1, open_high=True),
    "max_images": Range(2, integer=True, optional=True),
    "checkpoint_every": Range(1, integer=True),
    "log_every": Range(1, integer=True),
    "eval_every": Range(1, integer=True),
    "beta1": Range(0, 1, open_high=True),
    "beta2": Range(0, 1, open_high=True),
    "save_every": Range(1, integer=True),
    "grid_size": Range(1, integer=True),
    "spike_factor": Range(0),
}


#: ``--seed`` of every verb
SEED = Range(0, 2**63 - 1, integer=True)
_COUNT = Range(1, integer=True)
_OPTIONAL_COUNT = Range(1, integer=True, optional=True)
#: the numeric flags of every verb, checked before any work (``train``'s: TRAIN_RANGES)
VERB_RANGES: dict[str, dict[str, Range]] = {
    "generate": {"n": _COUNT, "seed": SEED},
    "counterfactual": {"index": Range(0, integer=True, optional=True), "seed": SEED},
    "infer": {"seed": SEED},
    "evaluate": {
        "n_per_state": _COUNT,
        "n_counterfactual": _COUNT,
        "probe_epochs": _COUNT,
        "probe_images": _COUNT,
        "probe_batch_size": _COUNT,
        "probe_patience": Range(0, integer=True),
        "probe_tolerance": Range(0, 1),
        "seed": SEED,
    },
    "procgen": {
        "n": _COUNT,
        "size": Range(1, integer=True, optional=True),
        "workers": Range(1, integer=True, optional=True),
        "shard_size": _COUNT,
        "seed": SEED,
    },
    # flags left unset take the model's default (TrainConfig.for_model): None is allowed there
    "train": {
        **TRAIN_RANGES,
        "epochs": _COUNT,
        **{
            flag: dataclasses.replace(TRAIN_RANGES[flag], optional=True)
            for flag in ("lr", "beta1", "beta2", "latent_dim")
        },
    },
    "dag": {"seed": SEED},
    # dag.MAX_SAMPLES (not imported: the CLI's parser imports this module; a test compares them)
    "query": {"num_samples": Range(1, 10_000_000, integer=True), "seed": SEED},
    "cage": {
        "alpha": Range(0, open_low=True),
        "permutations": _COUNT,
        "num_latents": Range(2, integer=True),
        "min_accuracy": Range(0, 1),
        "max_images": _OPTIONAL_COUNT,
        "probe_epochs": _COUNT,
        "invert_steps": _OPTIONAL_COUNT,
        "invert_lr": Range(0, open_low=True, optional=True),
        "invert_prior": Range(0, optional=True),
        "invert_restarts": _OPTIONAL_COUNT,
        "seed": SEED,
    },
    "modules": {
        "k": Range(2, integer=True, optional=True),
        "pairs": _COUNT,
        "groups": _COUNT,
        "splits": _COUNT,
        "hybrids": _COUNT,
        "batch_size": _OPTIONAL_COUNT,
        "seed": SEED,
    },
    "sdr": {"samples": _COUNT, "seed": SEED},
    # data import and data import-celeba (only the latter has --max-images)
    "data": {
        "size": Range(4, integer=True),
        "crop": _OPTIONAL_COUNT,
        "shard_size": _COUNT,
        "max_pixels": _COUNT,
        "max_images": _OPTIONAL_COUNT,
        "seed": SEED,
    },
    "reproduce": {"seed": SEED},
    "demo": {"epochs": _OPTIONAL_COUNT, "seed": SEED},
    "report": {"seed": SEED},
}


def check_numbers(obj: Any, ranges: Mapping[str, Range], flags: bool = False) -> None:
    """Raise ``ValueError`` for the first attribute of ``obj`` named in ``ranges`` outside its
    range; ``flags``: name it as a command-line flag (``--max-images``), else as a field."""
    for name, allowed in ranges.items():
        if not hasattr(obj, name):
            continue
        value = getattr(obj, name)
        values = value if isinstance(value, list) else [value]
        for item in values:
            if not allowed.accepts(item):
                label = "--" + name.replace("_", "-") if flags else name
                raise ValueError(f"{label} must be {allowed.describe()}, got {item!r}")


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def _check_above(path: Path, flag: str) -> None:
    """Every existing folder above ``path`` is a folder, and the nearest one is writable."""
    parent = _nearest_existing(path.parent)
    if not parent.is_dir():
        raise ValueError(f"{flag} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path}: no permission to write in {parent}")


def check_out_file(path: str | Path, flag: str = "--out") -> Path:
    """``path`` can be written as a file: not a folder, device, FIFO or socket, no file above it,
    a writable folder to hold it (a symlink is written through to its target)."""
    from causalscene.safeio import output_target

    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{flag} {path}: is a folder (a file path is expected)")
    try:
        target = output_target(path)
    except ValueError as exc:
        raise ValueError(f"{flag} {exc}") from None
    _check_above(target, flag)
    if target.exists() and not os.access(target, os.W_OK):
        raise ValueError(f"{flag} {path}: no permission to write it")
    return path


def check_out_folder(path: str | Path, flag: str = "--out") -> Path:
    """``path`` can be (or already is) a writable folder: not a file, no file above it."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {path}: is a file (a folder is expected)")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise ValueError(f"{flag} {path}: no permission to write in it")
        return path
    _check_above(path, flag)
    return path
