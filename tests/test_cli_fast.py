"""``causalscene --help`` is fast: building the parser imports no torch, pyro or pgmpy (DESIGN.md,
Layout). Each check runs in a fresh interpreter, since this test process has imported them all."""

import json
import os
import subprocess
import sys

import pytest

from causalscene.cli import verb_modules

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEAVY = ("torch", "pyro", "pgmpy")

#: in a fresh interpreter: import one verb module and let it register its verbs
ONE_VERB = """
import argparse, importlib, json, sys
module = importlib.import_module(sys.argv[1])
if hasattr(module, "register"):
    module.register(argparse.ArgumentParser().add_subparsers())
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""

#: in a fresh interpreter: build the whole parser
PARSER = """
import json, sys
from causalscene.cli import build_parser
build_parser()
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def _python(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env
    )


def _heavy_loaded(*args: str) -> list[str]:
    proc = _python(*args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.mark.parametrize("module", verb_modules())
def test_verb_module_registers_without_torch_pyro_or_pgmpy(module):
    """A verb imports what it needs when it runs, not when the parser is built."""
    assert _heavy_loaded("-c", ONE_VERB.format(heavy=HEAVY), module) == []


def test_building_the_parser_imports_no_torch_pyro_or_pgmpy():
    assert _heavy_loaded("-c", PARSER.format(heavy=HEAVY)) == []


def test_help_lists_every_verb():
    proc = _python("-m", "causalscene.cli", "--help")
    assert proc.returncode == 0, proc.stderr
    for verb in ("dag", "query", "procgen", "train", "generate", "counterfactual", "demo"):
        assert verb in proc.stdout, verb
