"""Atomic writes: complete files with the usual permissions, nothing left behind on failure."""

import os
import stat

import pytest

from causalscene.utils import atomic_write_bytes, atomic_write_json, parse_assignments


def test_atomic_write_gives_umask_permissions_and_no_temp_files(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_json(tmp_path / "a" / "x.json", {"k": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert path.read_text().strip() == '{\n  "k": 1\n}'
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]


def test_atomic_write_failure_keeps_the_old_file(tmp_path):
    path = atomic_write_bytes(tmp_path / "x.bin", b"old")

    with pytest.raises(TypeError):
        atomic_write_bytes(path, object())  # not bytes: the write fails midway
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]


def test_parse_assignments_errors():
    assert parse_assignments(["a=x", "b = y"]) == {"a": "x", "b": "y"}
    with pytest.raises(ValueError, match="not of the form"):
        parse_assignments(["a"])
    with pytest.raises(ValueError, match="twice"):
        parse_assignments(["a=x", "a=y"])
