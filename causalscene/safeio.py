"""Files that cannot lie: the one loader of every ``.pt`` file, SHA-256 sidecars, and an atomic
writer that never replaces what it should not.

- :func:`load_torch` — every ``torch.load`` of the package: ``weights_only=True``, the sidecar's
  SHA-256 verified first, and any failure turned into one line saying the file is not a plain
  checkpoint (never torch's advice to pass ``weights_only=False``, which would run the file's
  code).
- :func:`write_with_sidecar` — ``FILE`` and ``FILE.sha256`` (``sha256sum`` format). While
  ``FILE`` is replaced the sidecar lists the old and the new digest, so a kill at any instant
  leaves a pair that verifies; afterwards only the new one.
- :func:`verify_sidecar` — a file whose digest is not in its sidecar is refused
  (:class:`IntegrityError`); a file without a sidecar (written before checksums existed) is read
  with a logged warning.
- :func:`atomic_write` — a temporary file beside the target, then a rename. The target is checked
  first (:func:`output_target`): a directory, device, FIFO or socket is refused with one line; a
  symlink is written *through* (its target file is replaced, the link stays). Temporary files of a
  writer that was killed (its pid is gone) are removed on the next write of the same output.
- :func:`first_nonfinite` — the name of the first tensor holding NaN/inf.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import stat
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = [
    "IntegrityError",
    "sha256_bytes",
    "sha256_file",
    "sidecar_path",
    "write_with_sidecar",
    "verify_sidecar",
    "verify_shard",
    "load_torch",
    "first_nonfinite",
    "output_target",
    "atomic_write",
    "remove_stale_temps",
]

SIDECAR_SUFFIX = ".sha256"
_CHUNK = 1 << 20


class IntegrityError(ValueError):
    """A file's bytes are not the ones recorded when it was written (or it cannot be trusted)."""


# ------------------------------------------------------------------------------------ digests
def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sidecar_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def _sidecar_text(digests: Iterable[str], name: str) -> bytes:
    return "".join(f"{d}  {name}\n" for d in dict.fromkeys(digests)).encode()


def read_sidecar(path: str | Path) -> list[str] | None:
    """The digests listed in ``path``'s sidecar, or None when it has none."""
    side = sidecar_path(path)
    if not side.is_file():
        return None
    try:
        lines = side.read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError):
        raise IntegrityError(f"{side}: unreadable SHA-256 sidecar") from None
    digests = [line.split()[0] for line in lines if line.strip()]
    if not digests or any(len(d) != 64 or set(d) - set("0123456789abcdef") for d in digests):
        raise IntegrityError(f"{side}: malformed SHA-256 sidecar (expected 'HEX  NAME' lines)")
    return digests


def write_with_sidecar(path: str | Path, data: bytes) -> Path:
    """``data`` at ``path`` and its SHA-256 at ``path.sha256``, both atomically (module doc)."""
    path, new = Path(path), sha256_bytes(data)
    try:
        old = read_sidecar(path) or ([sha256_file(path)] if path.is_file() else [])
    except IntegrityError:
        old = [sha256_file(path)] if path.is_file() else []
    atomic_write(sidecar_path(path), _sidecar_text([new, *old], path.name))
    atomic_write(path, data)
    atomic_write(sidecar_path(path), _sidecar_text([new], path.name))
    return path


def verify_sidecar(path: str | Path, what: str = "file") -> bool:
    """Check ``path`` against its sidecar: True when verified, False when it has none (logged);
    :class:`IntegrityError` when its bytes changed since they were written."""
    path = Path(path)
    digests = read_sidecar(path)
    if digests is None:
        log.warning("%s: no SHA-256 recorded (written before checksums); read unverified", path)
        return False
    if sha256_file(path) not in digests:
        raise IntegrityError(
            f"{path}: corrupt {what}: its SHA-256 does not match {sidecar_path(path).name} "
            "(damaged or changed after it was written)"
        )
    return True


