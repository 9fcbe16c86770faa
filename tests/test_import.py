"""``causalscene data import`` / ``import-celeba`` (issue 16, item 1): your own images as a shard
folder. Source images are made here; the imported pixels are checked against PIL run on a numpy
crop of each decoded file, the codes against the CSV's state names read by hand."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from causalscene import importers
from causalscene.cli import main
from causalscene.dag import CausalDAG
from causalscene.datasets import ShardDataset, read_npz

ROOT = Path(__file__).resolve().parents[1]
RPG = CausalDAG.shipped("rpg_fight")
#: label columns of the test CSV: a subset of rpg's observed nodes (the others are all missing)
COLUMNS = ("actor", "action", "reaction")


def _image(rng: np.random.Generator, i: int) -> np.ndarray:
    """Noise of a size that varies with ``i`` (landscape, portrait, square; 18-29 px)."""
    return rng.integers(0, 256, (18 + i % 7, 20 + i % 10, 3), dtype=np.uint8)


def _folder(tmp: Path, n: int = 30) -> tuple[Path, Path, list[dict[str, str]]]:
    """``n`` images (PNG and JPEG, some in a subfolder) and a CSV with a few empty cells."""
    folder = tmp / "images"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        name = f"sub/{i:03d}.jpg" if i % 3 == 0 else f"{i:03d}.png"
        Image.fromarray(_image(rng, i)).save(folder / name, quality=90)
        row = {"file": name}
        for node in COLUMNS:
            states = RPG.states(node)
            row[node] = (
                "" if (i + len(node)) % 5 == 0 else states[(i * 7 + len(node)) % len(states)]
            )
        rows.append(row)
    labels = tmp / "labels.csv"
    _write_csv(labels, ["file", *COLUMNS], rows)
    return folder, labels, rows


def _write_csv(path: Path, header: list[str], rows: list[dict[str, str]]) -> None:
    lines = [",".join(header)] + [",".join(r.get(c, "") for c in header) for r in rows]
    path.write_text("\n".join(lines) + "\n")


def _reference(path: Path, size: int, crop: int | None) -> np.ndarray:
    """The centred square (numpy slicing of the decoded file), then PIL's bilinear resize."""
    pixels = np.asarray(Image.open(path).convert("RGB"))
    h, w, _ = pixels.shape
    side = min(h, w) if crop is None else min(crop, h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = Image.fromarray(np.ascontiguousarray(pixels[top : top + side, left : left + side]))
    return np.asarray(square.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0))


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".partial-" in p.name or ".old-" in p.name)


# --------------------------------------------------------------------------- a folder
@pytest.mark.parametrize("crop", [None, 16])
def test_import_folder_matches_the_source_images_and_the_csv(tmp_path, capsys, crop):
    folder, labels, rows = _folder(tmp_path)
    out = tmp_path / "data"
    argv = ["data", "import", str(folder), "--labels", str(labels), "--dag", "rpg"]
    argv += ["--out", str(out), "--size", "16", "--shard-size", "8", "--json", "--no-progress"]
    code, printed, _ = _run(capsys, *argv, *(["--crop", str(crop)] if crop else []))
    assert code == 0
    summary = json.loads(printed)
    assert summary["count"] == 30 and summary["shards"] == 4 and summary["image_size"] == 16
    dataset = ShardDataset(out)  # checked against the DAG stored in meta.json
    assert len(dataset) == 30 and [len(read_npz(f)["images"]) for f in dataset.files] == [
        8,
        8,
        8,
        6,
    ]
    images = np.concatenate([np.asarray(read_npz(f)["images"]) for f in dataset.files])
    for i, row in enumerate(rows):
        np.testing.assert_array_equal(images[i], _reference(folder / row["file"], 16, crop))
    assert set(dataset.labels) == set(RPG.label_nodes)  # hidden nodes are never columns
    for node in RPG.label_nodes:
        want = [
            list(RPG.states(node)).index(row[node]) if row.get(node) else -1 for row in rows
        ]  # a node without a column: every label missing
        np.testing.assert_array_equal(dataset.labels[node], want)
    assert (dataset.labels["actor"] == -1).sum() == sum(r["actor"] == "" for r in rows) > 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["generator"] is None and meta["source"]["kind"] == "folder"
    assert meta["source"]["label_columns"] == list(COLUMNS)
    assert meta["dag"]["name"] == "rpg_fight" and meta["missing"]["reactor"] == 30
    written = (out / "labels.csv").read_text().splitlines()
    assert written[0].split(",") == ["index", *RPG.label_nodes, "file"]
    assert written[4].split(",")[-1] == rows[3]["file"]
    assert _leftovers(tmp_path) == []


