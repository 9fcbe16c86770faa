"""Schemas of the files a run folder and a dataset folder hold, checked when they are read.

- :func:`read_json` — a JSON file as a dict, or one ``ValueError`` line naming the file.
- :func:`check_config_json` — ``config.json``: ``{"config": {TrainConfig field: value}, "command",
  "seed", "version"}``; every field of the right type (from the dataclass's annotations), no
  unknown key, numbers in range (``TrainConfig.check``).
- :func:`check_model_json` — ``model.json``: ``kind`` and the constructor's arguments of that kind
  (:data:`MODEL_KEYS`), typed and in range.
- :func:`check_dag_json` — ``dag.json`` through ``CausalDAG.from_dict`` (any fault a ``ValueError``).
- :func:`check_meta` — a dataset's ``meta.json``: ``shards`` (plain file names, counts, SHA-256),
  ``labels``, ``data``, ``extras``, ``count``.
- :func:`check_model_payload`, :func:`check_resume_payload` — a checkpoint's dict against the model
  built from ``model.json``: same names, shapes and dtypes, every tensor finite (named when not),
  and for ``--resume`` the optimizer, RNG and position.

Every error names the file and the field: ``RUN/model.json: field 'latent_dim' must be ...``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from causalscene.options import Range

__all__ = [
    "MODEL_KEYS",
    "read_json",
    "check_config_json",
    "check_model_json",
    "check_dag_json",
    "check_meta",
    "check_model_payload",
    "check_resume_payload",
    "saved_config",
]

_INT, _POS = Range(1, integer=True), Range(0, open_low=True)
#: per model kind, its ``model.json`` keys and what each may be (a Range, or the allowed values)
MODEL_KEYS: dict[str, dict[str, Any]] = {
    "plain": {
        "image_size": (8, 16, 32, 64, 128, 256, 512, 1024, 2048),
        "latent_dim": Range(1, 4096, integer=True),
        "likelihood": ("laplace", "gaussian", "cbernoulli"),
        "base_channels": Range(1, 1024, integer=True),
        "in_channels": (1, 3),
    },
}
MODEL_KEYS["causal"] = {**MODEL_KEYS["plain"], "learn_cpts": (False, True), "cpt_prior": _POS}
MODEL_KEYS["dcgan"] = {
    "image_size": (16, 32, 64, 128),
    "latent_dim": Range(1, 4096, integer=True),
    "base_channels": Range(1, 1024, integer=True),
    "channels": (1, 3),
}


def read_json(path: Path) -> dict[str, Any]:
    """``path`` parsed as a JSON object (NaN/Infinity refused), or one ``ValueError`` line."""

    def refuse(token: str) -> None:
        raise ValueError(f"non-standard JSON value {token}")

    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)
    except FileNotFoundError:
        raise ValueError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: must hold a JSON object, got {type(data).__name__}")
    return data


def _field(path: Path, name: str, fault: str) -> ValueError:
    return ValueError(f"{path}: field '{name}' {fault}")


def _check_value(path: Path, name: str, value: Any, allowed: Any) -> None:
    if isinstance(allowed, Range):
        if not allowed.accepts(value):
            raise _field(path, name, f"must be {allowed.describe()}, got {value!r}")
    elif not any(value == a and type(value) is type(a) for a in allowed):
        raise _field(path, name, f"must be one of {list(allowed)}, got {value!r}")


# ------------------------------------------------------------------------------- config.json
def _accepts(value: Any, hint: Any) -> bool:
    """Whether JSON ``value`` fits the type ``hint`` (int, float, str, bool, X | None)."""
    if hint is Any:
        return True
    args = typing.get_args(hint)
    if args and typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_accepts(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    return True  # a kind of field this schema does not know: TrainConfig.check decides


def check_config_json(path: Path, info: Mapping[str, Any]) -> Any:
    """``config.json``'s :class:`TrainConfig` (types, known keys, ranges), or ``ValueError``."""
    from causalscene.train.config import TrainConfig

    unknown = sorted(set(info) - {"config", "command", "seed", "version"})
    if unknown:
        raise _field(path, unknown[0], "is unknown")
    fields = info.get("config")
    if not isinstance(fields, dict):
        raise _field(path, "config", f"must be an object, got {type(fields).__name__}")
    hints = typing.get_type_hints(TrainConfig)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    for name, value in fields.items():
        if name not in known:
            raise _field(path, f"config.{name}", "is unknown to this version")
        if not _accepts(value, hints[name]):
            raise _field(path, f"config.{name}", f"has the wrong type ({value!r})")
    config = TrainConfig.from_dict(fields)
    try:
        config.check()
    except ValueError as exc:
        raise _field(path, "config", f"is out of range: {exc}") from None
    return config


