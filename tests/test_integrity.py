"""Integrity of what causalscene reads and writes (issue 19, items 3-7).

A damage fuzzer: one tiny trained run (16 px, one epoch) and one tiny dataset folder, each file
damaged in turn (byte flips, truncations, wrong JSON types, pickles, NaN weights, wrong shapes):
every damaged copy must be refused with one ``ValueError`` line (library) or exit status 2 and one
error line (CLI) — never a traceback, never used. Then the numeric flags at 0, -1, nan, inf, the
``--out`` edge cases, the stale temporary files of a killed write, and the NaN guard.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from causalscene.cli import main
from causalscene.dag import CausalDAG
from causalscene.datasets import FORMAT, FORMAT_VERSION, write_npz
from causalscene.generate import write_query_images
from causalscene.model import CausalVAE
from causalscene.options import SEED, VERB_RANGES
from causalscene.probes import ImageProbe
from causalscene.safeio import atomic_write, remove_stale_temps, sha256_file
from causalscene.train import TrainConfig, TrainingDiverged, fit, load_dataset, load_run
from causalscene.utils import atomic_torch_save
from tests.test_model import synth_data

ROOT = Path(__file__).resolve().parent.parent
DAG = ROOT / "dags" / "rpg_fight.yaml"
RNG = np.random.default_rng(19)


def _config(**kw) -> TrainConfig:
    base = dict(epochs=1, batch_size=16, latent_dim=3, base_channels=4, device="cpu")
    base.update(progress=False, checkpoint_every=2, grid_size=2, consistency_weight=0.0)
    return TrainConfig(**{**base, **kw})


def write_dataset(root: Path, dag: CausalDAG, images: np.ndarray, labels: dict) -> Path:
    """A shard folder as procgen writes it (meta.json records each shard's SHA-256)."""
    root.mkdir(parents=True)
    write_npz(root / "shard-00000.npz", {"images": images, **labels})
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "dag": {"definition": dag.to_dict()},
        "labels": {n: list(dag.states(n)) for n in dag.label_nodes},
        "data": {"key": "images"},
        "image_size": images.shape[1],
        "count": len(images),
        "shards": [
            {
                "file": "shard-00000.npz",
                "count": len(images),
                "sha256": sha256_file(root / "shard-00000.npz"),
            }
        ],
    }
    (root / "meta.json").write_text(json.dumps(meta))
    return root


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """``(run folder, dataset folder, probe file, dag)``: trained once for the module."""
    base = tmp_path_factory.mktemp("integrity")
    dag = CausalDAG.load(DAG)
    images, labels = synth_data(dag, 48, seed=1)
    data = write_dataset(base / "data", dag, images, labels)
    torch.manual_seed(0)
    model = CausalVAE(dag, 16, 3, base_channels=4)
    fit(model, load_dataset(data, dag), _config(data=str(data)), out=base / "run")
    probe = ImageProbe(dag, 16, width=4)
    probe.save(base / "probe.pt")
    return base / "run", data, base / "probe.pt", dag


