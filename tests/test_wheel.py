"""The wheel holds what an installed causalscene needs outside the checkout (``.ci/wheel_check``
installs it and runs the demo from an empty directory; this lists its files)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _copy_sources(dest: Path) -> None:
    """The checkout's files (tracked and untracked-not-ignored) without build leftovers, which
    setuptools would otherwise pack into the wheel (a stale ``build/lib``)."""
    try:
        listed = subprocess.run(
            ["git", "-C", str(ROOT), "ls-files", "-z", "-co", "--exclude-standard"],
            capture_output=True,
            check=True,
        ).stdout.decode()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built as ``.ci/wheel_check`` builds it (no dependencies, no build isolation)."""
    src, dist = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("dist")
    _copy_sources(src)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
        + ["-w", str(dist), str(src)],
        check=True,
        capture_output=True,
    )
    (built,) = dist.glob("causalscene-*.whl")
    return built


@pytest.fixture(scope="module")
def wheel_files(wheel) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def test_wheel_ships_dags_procgen_pretrained_and_types(wheel_files):
    files = set(wheel_files)
    for dag in sorted(ROOT.glob("dags/*.yaml")):
        assert f"causalscene/dags/{dag.name}" in files
    for module in sorted(ROOT.glob("procgen/*.py")):
        assert f"causalscene/procgen/{module.name}" in files
    for name in ("rpg", "faces"):
        parts = ("checkpoint.pt", "probe_factorial.pt", "config.json", "model.json", "eval.json")
        for part in (*parts, "dag.json"):
            assert f"causalscene/pretrained/{name}/{part}" in files
    assert "causalscene/py.typed" in files
    assert any(f.endswith(".dist-info/licenses/LICENSE") for f in files)


def test_wheel_claims_only_the_causalscene_name(wheel_files):
    """No top-level procgen (another PyPI project's name) or dags; every package of the source
    is in the wheel (pyproject.toml lists them one by one)."""
    tops = {f.split("/")[0] for f in wheel_files if not f.split("/")[0].endswith(".dist-info")}
    assert tops == {"causalscene"}
    packages = [
        p.parent.relative_to(ROOT).as_posix() for p in ROOT.glob("causalscene/**/__init__.py")
    ]
    for package in sorted(packages):
        assert f"{package}/__init__.py" in wheel_files, f"{package} is missing from the wheel"


def test_wheel_requires_no_unused_dependency(wheel, wheel_files):
    """torchvision was required but imported nowhere; it is gone."""
    (metadata,) = [f for f in wheel_files if f.endswith(".dist-info/METADATA")]
    with zipfile.ZipFile(wheel) as archive:
        lines = archive.read(metadata).decode().splitlines()
    required = [
        re.split(r"[\s<>=!~;\[]", line.split(":", 1)[1].strip())[0]
        for line in lines
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    ]
    assert "torch" in required and "torchvision" not in required