# -------------------------------------------------------------------------------- model.json
def check_model_json(path: Path, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``model.json`` checked against :data:`MODEL_KEYS`; returns it as a dict."""
    kind = cfg.get("kind")
    if kind not in MODEL_KEYS:
        raise _field(path, "kind", f"must be one of {sorted(MODEL_KEYS)}, got {kind!r}")
    keys = MODEL_KEYS[kind]
    for name, value in cfg.items():
        if name == "kind":
            continue
        if name not in keys:
            raise _field(path, name, f"is unknown for a model of kind '{kind}'")
        _check_value(path, name, value, keys[name])
    if "image_size" not in cfg:
        raise _field(path, "image_size", "is missing")
    return dict(cfg)


def check_dag_json(path: Path, data: Mapping[str, Any]) -> Any:
    """``dag.json`` as a :class:`CausalDAG` (every fault a ``ValueError`` naming the file)."""
    from causalscene.dag import CausalDAG

    try:
        return CausalDAG.from_dict(data, source=str(path))
    except (TypeError, AttributeError, KeyError, IndexError) as exc:
        raise ValueError(f"{path}: malformed DAG ({type(exc).__name__}: {exc})") from None


# --------------------------------------------------------------------------------- meta.json
def check_meta(path: Path, meta: Any) -> dict[str, Any]:
    """A dataset's ``meta.json``: the fields a reader relies on, typed (``ValueError`` else)."""
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: must hold a JSON object, got {type(meta).__name__}")
    shards = meta.get("shards")
    if not isinstance(shards, list) or not shards:
        raise _field(path, "shards", "must be a non-empty list")
    for k, entry in enumerate(shards):
        _check_shard_entry(path, k, entry)
    labels = meta.get("labels", {})
    if not isinstance(labels, dict) or not all(
        isinstance(s, list) and s and all(isinstance(x, (str, int)) for x in s)
        for s in labels.values()
    ):
        raise _field(path, "labels", "must map each node to a non-empty list of state names")
    data = meta.get("data", {"key": "images"})
    if not isinstance(data, dict) or data.get("key", "images") not in ("images", "points"):
        raise _field(path, "data", "must be an object whose 'key' is 'images' or 'points'")
    for name, kind in (("extras", dict), ("dag", dict)):
        if name in meta and meta[name] is not None and not isinstance(meta[name], kind):
            raise _field(path, name, f"must be an object, got {type(meta[name]).__name__}")
    for name in ("count", "format_version"):
        if name in meta and not Range(0, integer=True).accepts(meta[name]):
            raise _field(path, name, f"must be an integer >= 0, got {meta[name]!r}")
    size = meta.get("image_size")
    if size is not None and not Range(1, integer=True).accepts(size):
        raise _field(path, "image_size", f"must be an integer >= 1 or null, got {size!r}")
    return meta


def _check_shard_entry(path: Path, k: int, entry: Any) -> None:
    where = f"shards[{k}]"
    if not isinstance(entry, dict):
        raise _field(path, where, "must be an object with 'file' and 'count'")
    name = entry.get("file")
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
        raise _field(path, f"{where}.file", f"must be a plain file name, got {name!r}")
    if not Range(0, integer=True).accepts(entry.get("count")):
        raise _field(path, f"{where}.count", f"must be an integer >= 0, got {entry.get('count')!r}")
    digest = entry.get("sha256")
    if digest is not None and (
        not isinstance(digest, str) or len(digest) != 64 or set(digest) - set("0123456789abcdef")
    ):
        raise _field(path, f"{where}.sha256", "must be 64 lowercase hex digits")


# -------------------------------------------------------------------------------- checkpoints
def check_model_payload(state: Any, model: Any, path: Path) -> None:
    """``state["model"]`` has exactly the model's tensors: names, shapes, dtypes (a float tensor
    may be stored in another float precision: the shipped pretrained weights are float16, and
    ``load_state_dict`` casts), all finite."""
    import torch

    from causalscene.safeio import first_nonfinite

    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a checkpoint (holds a {type(state).__name__}, not a dict)")
    weights = state.get("model")
    if not isinstance(weights, dict):
        raise ValueError(f"{path}: field 'model' must be a state dict of tensors")
    expected = model.state_dict()
    missing = [k for k in expected if k not in weights]
    extra = [k for k in weights if k not in expected]
    if missing or extra:
        which = f"lacks '{missing[0]}'" if missing else f"has unknown '{extra[0]}'"
        raise ValueError(f"{path}: does not match model.json (the state dict {which})")
    for name, want in expected.items():
        got = weights[name]
        if (
            not isinstance(got, torch.Tensor)
            or got.shape != want.shape
            or not _same_kind(got, want)
        ):
            what = (
                f"{tuple(got.shape)} {got.dtype}"
                if isinstance(got, torch.Tensor)
                else type(got).__name__
            )
            raise ValueError(
                f"{path}: does not match model.json ('{name}' is {what}, expected "
                f"{tuple(want.shape)} {want.dtype})"
            )
    bad = first_nonfinite(weights.items())
    if bad is not None:
        raise ValueError(f"{path}: tensor '{bad}' holds NaN/inf (refused)")


def _same_kind(got: Any, want: Any) -> bool:
    """Same dtype, or both floating point (a float16 copy of float32 weights loads)."""
    return bool(got.dtype == want.dtype or (got.is_floating_point() and want.is_floating_point()))


def saved_config(state: Any, path: Path) -> dict[str, Any]:
    """The config recorded in a checkpoint's dict (``state["config"]``, JSON text of an object)."""
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a checkpoint (holds a {type(state).__name__}, not a dict)")
    try:
        saved = json.loads(state["config"])
    except (TypeError, ValueError, KeyError):
        saved = None
    if not isinstance(saved, dict):
        raise _field(path, "config", "must be the JSON text of the run's config")
    return saved


def check_resume_payload(
    state: Any, model: Any, optimizers: Mapping[str, Any], path: Path, n_metrics: int = 1
) -> None:
    """A checkpoint fit to resume ``model`` with ``optimizers`` (checkpoint key → optimizer):
    :func:`check_model_payload`, then each optimizer's tensors (shapes, finite), the sums of the
    step's ``n_metrics`` metrics, the RNG state and the position."""
    import torch

    from causalscene.safeio import first_nonfinite

    check_model_payload(state, model, path)
    counters = ("epoch", "step_in_epoch", "global_step", "counted")
    for name in counters:
        if not Range(0, integer=True).accepts(state.get(name)):
            raise _field(path, name, f"must be an integer >= 0, got {state.get(name)!r}")
    running = state.get("running", torch.zeros(()))
    if not isinstance(running, torch.Tensor) or running.ndim > 1 or running.numel() != n_metrics:
        raise _field(path, "running", f"must hold the sums of {n_metrics} metric(s)")
    guard = state.get("spike_guard", torch.zeros(()))
    if not isinstance(guard, torch.Tensor) or guard.numel() != 1:
        raise _field(path, "spike_guard", "must be a scalar tensor")
    history = state.get("history", [])
    if not isinstance(history, list) or not all(_is_json_object(h) for h in history):
        raise _field(path, "history", "must be a list of JSON lines")
    _check_rng(state.get("rng"), path)
    bad = None
    for key, optimizer in optimizers.items():
        params = [p for group in optimizer.param_groups for p in group["params"]]
        _check_optimizer(state.get(key), params, path, key)
        bad = bad or first_nonfinite((f"{key}.{k}", v) for k, v in _optimizer_tensors(state[key]))
    if bad is None and not math.isfinite(float(guard)):
        bad = "spike_guard"
    if bad is not None:
        raise ValueError(f"{path}: tensor '{bad}' holds NaN/inf (refused)")


def _is_json_object(text: Any) -> bool:
    try:
        return isinstance(text, str) and isinstance(json.loads(text), dict)
    except ValueError:
        return False


def _check_rng(rng: Any, path: Path) -> None:
    import torch

    want = torch.get_rng_state()
    got = rng.get("torch") if isinstance(rng, dict) else None
    if not isinstance(got, torch.Tensor) or got.dtype != want.dtype or got.shape != want.shape:
        raise _field(
            path, "rng.torch", f"must be a {want.dtype} tensor of shape {tuple(want.shape)}"
        )


def _optimizer_tensors(opt: Mapping[str, Any]) -> list[tuple[str, Any]]:
    return [
        (f"{k}.{name}", v)
        for k, entry in opt["state"].items()
        for name, v in (entry.items() if isinstance(entry, dict) else [])
    ]


def _check_optimizer(opt: Any, params: list[Any], path: Path, key: str = "optimizer") -> None:
    import torch

    if not isinstance(opt, dict) or not isinstance(opt.get("state"), dict):
        raise _field(path, key, "must be an optimizer state dict")
    groups = opt.get("param_groups")
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise _field(path, f"{key}.param_groups", "must be a list of objects")
    ids = [
        i for g in groups for i in (g.get("params") if isinstance(g.get("params"), list) else [])
    ]
    if sorted(map(str, ids)) != sorted(map(str, range(len(params)))):
        raise _field(path, f"{key}.param_groups", "does not list the model's parameters")
    for index, entry in opt["state"].items():
        if (
            not isinstance(index, int)
            or not 0 <= index < len(params)
            or not isinstance(entry, dict)
        ):
            raise _field(path, f"{key}.state.{index}", "is not a parameter's state")
        for name, value in entry.items():
            if not isinstance(value, torch.Tensor):
                raise _field(path, f"{key}.state.{index}.{name}", "must be a tensor")
            if name != "step" and value.shape != params[index].shape:
                raise _field(path, f"{key}.state.{index}.{name}", "has the wrong shape")