# ------------------------------------------------------------------------------ the damages
def flip(path: Path, count: int, rng: np.random.Generator, region: tuple[float, float]) -> None:
    data = bytearray(path.read_bytes())
    lo, hi = (
        int(region[0] * len(data)),
        max(int(region[1] * len(data)), int(region[0] * len(data)) + 1),
    )
    for pos in rng.integers(lo, hi, size=count):
        data[pos] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path, fraction: float) -> None:
    path.write_bytes(path.read_bytes()[: int(len(path.read_bytes()) * fraction)])


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def checkpoint_payloads(state: dict) -> list[tuple[str, object]]:
    """Structurally wrong checkpoints, saved *with* a matching sidecar (the schema must refuse)."""
    model = state["model"]
    first = next(k for k, v in model.items() if v.is_floating_point())
    out: list[tuple[str, object]] = [
        ("tensor", torch.zeros(3)),
        ("list", [1, 2]),
        ("empty dict", {}),
        ("empty state", {**state, "model": {}}),
        ("model a list", {**state, "model": [1]}),
        ("model a tensor", {**state, "model": torch.zeros(2)}),
        ("extra key", {**state, "model": {**model, "bogus": torch.zeros(1)}}),
    ]
    for name in list(model)[:: max(1, len(model) // 12)]:
        v = model[name]
        out.append(
            (f"missing {name}", {**state, "model": {k: x for k, x in model.items() if k != name}})
        )
        out.append((f"shape {name}", {**state, "model": {**model, name: torch.zeros(*v.shape, 2)}}))
        if v.is_floating_point():
            out.append(
                (
                    f"nan {name}",
                    {**state, "model": {**model, name: torch.full_like(v, float("nan"))}},
                )
            )
            out.append(
                (f"inf {name}", {**state, "model": {**model, name: v.clone().fill_(float("inf"))}})
            )
            # another float precision is no damage (the shipped fp16 weights load); another kind is
            out.append(
                (f"dtype {name}", {**state, "model": {**model, name: v.to(torch.complex64)}})
            )
    out.append(("int weight", {**state, "model": {**model, first: model[first].long()}}))
    return out


def resume_payloads(state: dict) -> list[tuple[str, object]]:
    """Checkpoints ``load_run`` accepts but ``--resume`` must refuse (optimizer, RNG, position)."""
    opt = state["optimizer"]
    key = next(iter(opt["state"]))
    entry = opt["state"][key]
    bad_entry = {**entry, "exp_avg": torch.zeros(7, 7)}
    nan_entry = {**entry, "exp_avg_sq": torch.full_like(entry["exp_avg_sq"], float("nan"))}
    return [
        ("rng missing", {**state, "rng": None}),
        ("rng list", {**state, "rng": [1]}),
        ("rng short", {**state, "rng": {"torch": torch.zeros(5, dtype=torch.uint8)}}),
        ("rng float", {**state, "rng": {"torch": state["rng"]["torch"].float()}}),
        ("optimizer list", {**state, "optimizer": []}),
        ("optimizer no groups", {**state, "optimizer": {"state": opt["state"]}}),
        (
            "optimizer shape",
            {**state, "optimizer": {**opt, "state": {**opt["state"], key: bad_entry}}},
        ),
        (
            "optimizer nan",
            {**state, "optimizer": {**opt, "state": {**opt["state"], key: nan_entry}}},
        ),
        ("optimizer key", {**state, "optimizer": {**opt, "state": {**opt["state"], 999: entry}}}),
        ("epoch str", {**state, "epoch": "1"}),
        ("epoch negative", {**state, "epoch": -1}),
        ("step float", {**state, "global_step": 1.5}),
        ("running vector", {**state, "running": torch.zeros(3)}),
        ("spike nan", {**state, "spike_guard": torch.tensor(float("nan"))}),
        ("history dicts", {**state, "history": [{}]}),
        ("history junk", {**state, "history": ["{"]}),
        ("config missing", {k: v for k, v in state.items() if k != "config"}),
        ("config list", {**state, "config": "[]"}),
    ]


JSON_VALUES = [[], None, 3, "x", 1.5, True]


def config_damages(info: dict) -> list[tuple[str, str]]:
    fields = info["config"]
    out = [(f"top {v!r}", json.dumps(v)) for v in JSON_VALUES]
    out += [("NaN literal", "NaN"), ("truncated", json.dumps(info)[:20]), ("binary", "\udcff")]
    out += [
        ("unknown top", json.dumps({**info, "bogus": 1})),
        ("config list", json.dumps({**info, "config": []})),
    ]
    out.append(("unknown field", json.dumps({**info, "config": {**fields, "bogus": 1}})))
    for name, value in fields.items():
        wrong = [1]  # no field is a list
        out.append((f"{name} type", json.dumps({**info, "config": {**fields, name: wrong}})))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            low = -1 if isinstance(value, int) else -1e9
            out.append((f"{name} -1", json.dumps({**info, "config": {**fields, name: low}})))
    out.append(
        (
            "lr NaN",
            json.dumps({**info, "config": {**fields, "lr": 1}}).replace('"lr": 1', '"lr": NaN'),
        )
    )
    return out


def model_damages(cfg: dict) -> list[tuple[str, str]]:
    out = [(f"top {v!r}", json.dumps(v)) for v in JSON_VALUES]
    out += [("truncated", json.dumps(cfg)[:10]), ("unknown key", json.dumps({**cfg, "bogus": 1}))]
    out += [
        ("kind", json.dumps({**cfg, "kind": "gan"})),
        ("no size", json.dumps({k: v for k, v in cfg.items() if k != "image_size"})),
    ]
    for name in cfg:
        if name != "kind":
            for wrong in ("x", None, -1, 0, [1], *([2.5] if name != "cpt_prior" else [])):
                out.append((f"{name}={wrong!r}", json.dumps({**cfg, name: wrong})))
    out += [
        ("latent 4", json.dumps({**cfg, "latent_dim": 4})),
        ("size 32", json.dumps({**cfg, "image_size": 32})),
    ]
    return out


def dag_damages(dag: dict) -> list[tuple[str, str]]:
    out = [(f"top {v!r}", json.dumps(v)) for v in JSON_VALUES]
    out += [
        ("nodes list", json.dumps({**dag, "nodes": []})),
        ("cpts list", json.dumps({**dag, "cpts": [1]})),
    ]
    node = next(iter(dag["nodes"]))
    out += [("node str", json.dumps({**dag, "nodes": {**dag["nodes"], node: "x"}}))]
    out += [
        (
            "states int",
            json.dumps(
                {**dag, "nodes": {**dag["nodes"], node: {**dag["nodes"][node], "states": 3}}}
            ),
        )
    ]
    out += [
        (
            "extra state",
            json.dumps(
                {
                    **dag,
                    "nodes": {
                        **dag["nodes"],
                        node: {
                            **dag["nodes"][node],
                            "states": [*dag["nodes"][node]["states"], "zz"],
                        },
                    },
                }
            ),
        )
    ]
    return out


def meta_damages(meta: dict) -> list[tuple[str, str]]:
    out = [(f"top {v!r}", json.dumps(v)) for v in JSON_VALUES]
    entry = meta["shards"][0]
    for name, wrong in [
        ("shards", "x"),
        ("shards", []),
        ("shards", [1]),
        ("shards", [{"file": 3, "count": 1}]),
        ("shards", [{**entry, "file": "../data/shard-00000.npz"}]),
        ("shards", [{**entry, "count": "x"}]),
        ("shards", [{**entry, "sha256": "abc"}]),
        ("shards", [{**entry, "sha256": "0" * 64}]),
        ("labels", "x"),
        ("labels", {"a": "b"}),
        ("labels", []),
        ("data", "x"),
        ("data", {"key": 3}),
        ("extras", []),
        ("count", "x"),
        ("count", 5),
        ("format_version", "x"),
        ("image_size", "x"),
        ("dag", "x"),
        ("format", "other"),
    ]:
        out.append((f"{name}={wrong!r}", json.dumps({**meta, name: wrong})))
    return out


# ------------------------------------------------------------------------------ the fuzzer
def _outcome(action: Callable[[], object]) -> str:
    try:
        action()
    except ValueError as exc:
        return "refused" if "\n" not in str(exc) else "multi-line"
    except Exception as exc:  # noqa: BLE001 - what the fuzzer counts
        return f"traceback {type(exc).__name__}: {exc}"
    return "accepted"


def damaged_cases(world, tmp: Path) -> list[tuple[str, Callable[[], object]]]:
    """Every damaged copy and the library call that must refuse it."""
    run, data, probe, dag = world
    cases: list[tuple[str, Callable[[], object]]] = []
    counter = iter(range(10**6))

    def copy_run(name: str, content: bytes | None = None) -> Path:
        target = tmp / f"run{next(counter)}"
        shutil.copytree(run, target)
        if content is not None:
            (target / name).write_bytes(content)
        return target

    for k in range(40):  # flips anywhere, then inside the tensor data (the file's middle)
        target = copy_run("checkpoint.pt")
        flip(
            target / "checkpoint.pt", 2 if k % 2 else 200, RNG, (0.0, 1.0) if k < 20 else (0.3, 0.9)
        )
        cases.append((f"ckpt flip {k}", lambda t=target: load_run(t)))
    for frac in np.linspace(0.0, 0.98, 15):
        target = copy_run("checkpoint.pt")
        truncate(target / "checkpoint.pt", float(frac))
        cases.append((f"ckpt truncate {frac:.2f}", lambda t=target: load_run(t)))
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    for label, payload in checkpoint_payloads(state):
        target = copy_run("checkpoint.pt")
        atomic_torch_save(payload, target / "checkpoint.pt")  # a matching SHA-256: schema's turn
        cases.append((f"ckpt {label}", lambda t=target: load_run(t)))
    for label, raw in [
        ("pickle", pickle.dumps(Evil())),
        ("random", RNG.bytes(4096)),
        ("empty", b""),
    ]:
        target = copy_run("checkpoint.pt", raw)
        (target / "checkpoint.pt.sha256").write_text(
            f"{sha256_file(target / 'checkpoint.pt')}  checkpoint.pt\n"
        )
        cases.append((f"ckpt {label}", lambda t=target: load_run(t)))
    buffer = tmp / "evil.pt"
    torch.save({"model": Evil()}, buffer)
    target = copy_run("checkpoint.pt", buffer.read_bytes())
    (target / "checkpoint.pt.sha256").write_text(
        f"{sha256_file(target / 'checkpoint.pt')}  checkpoint.pt\n"
    )
    cases.append(("ckpt pickled object", lambda t=target: load_run(t)))
    target = copy_run("checkpoint.pt.sha256", b"not a digest\n")
    cases.append(("ckpt bad sidecar", lambda t=target: load_run(t)))
    for label, payload in resume_payloads(state):
        target = copy_run("checkpoint.pt")
        atomic_torch_save(payload, target / "checkpoint.pt")
        cases.append((f"resume {label}", lambda t=target: _resume(t, data, dag)))
    for name, damages in [
        ("config.json", config_damages(json.loads((run / "config.json").read_text()))),
        ("model.json", model_damages(json.loads((run / "model.json").read_text()))),
        ("dag.json", dag_damages(json.loads((run / "dag.json").read_text()))),
    ]:
        for label, text in damages:
            target = copy_run(name, text.encode("utf-8", "surrogateescape"))
            cases.append((f"{name} {label}", lambda t=target: load_run(t)))
    cases += _dataset_cases(data, dag, tmp)
    cases += _probe_cases(probe, tmp)
    return cases


def _resume(run: Path, data: Path, dag: CausalDAG) -> None:
    torch.manual_seed(0)
    fit(
        CausalVAE(dag, 16, 3, base_channels=4),
        load_dataset(data, dag),
        _config(epochs=2, data=str(data)),
        out=run,
        resume=True,
    )


def _dataset_cases(data: Path, dag: CausalDAG, tmp: Path) -> list[tuple[str, Callable[[], object]]]:
    cases: list[tuple[str, Callable[[], object]]] = []
    meta = json.loads((data / "meta.json").read_text())
    for k, (label, text) in enumerate(meta_damages(meta)):
        target = tmp / f"meta{k}"
        shutil.copytree(data, target)
        (target / "meta.json").write_text(text)
        cases.append((f"meta {label}", lambda t=target: load_dataset(t, dag)))
    for k in range(20):
        target = tmp / f"shard{k}"
        shutil.copytree(data, target)
        shard = target / "shard-00000.npz"
        if k < 14:
            flip(shard, 200 if k % 2 else 2, RNG, (0.1, 0.6))  # inside the image array
        else:
            truncate(shard, [0.0, 0.1, 0.5, 0.9, 0.99, 0.999][k - 14])
        cases.append((f"shard damage {k}", lambda t=target: load_dataset(t, dag)))
    images, labels = synth_data(dag, 8, size=1)
    for k, (label, arrays) in enumerate(
        [
            ("1x1 px", {"images": images, **labels}),
            ("object array", {"images": np.array([object()] * 8), **labels}),
            ("float images", {"images": images.astype(np.float32), **labels}),
            ("codes out of range", {"images": images, **{n: v + 50 for n, v in labels.items()}}),
        ]
    ):
        target = tmp / f"bad{k}"
        if label == "object array":
            target.mkdir()
            np.savez(target / "shard-00000.npz", **arrays)
            write_meta_like(target, data, 8)
        else:
            write_dataset(target, dag, arrays["images"], {n: arrays[n] for n in labels})
        cases.append((f"dataset {label}", lambda t=target: _train_on(t, dag)))
    return cases


def write_meta_like(target: Path, data: Path, count: int) -> None:
    meta = json.loads((data / "meta.json").read_text())
    meta["shards"] = [
        {
            "file": "shard-00000.npz",
            "count": count,
            "sha256": sha256_file(target / "shard-00000.npz"),
        }
    ]
    meta["count"] = count
    (target / "meta.json").write_text(json.dumps(meta))


def _train_on(data: Path, dag: CausalDAG) -> None:
    fit(CausalVAE(dag, 16, 3, base_channels=4), load_dataset(data, dag), _config(), out=None)


def _probe_cases(probe: Path, tmp: Path) -> list[tuple[str, Callable[[], object]]]:
    cases: list[tuple[str, Callable[[], object]]] = []
    for k in range(12):
        target = tmp / f"probe{k}.pt"
        shutil.copy(probe, target)
        shutil.copy(probe.with_name("probe.pt.sha256"), target.with_name(f"{target.name}.sha256"))
        if k < 6:
            flip(target, 2, RNG, (0.2, 0.9))
        else:
            truncate(target, k / 12)
            target.with_name(f"{target.name}.sha256").write_text(
                f"{sha256_file(target)}  {target.name}\n"
            )
        cases.append((f"probe {k}", lambda t=target: ImageProbe.load(t)))
    for label, payload in [
        ("list", [1]),
        ("no config", {"state_dict": {}}),
        ("bad config", {"config": 3, "state_dict": {}}),
    ]:
        target = tmp / f"probe-{label}.pt"
        atomic_torch_save(payload, target)
        cases.append((f"probe {label}", lambda t=target: ImageProbe.load(t)))
    return cases


def test_damage_fuzzer_refuses_every_damaged_file(world, tmp_path):
    """≥ 200 damaged copies; each one a one-line ``ValueError``: 0 tracebacks, 0 accepted."""
    cases = damaged_cases(world, tmp_path)
    outcomes = {label: _outcome(action) for label, action in cases}
    counts = {
        kind: sum(o.startswith(kind) for o in outcomes.values())
        for kind in ("refused", "traceback", "accepted", "multi-line")
    }
    print(f"damage fuzzer: {len(cases)} cases, {counts}")
    bad = {k: v for k, v in outcomes.items() if v != "refused"}
    assert len(cases) >= 200
    assert not bad, bad
    load_run(world[0])  # the undamaged run still loads


# ------------------------------------------------------------------------------ through the CLI
def test_cli_sample_of_damages_exit_2_with_one_line(world, tmp_path, capsys):
    run, data, _, _ = world
    damaged = []
    for k, damage in enumerate(
        [
            lambda t: flip(t / "checkpoint.pt", 2, RNG, (0.3, 0.9)),
            lambda t: truncate(t / "checkpoint.pt", 0.5),
            lambda t: (t / "model.json").write_text("[]"),
            lambda t: (t / "config.json").write_text('{"config": {"epochs": "x"}}'),
            lambda t: (t / "dag.json").write_text("null"),
        ]
    ):
        target = tmp_path / f"r{k}"
        shutil.copytree(run, target)
        damage(target)
        damaged.append(target)
    for target in damaged:
        out = tmp_path / f"{target.name}.png"
        assert main(["generate", str(target), "--n", "2", "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("causalscene generate: error:"), err
        assert not out.exists()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "causalscene.cli",
            "generate",
            str(damaged[0]),
            "--out",
            str(tmp_path / "x.png"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "SHA-256" in proc.stderr
    assert "weights_only" not in proc.stderr


def test_pickled_checkpoint_is_refused_without_torchs_advice(world, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(world[0], target)
    torch.save({"model": Evil()}, target / "checkpoint.pt")
    (target / "checkpoint.pt.sha256").unlink()  # even an "older" folder: refused unread
    with pytest.raises(ValueError) as info:
        load_run(target)
    message = str(info.value)
    assert "\n" not in message and "weights_only" not in message and "Python objects" in message


def test_older_folders_without_checksums_load_with_a_warning(world, tmp_path, caplog):
    target = tmp_path / "run"
    shutil.copytree(world[0], target)
    (target / "checkpoint.pt.sha256").unlink()
    with caplog.at_level("WARNING"):
        model, _ = load_run(target)
    assert "no SHA-256 recorded" in caplog.text
    meta = json.loads((world[1] / "meta.json").read_text())
    del meta["shards"][0]["sha256"]
    data = tmp_path / "data"
    shutil.copytree(world[1], data)
    (data / "meta.json").write_text(json.dumps(meta))
    assert len(load_dataset(data, world[3])[0]) == 48
    assert "records no SHA-256" in caplog.text


# ------------------------------------------------------------------------------ numeric flags
def _verb_argv(verb: str, flag: str, value: str, tmp: Path) -> list[str]:
    run, out, folder = str(tmp / "no-run"), str(tmp / "o.png"), str(tmp / "o")
    base = {
        "generate": ["generate", run, "--out", out],
        "counterfactual": [
            "counterfactual",
            run,
            "--do",
            "a=b",
            "--out",
            out,
            *([] if flag == "index" else ["--index", "0"]),
        ],
        "infer": ["infer", run, "--image", out],
        "evaluate": ["evaluate", run],
        "procgen": [
            "procgen",
            "rpg",
            *([] if flag == "n" else ["--n", "4"]),
            "--out",
            str(tmp / "d"),
        ],
        "train": ["train", "--dag", "rpg_fight", "--data", str(tmp / "d"), "--out", str(tmp / "r")],
        "dag": ["dag", "draw", "rpg_fight", "--out", out],
        "query": ["query", "rpg_fight", "--variables", "a", "--noise", "gumbel"],
        "cage": ["cage", run, "--all-pairs", "--out", folder],
        "modules": ["modules", run, "--layer", "x", "--out", folder],
        "sdr": ["sdr", run, "--out", folder],
        "data": (
            ["data", "import-celeba", run]
            if flag == "max_images"  # only import-celeba has it; the rest go through import
            else ["data", "import", run, "--labels", str(tmp / "l.csv"), "--dag", "rpg_fight"]
        )
        + ["--out", folder],
        "reproduce": ["reproduce", "cage-mog", "--scale", "tiny", "--out", folder],
        "demo": ["demo", "--quick", "--out", folder],
        "report": ["report", run, "--out", folder],
    }[verb]
    return [*base, f"--{flag.replace('_', '-')}", value]


NUMERIC = [
    (verb, flag, value)
    for verb, ranges in VERB_RANGES.items()
    for flag in ranges
    if flag not in ("aux_weight", "holdout_fraction", "log_every", "grid_size")  # no flags
    for value in ("0", "-1", "nan", "inf")
]


@pytest.mark.parametrize("verb, flag, value", NUMERIC)
def test_every_numeric_flag_at_0_minus1_nan_inf(verb, flag, value, tmp_path, capsys):
    """A value outside the flag's range: exit 2 and one error line before any work (nothing
    written); a value inside it gets past the check (decided by the Range, independently of the
    CLI: an int flag never takes nan/inf)."""
    allowed = VERB_RANGES[verb][flag]
    number = float(value)
    valid = allowed.accepts(int(number) if allowed.integer and number.is_integer() else number)
    if valid:
        assert value == "0" and flag in (
            "seed",
            "sdr_weight",
            "consistency_weight",
            "spike_factor",
            "index",
            "beta1",  # Adam without momentum
            "beta2",
            "invert_prior",  # latent inversion without a prior penalty (its default)
            "min_accuracy",  # keep every pair, however poorly its probes separate
            "probe_patience",  # evaluate's probe runs every epoch
            "probe_tolerance",  # any held-out gain counts
        )
        return
    try:
        code = main(_verb_argv(verb, flag, value, tmp_path))
    except SystemExit as exc:  # argparse: an int flag given nan/inf
        code = exc.code
    assert code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 1 and flag.replace("_", "-") in err[0], err
    assert sorted(os.listdir(tmp_path)) == []


def test_query_sample_bound_is_the_dags():
    from causalscene.dag import MAX_SAMPLES

    assert VERB_RANGES["query"]["num_samples"].high == MAX_SAMPLES


def test_seed_range():
    assert (
        SEED.accepts(0)
        and not SEED.accepts(-1)
        and not SEED.accepts(2**63)
        and not SEED.accepts(True)
    )


# ------------------------------------------------------------------------------ --out edges
def test_out_edge_cases_refused_before_work(world, tmp_path, capsys):
    run = str(world[0])
    afile = tmp_path / "afile"
    afile.write_text("x")
    adir = tmp_path / "adir"
    adir.mkdir()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    cases = [
        ["generate", run, "--out", str(afile / "x.png")],  # under a file
        ["generate", run, "--out", str(adir)],  # a folder where a file is meant
        ["generate", run, "--out", str(fifo)],
        ["generate", run, "--out", "/dev/null"],
        ["counterfactual", run, "--index", "0", "--do", "action=attack", "--out", str(adir)],
        ["counterfactual", run, "--index", "0", "--do", "action=attack", "--out", str(afile / "y")],
        ["dag", "draw", "rpg_fight", "--out", str(afile / "d.png")],
        ["dag", "draw", "rpg_fight", "--out", str(adir)],
        ["dag", "draw", "rpg_fight", "--out", "/dev/null"],
        ["train", "--dag", "rpg_fight", "--data", str(world[1]), "--out", str(afile)],
        ["train", "--dag", "rpg_fight", "--data", str(world[1]), "--out", str(afile / "run")],
        ["procgen", "rpg", "--n", "2", "--out", str(afile)],
        ["procgen", "rpg", "--n", "2", "--out", str(afile / "data")],
    ]
    for argv in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "error:" in err[0], (argv, err)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert afile.read_text() == "x" and list(adir.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_out_not_writable(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    assert main(["dag", "draw", "rpg_fight", "--out", str(locked / "d.png")]) == 2
    assert "no permission" in capsys.readouterr().err


def test_symlinks_are_written_through_and_special_targets_refused(world, tmp_path):
    target = tmp_path / "real.png"
    target.write_bytes(b"old")
    link = tmp_path / "link.png"
    link.symlink_to(target)
    write_query_images(world[0], link, n=2)
    assert link.is_symlink() and target.read_bytes()[:4] == b"\x89PNG"
    bad = tmp_path / "null.png"
    bad.symlink_to("/dev/null")
    with pytest.raises(ValueError, match="character device"):
        atomic_write(bad, b"x")
    assert bad.is_symlink() and stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_leftovers_of_a_killed_write_are_removed_on_the_next_write(tmp_path):
    out = tmp_path / "checkpoint.pt"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = [
        tmp_path / f".checkpoint.pt.{dead.stdout.strip()}.abcd1234.tmp",
        tmp_path / ".checkpoint.pt.abcd1234.tmp",
    ]
    live = tmp_path / f".checkpoint.pt.{os.getppid()}.abcd1234.tmp"  # a writer still running
    other = tmp_path / ".checkpoint.pt.other.abcd1234.tmp"  # another output's (checkpoint.pt.other)
    for path in (*stale, live, other):
        path.write_bytes(b"partial")
    atomic_torch_save({"a": torch.zeros(1)}, out)
    assert not any(p.exists() for p in stale)
    assert live.exists() and other.exists()  # a live writer's and another output's stay
    assert remove_stale_temps(out) == 0


# ------------------------------------------------------------------------------ the NaN guard
@pytest.mark.parametrize("poison_step, every", [(1, 1), (4, 2), (3, 100)])
def test_nan_guard_writes_only_finite_state(world, tmp_path, poison_step, every):
    """Weights poisoned after a step whose loss was finite: no checkpoint with NaN is written, and
    the message names a checkpoint only when one exists (and that one loads)."""
    run, data, _, dag = world
    model = CausalVAE(dag, 16, 3, base_channels=4)

    def poison(info):
        if info["global_step"] == poison_step:
            with torch.no_grad():
                model.decoder.fc.bias.fill_(float("nan"))

    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged) as info:
        fit(
            model,
            load_dataset(data, dag),
            _config(epochs=2, checkpoint_every=every, log_every=100),
            out=out,
            callbacks=[poison],
        )
    message = str(info.value)
    if (out / "checkpoint.pt").exists():
        assert f"last good checkpoint kept at {out / 'checkpoint.pt'}" in message
        state = torch.load(out / "checkpoint.pt", weights_only=True)
        assert all(
            torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point()
        )
        assert state["global_step"] < poison_step or poison_step == 1
    else:
        assert "no checkpoint was written" in message and "kept" not in message
    assert "decoder.fc.bias" in message or "NaN/inf" in message


def test_huge_learning_rate_never_leaves_a_nonfinite_checkpoint(world, tmp_path):
    _, data, _, dag = world
    for every in (1, 3):
        out = tmp_path / f"run{every}"
        try:
            fit(
                CausalVAE(dag, 16, 3, base_channels=4),
                load_dataset(data, dag),
                _config(lr=1e30, epochs=3, checkpoint_every=every),
                out=out,
            )
        except TrainingDiverged as exc:
            assert ("kept at" in str(exc)) == (out / "checkpoint.pt").exists()
        if (out / "checkpoint.pt").exists():
            load_run(out)  # finite, verified, loads
