"""``causalscene --help`` is fast: building the parser imports no torch, pyro or pgmpy (DESIGN.md,
Layout). Each check runs in a fresh interpreter, since this test process has imported them all."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEAVY = ("torch", "pyro", "pgmpy")

#: in a fresh interpreter: import and register each verb module, noting the heavy packages each
#: one pulls in, then build the whole parser
PROBE = f"""
import argparse, importlib, json, sys
from causalscene.cli import build_parser, verb_modules
heavy = {HEAVY!r}
culprits = {{}}
for name in verb_modules():
    before = {{m for m in heavy if m in sys.modules}}
    module = importlib.import_module(name)
    if hasattr(module, "register"):
        module.register(argparse.ArgumentParser().add_subparsers())
    culprits.update({{m: name for m in heavy if m in sys.modules and m not in before}})
build_parser()
print(json.dumps({{"loaded": sorted(m for m in heavy if m in sys.modules), "by": culprits}}))
"""


def _python(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env
    )


def test_building_the_parser_imports_no_torch_pyro_or_pgmpy():
    proc = _python("-c", PROBE)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout.splitlines()[-1])
    assert found["loaded"] == [], f"pulled in while building the parser by: {found['by']}"


def test_help_lists_every_verb():
    proc = _python("-m", "causalscene.cli", "--help")
    assert proc.returncode == 0, proc.stderr
    for verb in ("dag", "query", "procgen", "train", "generate", "counterfactual", "demo"):
        assert verb in proc.stdout, verb
