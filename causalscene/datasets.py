"""Datasets: sharded image folders written by :mod:`procgen`, and CelebA in its folder layout.

Shard folder format (``FORMAT = "causalscene-shards"``, version :data:`FORMAT_VERSION`)::

    DIR/
      shard-00000.npz   uint8 ``images`` [n, H, W, 3] (or float32 ``points`` [n, 2] for 2-D toys),
      shard-00001.npz   one int64 column per label node (state index; -1 = missing), and
      ...               optional float columns of measured values (``meta["extras"]``)
      labels.csv        index, then every label (state names) and extra, one row per item
      meta.json         generator, DAG (file, digest, definition), label states, seed, sizes, ...

Shards are uncompressed ``.npz`` files written with fixed zip timestamps (same seed, same
bytes), so their arrays can be memory-mapped: :class:`ShardDataset` reads one item at a time from
the mapped shards and its memory stays flat in the number of items. Nothing is unpickled
(``allow_pickle=False`` semantics throughout).

Your own images become such a folder through :mod:`causalscene.importers` (``causalscene data
import``); :class:`CelebAFolder` reads ``img_align_celeba/`` with ``list_attr_celeba.txt`` (and
``list_eval_partition.txt`` when present) and maps CelebA's ±1 attributes onto a DAG's nodes by
:data:`CELEBA_ATTRIBUTES`. It never downloads and checks no checksums.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from causalscene.dag import CausalDAG
from causalscene.runfolder import check_meta
from causalscene.safeio import verify_shard

log = logging.getLogger(__name__)

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "CELEBA_ATTRIBUTES",
    "DatasetError",
    "ShardDataset",
    "CelebAFolder",
    "load_arrays",
    "read_meta",
    "write_npz",
    "read_npz",
    "shard_name",
    "square_resize",
    "staging_folder",
    "commit_folder",
]

FORMAT = "causalscene-shards"
FORMAT_VERSION = 1
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)

#: CelebA attribute behind each node of ``dags/faces.yaml``, and the node's state when the
#: attribute is +1 (the other state of the binary node when it is -1). Note ``age``: CelebA
#: records ``Young``, so +1 means ``young``.
CELEBA_ATTRIBUTES: dict[str, tuple[str, str]] = {
    "gender": ("Male", "male"),
    "age": ("Young", "young"),
    "smiling": ("Smiling", "yes"),
    "mustache": ("Mustache", "yes"),
    "goatee": ("Goatee", "yes"),
    "bald": ("Bald", "yes"),
    "blond_hair": ("Blond_Hair", "yes"),
    "rosy_cheeks": ("Rosy_Cheeks", "yes"),
    "eyeglasses": ("Eyeglasses", "yes"),
}

CELEBA_SPLITS = {"train": 0, "valid": 1, "test": 2}


class DatasetError(ValueError):
    """A dataset folder is malformed or disagrees with the DAG; the message names the fault."""


# ----------------------------------------------------------------------------- npz files
def shard_name(index: int) -> str:
    return f"shard-{index:05d}.npz"


def write_npz(path: str | Path, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write arrays as an uncompressed ``.npz`` that is byte-identical for identical arrays.

    ``numpy.savez`` stamps each member with the current time; this writes the same layout with
    a fixed date, members in the given order, through a temporary name and a rename.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            # streamed into the archive: no second copy of the array in memory
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)
    os.replace(tmp, path)
    return path


def read_npz(path: str | Path, mmap: bool = True) -> dict[str, np.ndarray]:
    """Arrays of an ``.npz``: memory-mapped where the member is stored uncompressed, else read.

    Never unpickles: object arrays raise :class:`DatasetError`.
    """
    path = Path(path)
    out: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as archive, open(path, "rb") as raw:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                name = info.filename[:-4]
                if mmap and info.compress_type == zipfile.ZIP_STORED:
                    out[name] = _map_member(path, raw, info)
                else:
                    with archive.open(info) as member:
                        out[name] = np.lib.format.read_array(
                            io.BytesIO(member.read()), allow_pickle=False
                        )
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable .npz shard ({exc})") from None
    return out


def _map_member(path: Path, raw, info: zipfile.ZipInfo) -> np.ndarray:
    # local file header: 30 fixed bytes, then the name and an extra field of given lengths
    raw.seek(info.header_offset)
    header = raw.read(30)
    if header[:4] != b"PK\x03\x04":
        raise ValueError(f"bad local header for {info.filename}")
    name_len = int.from_bytes(header[26:28], "little")
    extra_len = int.from_bytes(header[28:30], "little")
    start = info.header_offset + 30 + name_len + extra_len
    raw.seek(start)
    version = np.lib.format.read_magic(raw)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(raw)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(raw)
    if dtype.hasobject:
        raise ValueError(f"{info.filename} holds Python objects (refused)")
    offset = raw.tell()
    if int(np.prod(shape)) == 0:
        return np.zeros(shape, dtype)
    return np.memmap(
        path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C"
    )


# ------------------------------------------------------------------------ atomic folders
def staging_folder(out: str | Path, overwrite: bool = False) -> Path:
    """Check that ``out`` may be written and create an empty sibling staging folder for it.

    Raises:
        FileExistsError: ``out`` exists and ``overwrite`` is false, or ``out`` exists, is not
            empty and does not look like a dataset (no ``meta.json``): never replaced.
    """
    out = Path(out)
    if out.exists():
        if not overwrite:
            raise FileExistsError(f"output folder {out} exists (use --overwrite to replace it)")
        if not out.is_dir() or (any(out.iterdir()) and not (out / "meta.json").is_file()):
            raise FileExistsError(
                f"output folder {out} exists and is not a dataset folder (no meta.json); "
                "refusing to replace it"
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    return staging


def commit_folder(staging: Path, out: str | Path) -> Path:
    """Rename a finished staging folder onto ``out`` (replacing an old dataset folder)."""
    out = Path(out)
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
    os.replace(staging, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return out


# ------------------------------------------------------------------------------ reading
def read_meta(root: str | Path) -> dict[str, Any]:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {root} not found")
    path = root / "meta.json"
    if not path.is_file():
        raise DatasetError(f"{root}: no meta.json (not a finished dataset folder)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: unreadable ({exc})") from None
    check_meta(path, meta)  # shards, labels, data, extras typed (causalscene.runfolder)
    if meta.get("format") != FORMAT:
        raise DatasetError(f"{path}: format is {meta.get('format')!r}, expected {FORMAT!r}")
    if int(meta.get("format_version", -1)) > FORMAT_VERSION:
        raise DatasetError(
            f"{path}: format version {meta.get('format_version')} is newer than this reader "
            f"({FORMAT_VERSION})"
        )
    return meta


def _dag_for(meta: Mapping[str, Any], root: Path, dag: CausalDAG | None) -> CausalDAG:
    """The DAG to check labels against: the given one, else the definition stored in meta."""
    if dag is not None:
        return dag
    definition = (meta.get("dag") or {}).get("definition")
    if definition is None:
        raise DatasetError(f"{root}/meta.json: no DAG definition stored; pass dag=")
    return CausalDAG.from_dict(definition, source=f"{root}/meta.json")


def _check_labels_against_dag(meta: Mapping[str, Any], dag: CausalDAG, root: Path) -> list[str]:
    labels = meta.get("labels") or {}
    for node, states in labels.items():
        if node not in dag:
            raise DatasetError(
                f"{root}: label column '{node}' is not a node of DAG '{dag.name}' "
                f"(nodes: {', '.join(dag.nodes)})"
            )
        if dag.node(node).hidden:
            raise DatasetError(f"{root}: label column '{node}' is a hidden node of '{dag.name}'")
        known = dag.states(node)
        for state in states:
            if str(state) not in known:
                raise DatasetError(
                    f"{root}: label '{node}' has state '{state}' unknown to DAG '{dag.name}' "
                    f"(states: {', '.join(known)})"
                )
        if tuple(map(str, states)) != known:
            raise DatasetError(
                f"{root}: label '{node}' lists states {list(states)}, the DAG has {list(known)} "
                "(codes would be misread)"
            )
    return list(labels)


class ShardDataset:
    """A torch map-style dataset over a shard folder; memory flat in the number of items.

    Item ``i`` is ``(x, labels)``: ``x`` a uint8 tensor ``[C, H, W]`` (or float32 ``[2]`` for
    point data) and ``labels`` ``{node: int64 scalar tensor}`` (state index, -1 = missing), so
    the default collate gives ``{node: [B]}``. Images are read from memory-mapped shards.

    On construction every shard's columns are checked against the DAG (the one given, else the
    one stored in ``meta.json``): an unknown column, a state the DAG does not have, or a code
    outside ``[-1, cardinality)`` raises :class:`DatasetError` naming it.

    Attributes:
        labels: ``{node: int64 [N]}`` for every label column (small: 8 bytes per item per node).
        extras: ``{name: float [N]}`` measured values stored beside the labels (e.g. thickness).
    """

    def __init__(self, root: str | Path, dag: CausalDAG | None = None, transform=None):
        self.root = Path(root)
        self.meta = read_meta(self.root)
        self.dag = _dag_for(self.meta, self.root, dag)
        self.label_nodes = _check_labels_against_dag(self.meta, self.dag, self.root)
        self.data_key = self.meta.get("data", {}).get("key", "images")
        self.extra_names = list(self.meta.get("extras") or {})
        self.transform = transform
        shards = self.meta.get("shards") or []
        if not shards:
            raise DatasetError(f"{self.root}/meta.json lists no shards")
        self.files = [self.root / entry["file"] for entry in shards]
        counts = []
        labels: dict[str, list[np.ndarray]] = {node: [] for node in self.label_nodes}
        extras: dict[str, list[np.ndarray]] = {name: [] for name in self.extra_names}
        for path, entry in zip(self.files, shards):
            if not path.is_file():
                raise DatasetError(f"{self.root}: shard {entry['file']} is missing")
            verify_shard(path, entry.get("sha256"))  # SHA-256 from meta.json (safeio)
            arrays = read_npz(path)
            count = self._check_shard(path, arrays, int(entry["count"]))
            counts.append(count)
            for node in self.label_nodes:
                labels[node].append(np.array(arrays[node], np.int64))
            for name in self.extra_names:
                extras[name].append(np.array(arrays[name]))
            del arrays
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.labels = {k: np.concatenate(v) for k, v in labels.items()}
        self.extras = {k: np.concatenate(v) for k, v in extras.items()}
        if int(self.offsets[-1]) != int(self.meta.get("count", self.offsets[-1])):
            raise DatasetError(
                f"{self.root}: shards hold {int(self.offsets[-1])} items, meta.json says "
                f"{self.meta.get('count')}"
            )
        self._maps: dict[int, np.ndarray] = {}

    def _check_shard(self, path: Path, arrays: Mapping[str, np.ndarray], count: int) -> int:
        allowed = {self.data_key, *self.label_nodes, *self.extra_names}
        for name in arrays:
            if name not in allowed:
                raise DatasetError(
                    f"{path}: unknown column '{name}' (not a label node of DAG '{self.dag.name}', "
                    f"nor '{self.data_key}', nor a declared extra)"
                )
        for name in (self.data_key, *self.label_nodes, *self.extra_names):
            if name not in arrays:
                raise DatasetError(f"{path}: column '{name}' is missing")
            if len(arrays[name]) != count:
                raise DatasetError(
                    f"{path}: column '{name}' has {len(arrays[name])} rows, expected {count}"
                )
        for node in self.label_nodes:
            codes = np.asarray(arrays[node])
            if codes.dtype.kind not in "iu":
                raise DatasetError(f"{path}: label column '{node}' is {codes.dtype}, not integer")
            card = self.dag.cardinality(node)
            bad = (codes < -1) | (codes >= card)
            if bad.any():
                value = int(codes[np.flatnonzero(bad)[0]])
                raise DatasetError(
                    f"{path}: label '{node}' has code {value}, outside [-1, {card}) "
                    f"(states: {', '.join(self.dag.states(node))})"
                )
        return count

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_maps"] = {}  # memory maps are reopened in each worker process
        return state

    def _data(self, shard: int) -> np.ndarray:
        array = self._maps.get(shard)
        if array is None:
            array = read_npz(self.files[shard])[self.data_key]
            self._maps[shard] = array
        return array

    def locate(self, index: int) -> tuple[int, int]:
        """``(shard, row)`` of item ``index``."""
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for {n} items")
        shard = int(np.searchsorted(self.offsets, index, side="right") - 1)
        return shard, int(index - self.offsets[shard])

    def __getitem__(self, index: int):
        import torch

        shard, row = self.locate(int(index))
        value = np.array(self._data(shard)[row])
        if self.data_key == "images":
            x = torch.from_numpy(np.ascontiguousarray(value.transpose(2, 0, 1)))
        else:
            x = torch.from_numpy(value)
        if self.transform is not None:
            x = self.transform(x)
        i = int(index) % len(self)
        labels = {
            node: torch.tensor(int(self.labels[node][i]), dtype=torch.int64)
            for node in self.label_nodes
        }
        return x, labels

    @property
    def image_size(self) -> int | None:
        return self.meta.get("image_size")

    def __repr__(self) -> str:
        return f"ShardDataset({str(self.root)!r}, n={len(self)}, dag={self.dag.name!r})"


def load_arrays(
    root: str | Path, dag: CausalDAG | None = None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The whole dataset in memory: ``(images uint8 [N, H, W, C], {node: int64 [N]})``.

    For point data (``meta["data"]["key"] == "points"``) the first array is float32 ``[N, 2]``.
    Labels are checked against the DAG as in :class:`ShardDataset`.
    """
    dataset = ShardDataset(root, dag)
    data = np.concatenate([np.array(read_npz(f)[dataset.data_key]) for f in dataset.files])
    return data, {k: v.copy() for k, v in dataset.labels.items()}