def verify_shard(path: Path, digest: str | None) -> bool:
    """Check a data shard against the SHA-256 its ``meta.json`` records: True when verified,
    False when none is recorded (a folder written before checksums: logged once per folder);
    :class:`IntegrityError` when the bytes differ."""
    if digest is None:
        if path.parent not in _UNVERIFIED:
            _UNVERIFIED.add(path.parent)
            log.warning(
                "%s: meta.json records no SHA-256 of its shards; read unverified", path.parent
            )
        return False
    if sha256_file(path) != digest:
        raise IntegrityError(
            f"{path}: corrupt shard: its SHA-256 does not match meta.json "
            "(damaged or changed after it was written)"
        )
    return True


_UNVERIFIED: set[Path] = set()


# ------------------------------------------------------------------------------------ loading
def load_torch(path: str | Path, what: str = "checkpoint", device: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` after :func:`verify_sidecar`; any failure becomes
    one ``ValueError`` line (``FileNotFoundError`` stays itself)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such {what}")
    verify_sidecar(path, what)
    try:
        with warnings.catch_warnings():  # torch's notes on odd pickles: the refusal says enough
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every failure is the same fault for the user
        raise ValueError(
            f"{path}: corrupt {what}: not a plain checkpoint of tensors ({_reason(exc, path)})"
        ) from None


def _starts_with_zip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(4) == b"PK\x03\x04"


def _reason(exc: BaseException, path: Path) -> str:
    text = str(exc)
    if "zip" not in text and not _starts_with_zip(path):
        return "not a torch zip archive"
    if isinstance(exc, pickle.UnpicklingError) or "Weights only load failed" in text:
        return "it holds Python objects beyond tensors; refused unread"
    if "zip" in text or "central directory" in text or isinstance(exc, EOFError):
        return "truncated or not a torch zip archive"
    return type(exc).__name__


def first_nonfinite(tensors: Iterable[tuple[str, Any]]) -> str | None:
    """The name of the first floating tensor of ``(name, tensor)`` pairs that holds NaN or inf."""
    import torch

    for name, value in tensors:
        if isinstance(value, torch.Tensor) and (value.is_floating_point() or value.is_complex()):
            if not bool(torch.isfinite(value).all()):
                return name
    return None


# ------------------------------------------------------------------------------------ writing
_KINDS = {
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
    stat.S_IFIFO: "FIFO",
    stat.S_IFSOCK: "socket",
    stat.S_IFDIR: "directory",
}


def output_target(path: str | Path) -> Path:
    """The regular file that writing ``path`` replaces: ``path``, or the file its symlink names.

    Raises ``ValueError`` (one line) when it is a directory, device, FIFO or socket, or when a
    folder above it is a file."""
    path = Path(path)
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        mode = None
    except NotADirectoryError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode):
        kind = _KINDS.get(stat.S_IFMT(mode), "special file")
        raise ValueError(f"{path}: is a {kind}, not a regular file; refusing to write over it")
    for parent in target.parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise ValueError(f"{path}: {parent} is not a folder")
            break
    return target


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(target: Path) -> int:
    """Remove ``.NAME.PID.*.tmp`` files beside ``target`` whose writer (PID) is gone, and the
    pid-less ``.NAME.*.tmp`` of older versions; the number removed."""
    prefix, removed = f".{target.name}.", 0
    try:
        entries = list(target.parent.iterdir())
    except OSError:
        return 0
    for entry in entries:
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        middle = name[len(prefix) : -4].split(".")
        if len(middle) == 2 and middle[0].isdigit():  # ours: .NAME.PID.XXXXXXXX.tmp
            if int(middle[0]) == os.getpid() or _pid_alive(int(middle[0])):
                continue
        elif len(middle) != 1 or len(middle[0]) != 8:  # older: .NAME.XXXXXXXX.tmp; else not ours
            continue
        entry.unlink(missing_ok=True)
        removed += 1
    if removed:
        log.info("removed %d temporary file(s) of an interrupted write of %s", removed, target)
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder, then rename (a crash
    leaves the old file or the new one). Special files are refused, symlinks written through
    (:func:`output_target`); returns ``path``."""
    path = Path(path)
    target = output_target(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target)
    prefix = f".{target.name}.{os.getpid()}."
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=target.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
