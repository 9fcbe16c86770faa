"""One CLI convention (issue 15, item 6): shared flags, strict JSON, quiet closed pipes, uncut
tables, one-line errors. The flag table here is the README's verb table: a new verb must be
added to it, so it cannot join without a decision about each flag."""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from causalscene.cli import EXIT_BROKEN_PIPE, build_parser, main
from causalscene.utils import atomic_write_json, dumps

ROOT = Path(__file__).resolve().parents[1]
DAG = str(ROOT / "dags" / "rpg_fight.yaml")

#: verb → the shared flags it takes besides --seed (which every verb takes). No --device on verbs
#: that never touch torch (dag, query, report, procgen): a flag that does nothing would mislead.
FLAGS = {
    "cage": {"--device", "--json", "--no-progress"},
    "counterfactual": {"--device", "--json", "--no-progress"},
    "dag": {"--json"},
    "data": {"--json", "--no-progress"},  # each of its actions (import, import-celeba)
    "demo": {"--device", "--json", "--no-progress"},
    "evaluate": {"--device", "--json", "--no-progress"},
    "generate": {"--device", "--json", "--no-progress"},
    "infer": {"--device", "--json"},
    "modules": {"--device", "--json", "--no-progress"},
    "procgen": {"--json", "--no-progress"},
    "query": {"--json"},
    "report": {"--json"},
    "reproduce": {"--device", "--json", "--no-progress"},
    "sdr": {"--device", "--json", "--no-progress"},
    "train": {"--device", "--json", "--no-progress"},
}
SHARED = {"--device", "--json", "--no-progress"}


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    return env


def _cli(*argv: str) -> list[str]:
    return [sys.executable, "-m", "causalscene.cli", *argv]


def test_every_registered_verb_is_in_the_flag_table():
    assert set(_subparsers()) == set(FLAGS)


def _leaf_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """``parser``, or the parsers of its actions when it has some (``data import|import-celeba``)."""
    nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return [p for a in nested for p in a.choices.values()] if nested else [parser]


@pytest.mark.parametrize(
    "verb, sub",
    [(verb, sub) for verb in sorted(FLAGS) for sub in _leaf_parsers(_subparsers()[verb])],
    ids=lambda value: value if isinstance(value, str) else value.prog.split()[-1],
)
def test_verb_takes_the_shared_flags(verb, sub):
    options = {s for a in sub._actions for s in a.option_strings}
    assert "--seed" in options and "--seed" in sub.format_help()
    assert options & SHARED == FLAGS[verb], f"{verb}: {sorted(options & SHARED)}"
    if "--device" in FLAGS[verb]:
        assert sub.get_default("device") == "auto"


def test_evaluate_takes_no_progress():
    """It used to fail with "unrecognized arguments: --no-progress"."""
    args = build_parser().parse_args(["evaluate", "RUN", "--no-progress", "--json"])
    assert args.no_progress and args.json and args.device == "auto"


def _strict(text: str):
    def refuse(constant):
        raise ValueError(f"non-strict JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def test_dumps_writes_nan_and_infinity_as_null(tmp_path):
    value = {
        "nan": float("nan"),
        "inf": float("-inf"),
        "np": np.float32("nan"),
        "array": np.array([1.0, np.inf]),
        "tensor": torch.tensor([np.nan, 2.0]),
        "ok": 0.5,
    }
    want = {"nan": None, "inf": None, "np": None, "array": [1.0, None], "tensor": [None, 2.0]}
    assert _strict(dumps(value)) == {**want, "ok": 0.5}
    path = atomic_write_json(tmp_path / "eval.json", value)
    assert _strict(path.read_text()) == {**want, "ok": 0.5}


def test_dumps_refuses_what_it_cannot_make_strict():
    """``allow_nan=False`` is on: a NaN that slipped past the conversion would raise, not print."""
    with pytest.raises(TypeError):
        dumps({"x": object()})
    with pytest.raises(ValueError):
        json.dumps(float("nan"), allow_nan=False)  # the guard dumps relies on


def test_printed_json_is_strict(capsys):
    assert main(["query", DAG, "--variables", "actor_attack", "--json"]) == 0
    assert _strict(capsys.readouterr().out)["kind"] == "condition"
    assert main(["dag", "check", DAG, "--json", "--seed", "1"]) == 0
    assert _strict(capsys.readouterr().out) == {
        "file": DAG,
        "ok": True,
        "nodes": 12,
        "edges": 21,
    }


@pytest.mark.parametrize(
    "argv",
    [
        ["query", DAG, "--variables", "actor_attack", "action", "--json"],
        ["dag", "show", DAG],
        ["--help"],
    ],
    ids=["query-json", "dag-show-table", "help"],
)
def test_closed_pipe_ends_quietly(argv):
    """The reader is gone before the command writes: status 141, no traceback. (``--help`` is
    argparse's own output, which ignores a failed write itself: status 0, also quiet.)"""
    proc = subprocess.Popen(
        _cli(*argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), cwd=ROOT
    )
    assert proc.stdout is not None
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    text = err.decode()
    assert "Traceback" not in text and "BrokenPipeError" not in text, text
    assert proc.returncode == (0 if argv == ["--help"] else EXIT_BROKEN_PIPE)


def test_head_of_json_output_has_no_traceback():
    shell = f"set -o pipefail; {' '.join(_cli('dag', 'show', DAG, '--json'))} | head -c 10"
    proc = subprocess.run(
        ["bash", "-c", shell], capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=120
    )
    assert len(proc.stdout) == 10 and proc.stdout.startswith("{")
    assert "Traceback" not in proc.stderr and proc.returncode in (0, EXIT_BROKEN_PIPE)


WIDE_TABLE = """
from rich.table import Table
from causalscene.commands._common import console
table = Table(*[f"column_{i:02d}" for i in range(24)])
table.add_row(*[f"value_{i:02d}" for i in range(24)])
console().print(table)
"""


def test_wide_table_printed_to_a_pipe_keeps_every_column():
    proc = subprocess.run(
        [sys.executable, "-c", WIDE_TABLE], capture_output=True, text=True, env=_env(), timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    for i in range(24):
        assert f"column_{i:02d}" in proc.stdout and f"value_{i:02d}" in proc.stdout
    assert "…" not in proc.stdout and "\x1b[" not in proc.stdout  # nothing cut, no colour codes


def test_verbs_print_through_the_one_console():
    for path in (ROOT / "causalscene" / "commands").glob("*.py"):
        if path.name != "_common.py":
            assert "Console(" not in path.read_text(), f"{path.name} builds its own console"


def test_user_error_is_one_line_exit_2_without_traceback(tmp_path):
    proc = subprocess.run(
        _cli("query", DAG, "--variables", "nope", "--json"),
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("causalscene query: error:")