def test_import_streams_one_shard_at_a_time(tmp_path, monkeypatch):
    """With 30 images and shards of 8, no more than 8 images are decoded before each shard is
    written, and no shard holds more than 8: memory holds one shard of images."""
    folder, labels, _ = _folder(tmp_path)
    decoded, at_write = [0], []
    load, write = importers.load_image, importers.write_npz

    def counting_load(*args, **kwargs):
        decoded[0] += 1
        return load(*args, **kwargs)

    def recording_write(path, arrays):
        at_write.append((decoded[0], len(arrays["images"])))
        return write(path, arrays)

    monkeypatch.setattr(importers, "load_image", counting_load)
    monkeypatch.setattr(importers, "write_npz", recording_write)
    importers.import_folder(folder, labels, RPG, tmp_path / "d", size=16, shard_size=8)
    assert at_write == [(8, 8), (16, 8), (24, 8), (30, 6)]


def test_import_is_deterministic_and_overwrite_replaces(tmp_path):
    folder, labels, _ = _folder(tmp_path, n=10)
    first = importers.import_folder(folder, labels, "rpg", tmp_path / "a", size=16, shard_size=4)
    importers.import_folder(folder, labels, "rpg", tmp_path / "b", size=16, shard_size=4)
    for name in ("shard-00000.npz", "shard-00002.npz", "labels.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert first.labelled["actor"] == 8 and first.labelled["reactor"] == 0
    with pytest.raises(FileExistsError, match="--overwrite"):
        importers.import_folder(folder, labels, RPG, tmp_path / "a", size=16)
    again = importers.import_folder(folder, labels, RPG, tmp_path / "a", size=8, overwrite=True)
    assert again.shards == 1 and ShardDataset(tmp_path / "a").image_size == 8


# --------------------------------------------------------------------------- bad input
def _bad_folder(tmp: Path, fault: str) -> tuple[Path, Path, list[str]]:
    """A folder with one fault; the extra CLI flags it needs."""
    folder, labels, rows = _folder(tmp, n=20)
    header, flags = ["file", *COLUMNS], []
    if fault == "unknown state":
        rows[2]["action"] = "fly"
    elif fault == "no file column":
        header = ["image", *COLUMNS]
        rows = [{**r, "image": r["file"]} for r in rows]
    elif fault == "unknown column":
        header = [*header, "wings"]
    elif fault == "hidden column":
        header = [*header, "actor_strength"]
    elif fault == "duplicate file":
        rows[5]["file"] = rows[1]["file"]
    elif fault == "missing file":
        rows[6]["file"] = "gone.png"
    elif fault == "bad row":
        _write_csv(labels, header, rows)
        lines = labels.read_text().splitlines()
        lines[8] += ",extra"
        labels.write_text("\n".join(lines) + "\n")
        return folder, labels, flags
    elif fault == "empty csv":
        labels.write_text("")
        return folder, labels, flags
    elif fault == "no rows":
        rows = []
    elif fault == "truncated image":  # after two shards of 8 are written
        data = (folder / rows[17]["file"]).read_bytes()
        (folder / rows[17]["file"]).write_bytes(data[: len(data) // 2])
        flags = ["--shard-size", "8"]
    elif fault == "unreadable image":
        (folder / rows[4]["file"]).write_text("not an image")
    elif fault == "oversized image":
        Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(folder / rows[10]["file"])
        flags = ["--max-pixels", "1000"]
    _write_csv(labels, header, rows)
    return folder, labels, flags


@pytest.mark.parametrize(
    "fault, message",
    [
        ("unknown state", "labels.csv line 4: column 'action' has unknown state 'fly'"),
        ("no file column", "labels.csv line 1: no 'file' column"),
        ("unknown column", "labels.csv line 1: column 'wings' is not a node of DAG 'rpg_fight'"),
        ("hidden column", "line 1: column 'actor_strength' is a hidden node"),
        ("duplicate file", "labels.csv line 7: duplicate file '001.png' (already on line 3)"),
        ("missing file", "labels.csv line 8: image 'gone.png' not found"),
        ("bad row", "labels.csv line 9: 5 fields, the header has 4"),
        ("empty csv", "labels.csv: empty"),
        ("no rows", "labels.csv: no rows"),
        ("truncated image", "017.png (LABELS line 19): unreadable or truncated image"),
        ("unreadable image", "004.png (LABELS line 6): unreadable or truncated image"),
        ("oversized image", "010.png (LABELS line 12): image is 50x40, above max_pixels=1000"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(tmp_path, capsys, fault, message):
    folder, labels, flags = _bad_folder(tmp_path, fault)
    out = tmp_path / "data"
    code, _, err = _run(
        capsys, "data", "import", str(folder), "--labels", str(labels), "--dag", "rpg",
        "--out", str(out), "--size", "16", "--no-progress", *flags,
    )  # fmt: skip
    assert code == 2 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert message.replace("LABELS", str(labels)) in err
    assert not out.exists() and _leftovers(tmp_path) == []


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    """PIL's own bound (MAX_IMAGE_PIXELS): its warning (above it) and its error (above twice it)
    both become the one-line error, whatever --max-pixels says."""
    folder, labels, rows = _folder(tmp_path, n=4)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # the first image holds 360 pixels
    with pytest.raises(importers.DatasetError, match=r"000.jpg \(.* line 2\): oversized image"):
        importers.import_folder(folder, labels, RPG, tmp_path / "d", size=16)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)  # 360 > 300: a warning, not an error
    with pytest.raises(importers.DatasetError, match="000.jpg .*oversized image"):
        importers.import_folder(folder, labels, RPG, tmp_path / "d", size=16)
    assert not (tmp_path / "d").exists()


def test_option_errors_and_a_real_process(tmp_path):
    folder, labels, _ = _folder(tmp_path, n=4)
    with pytest.raises(ValueError, match="--size must be at least 4"):
        importers.import_folder(folder, labels, RPG, tmp_path / "d", size=2)
    with pytest.raises(FileNotFoundError, match="image folder"):
        importers.import_folder(tmp_path / "none", labels, RPG, tmp_path / "d")
    base = [sys.executable, "-m", "causalscene.cli", "data", "import", str(folder)]
    proc = subprocess.run(
        [*base, "--labels", str(labels), "--dag", "nosuchdag", "--out", str(tmp_path / "d")],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "no shipped DAG 'nosuchdag'" in lines[0]


def test_the_verb_defaults_are_the_library_defaults():
    from causalscene.commands import data

    assert data.DEFAULT_SIZE == importers.DEFAULT_SIZE
    assert data.DEFAULT_SHARD_SIZE == importers.DEFAULT_SHARD_SIZE
    assert data.DEFAULT_MAX_PIXELS == importers.DEFAULT_MAX_PIXELS


# ------------------------------------------------------------------------------ CelebA
CELEBA_NAMES = ["Male", "Young", "Smiling", "Mustache", "Goatee", "Bald", "Blond_Hair"]
CELEBA_NAMES += ["Rosy_Cheeks", "Eyeglasses", "Wearing_Hat"]


def _celeba(root: Path, n: int = 8) -> tuple[Path, np.ndarray]:
    """CelebA's layout: noise JPEGs, the attribute table (±1) and the partition 0/1/2."""
    (root / "img_align_celeba").mkdir(parents=True)
    rng = np.random.default_rng(1)
    table = rng.choice([-1, 1], size=(n, len(CELEBA_NAMES)))
    lines = [str(n), " ".join(CELEBA_NAMES)]
    for i in range(n):
        name = f"{i + 1:06d}.jpg"
        pixels = rng.integers(0, 256, (29, 25, 3), dtype=np.uint8)  # odd margins
        Image.fromarray(pixels).save(root / "img_align_celeba" / name, quality=95)
        lines.append(name + " " + "  ".join(f"{v:d}" for v in table[i]))
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    split = [0, 0, 0, 1, 2, 2, 0, 2]
    partition = [f"{i + 1:06d}.jpg {split[i % 8]}" for i in range(n)]
    (root / "list_eval_partition.txt").write_text("\n".join(partition) + "\n")
    return root, table


def test_import_celeba_split(tmp_path, capsys):
    root, table = _celeba(tmp_path / "celeba")
    out = tmp_path / "test"
    argv = ["data", "import-celeba", str(root), "--dag", "faces", "--split", "test"]
    code, printed, _ = _run(capsys, *argv, "--out", str(out), "--size", "16", "--crop", "20")
    assert code == 0 and "wrote 3 images" in printed
    dataset = ShardDataset(out)
    rows = [4, 5, 7]  # the files in split 2
    images = np.asarray(read_npz(dataset.files[0])["images"])
    for k, i in enumerate(rows):
        path = root / "img_align_celeba" / f"{i + 1:06d}.jpg"
        np.testing.assert_array_equal(images[k], _reference(path, 16, 20))
    col = {name: table[rows, j] for j, name in enumerate(CELEBA_NAMES)}
    np.testing.assert_array_equal(dataset.labels["gender"], col["Male"] == 1)  # male = 1
    np.testing.assert_array_equal(dataset.labels["age"], col["Young"] == -1)  # old = 1
    np.testing.assert_array_equal(dataset.labels["eyeglasses"], col["Eyeglasses"] == 1)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["generator"] is None and meta["source"]["kind"] == "celeba"
    assert meta["source"]["split"] == "test" and meta["source"]["attributes"]["age"] == [
        "Young",
        "young",
    ]
    first = importers.import_celeba(root, "faces", tmp_path / "one", max_images=2, size=8)
    assert first.count == 2 and ShardDataset(tmp_path / "one").meta["source"]["split"] is None


def test_import_celeba_errors_name_the_file_and_line(tmp_path, capsys):
    root, _ = _celeba(tmp_path / "celeba")
    (root / "img_align_celeba" / "000003.jpg").write_bytes(b"\xff\xd8\xff")
    out = tmp_path / "d"
    code, _, err = _run(
        capsys, "data", "import-celeba", str(root), "--out", str(out), "--size", "8",
        "--shard-size", "2", "--no-progress",
    )  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "000003.jpg (" in err and "list_attr_celeba.txt line 5)" in err
    assert not out.exists() and _leftovers(tmp_path) == []
    code, _, err = _run(
        capsys, "data", "import-celeba", str(root), "--dag", "rpg", "--out", str(out)
    )
    assert code == 2 and "unknown to DAG 'rpg_fight'" in err


# ------------------------------------------------------------------------- end to end
def _learnable_folder(tmp: Path, n: int = 64) -> tuple[Path, Path]:
    """Faces-DAG labels that show in the pixels (red = male, a green band = smiling), with
    missing cells; the other nodes have no column."""
    folder = tmp / "faces"
    folder.mkdir()
    rng = np.random.default_rng(2)
    rows = []
    for i in range(n):
        male, smiling = (int(v) for v in rng.integers(0, 2, 2))
        pixels = rng.integers(0, 30, (20, 20, 3)).astype(np.uint8)
        pixels[..., 0] += 200 * male
        pixels[6:12, :, 1] += 200 * smiling
        name = f"{i}.png" if i % 2 else f"{i}.jpg"
        Image.fromarray(pixels).save(folder / name)
        gender = "" if i % 9 == 0 else ("male" if male else "female")
        rows.append({"file": name, "gender": gender, "smiling": "yes" if smiling else "no"})
    labels = tmp / "faces.csv"
    _write_csv(labels, ["file", "gender", "smiling"], rows)
    return folder, labels


@pytest.mark.slow
def test_train_evaluate_and_cage_on_an_imported_folder(tmp_path, capsys):
    """The verbs' image probes learn from the imported data (there is no procgen generator to
    draw a factorial design from) and their JSON says so. Measured: 86-111 s wall (about 25 s
    of CPU) on a shared 2-core CPU."""
    folder, labels = _learnable_folder(tmp_path)
    data, run = tmp_path / "data", tmp_path / "run"
    code, _, _ = _run(
        capsys, "data", "import", str(folder), "--labels", str(labels), "--dag", "faces",
        "--out", str(data), "--size", "16", "--no-progress",
    )  # fmt: skip
    assert code == 0
    tiny = ["--epochs", "1", "--batch-size", "16", "--latent-dim", "2", "--base-channels", "4"]
    code, _, _ = _run(
        capsys, "train", "--dag", "faces", "--data", str(data), "--out", str(run), *tiny,
        "--device", "cpu", "--no-progress",
    )  # fmt: skip
    assert code == 0
    code, printed, _ = _run(
        capsys, "evaluate", str(run), "--n-per-state", "2", "--n-counterfactual", "4",
        "--probe-epochs", "1", "--probe-images", "40", "--device", "cpu", "--json",
    )  # fmt: skip
    assert code == 0 and json.loads(printed)["probe_training"] == "the data (observational)"
    assert (run / "probe.pt").is_file() and not (run / "probe_factorial.pt").exists()
    code, printed, _ = _run(
        capsys, "cage", str(run), "--pairs", "gender:smiling", "--outcome", "image",
        "--permutations", "3", "--num-latents", "20", "--alphas", "1", "--probe-epochs", "1",
        "--device", "cpu", "--out", str(tmp_path / "cage"), "--json",
    )  # fmt: skip
    assert code == 0
    assert json.loads(printed)["image_probe_training"] == "the data (observational)"


def test_imported_shards_carry_their_sha256(tmp_path):
    """meta.json records each shard's SHA-256 (hashlib, here) so reads verify it, as procgen's."""
    import hashlib

    from causalscene import importers

    folder = tmp_path / "imgs"
    folder.mkdir()
    rows = ["file,gender"]
    for i in range(5):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(folder / f"{i}.png")
        rows.append(f"{i}.png,{'male' if i % 2 else 'female'}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "data"
    importers.import_folder(folder, folder / "labels.csv", "faces", out, size=8, shard_size=2)
    meta = json.loads((out / "meta.json").read_text())
    assert len(meta["shards"]) == 3
    for shard in meta["shards"]:
        assert shard["sha256"] == hashlib.sha256((out / shard["file"]).read_bytes()).hexdigest()