# ------------------------------------------------------------------------------- CelebA
class CelebAFolder:
    """CelebA from its standard folder layout, labelled with a DAG's nodes.

    ``root`` holds ``img_align_celeba/`` (the aligned JPEGs), ``list_attr_celeba.txt`` (line 1:
    the count; line 2: the 40 attribute names; then ``<file> ±1 ±1 ...``) and optionally
    ``list_eval_partition.txt`` (``<file> 0|1|2`` = train/valid/test).

    Each label node of ``dag`` is mapped by ``attributes`` (default :data:`CELEBA_ATTRIBUTES`):
    ``{node: (celeba_attribute, state_when_plus_one)}``; the node must be binary and -1 maps to
    its other state. Items are ``(uint8 tensor [3, S, S], {node: int64})``: a centre crop of
    ``crop`` pixels (148 by default, the usual CelebA face crop), resized to ``image_size``.

    Args:
        split: ``"train"``, ``"valid"``, ``"test"`` (needs the partition file) or None for all.
        allow_missing: label nodes without a mapping get code -1 instead of raising.
        max_pixels: images larger than this are refused before decoding.
    """

    def __init__(
        self,
        root: str | Path,
        dag: CausalDAG,
        split: str | None = None,
        image_size: int = 64,
        crop: int | None = 148,
        attributes: Mapping[str, tuple[str, str]] | None = None,
        allow_missing: bool = False,
        max_pixels: int = 4096 * 4096,
    ):
        self.root = Path(root)
        self.dag = dag
        self.image_size = int(image_size)
        self.crop = crop
        self.max_pixels = max_pixels
        self.image_dir = self.root / "img_align_celeba"
        attr_file = self.root / "list_attr_celeba.txt"
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f"CelebA: {self.image_dir} not found")
        if not attr_file.is_file():
            raise FileNotFoundError(f"CelebA: {attr_file} not found")
        if self.image_size < 4:
            raise ValueError(f"CelebA: image_size must be >= 4, got {image_size}")
        files, names, table = _read_celeba_attributes(attr_file)
        mapping = dict(CELEBA_ATTRIBUTES if attributes is None else attributes)
        self.label_nodes = list(dag.label_nodes)
        self.mapping: dict[str, tuple[str, str]] = {}
        labels: dict[str, np.ndarray] = {}
        for node in list(mapping):
            if node not in dag:
                raise ValueError(f"CelebA mapping names node '{node}', unknown to DAG '{dag.name}'")
        for node in self.label_nodes:
            if node not in mapping:
                if not allow_missing:
                    raise ValueError(
                        f"CelebA: no attribute mapped to node '{node}' of DAG '{dag.name}' "
                        "(pass attributes= or allow_missing=True)"
                    )
                labels[node] = np.full(len(files), -1, np.int64)
                continue
            attribute, plus_state = mapping[node]
            states = dag.states(node)
            if len(states) != 2:
                raise ValueError(
                    f"CelebA: node '{node}' must be binary to take attribute '{attribute}'"
                )
            if attribute not in names:
                raise ValueError(
                    f"CelebA: attribute '{attribute}' (for node '{node}') not in {attr_file}"
                )
            plus = dag.state_index(node, plus_state)
            column = table[:, names.index(attribute)]
            labels[node] = np.where(column > 0, plus, 1 - plus).astype(np.int64)
            self.mapping[node] = (attribute, plus_state)
        keep = np.ones(len(files), bool)
        if split is not None:
            if split not in CELEBA_SPLITS:
                raise ValueError(
                    f"CelebA: unknown split '{split}' (use {', '.join(CELEBA_SPLITS)} or None)"
                )
            partition = self.root / "list_eval_partition.txt"
            if not partition.is_file():
                raise FileNotFoundError(f"CelebA: split '{split}' needs {partition}")
            part = _read_celeba_partition(partition)
            missing = [f for f in files if f not in part]
            if missing:
                raise ValueError(f"CelebA: {missing[0]} is not in {partition}")
            keep = np.array([part[f] == CELEBA_SPLITS[split] for f in files])
        self.files = [f for f, k in zip(files, keep) if k]
        self.labels = {node: codes[keep] for node, codes in labels.items()}

    def __len__(self) -> int:
        return len(self.files)

    def load_image(self, index: int) -> np.ndarray:
        """Image ``index`` as uint8 ``[S, S, 3]`` (centre crop, then resize)."""
        from PIL import Image

        path = self.image_dir / self.files[index]
        if not path.is_file():
            raise FileNotFoundError(f"CelebA: image {path} not found")
        with Image.open(path) as image:
            width, height = image.size
            if width * height > self.max_pixels:
                raise ValueError(
                    f"CelebA: {path} is {width}x{height}, above max_pixels={self.max_pixels}"
                )
            return square_resize(image, self.image_size, self.crop)

    def __getitem__(self, index: int):
        import torch

        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} images")
        index = int(index) % n
        image = torch.from_numpy(np.ascontiguousarray(self.load_image(index).transpose(2, 0, 1)))
        labels = {
            node: torch.tensor(int(codes[index]), dtype=torch.int64)
            for node, codes in self.labels.items()
        }
        return image, labels

    def arrays(
        self, indices: Iterable[int] | None = None
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``(images uint8 [n, S, S, 3], {node: int64 [n]})`` for ``indices`` (default: all)."""
        idx = list(range(len(self))) if indices is None else [int(i) for i in indices]
        images = (
            np.stack([self.load_image(i) for i in idx])
            if idx
            else np.zeros((0, self.image_size, self.image_size, 3), np.uint8)
        )
        return images, {node: codes[idx] for node, codes in self.labels.items()}


def square_resize(image: Any, size: int, crop: int | None = None) -> np.ndarray:
    """A PIL image as uint8 ``[size, size, 3]``: converted to RGB, the centred square of side
    ``crop`` cut out (None, or a crop larger than the image: the largest centred square), then
    resized (bilinear, ``reducing_gap=2.0``). Shared by :class:`CelebAFolder` and
    :mod:`causalscene.importers`."""
    from PIL import Image

    width, height = image.size
    side = min(width, height) if crop is None else min(int(crop), width, height)
    left, top = (width - side) // 2, (height - side) // 2
    square = image.convert("RGB").crop((left, top, left + side, top + side))
    resized = square.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(resized, np.uint8)


def _read_celeba_attributes(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    lines = path.read_text(encoding="utf-8").splitlines()
    if len(lines) < 2:
        raise ValueError(f"CelebA: {path} is too short (needs a count line and a header line)")
    try:
        count = int(lines[0].strip())
    except ValueError:
        raise ValueError(
            f"CelebA: {path} line 1 should be the number of images, got {lines[0]!r}"
        ) from None
    names = lines[1].split()
    files, rows = [], []
    for number, line in enumerate(lines[2:], start=3):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != len(names) + 1:
            raise ValueError(
                f"CelebA: {path} line {number} has {len(parts) - 1} values, expected {len(names)}"
            )
        try:
            values = [int(v) for v in parts[1:]]
        except ValueError:
            raise ValueError(f"CelebA: {path} line {number} has a non-integer attribute") from None
        if any(v not in (-1, 1) for v in values):
            raise ValueError(f"CelebA: {path} line {number} has a value other than -1/1")
        files.append(parts[0])
        rows.append(values)
    if len(files) != count:
        raise ValueError(f"CelebA: {path} announces {count} images but lists {len(files)}")
    table = np.array(rows, np.int8).reshape(len(files), len(names))
    return files, names, table


def _read_celeba_partition(path: Path) -> dict[str, int]:
    out = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise ValueError(f"CelebA: {path} line {number} should be '<file> 0|1|2'")
        out[parts[0]] = int(parts[1])
    return out
