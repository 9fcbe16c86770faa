"""causalscene.datasets: the shard format (written here by hand) and the CelebA folder reader."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from causalscene.dag import CausalDAG
from causalscene.datasets import (
    CELEBA_ATTRIBUTES,
    CelebAFolder,
    DatasetError,
    ShardDataset,
    load_arrays,
    read_npz,
    write_npz,
)

DAG = CausalDAG.from_dict(
    {
        "name": "tiny",
        "nodes": {
            "a": {"states": ["no", "yes"], "rendered": True},
            "h": {"states": ["lo", "hi"], "parents": ["a"], "hidden": True},
            "b": {"states": ["x", "y", "z"], "parents": ["h"], "rendered": True},
        },
        "cpts": {
            "a": [0.5, 0.5],
            "h": {"no": [0.5, 0.5], "yes": [0.2, 0.8]},
            "b": {"lo": [0.2, 0.3, 0.5], "hi": [0.6, 0.2, 0.2]},
        },
    }
)


def _write_folder(
    root: Path, counts=(5, 3), extra_column=None, states=None, bad_code=None, dag=DAG
):
    """A shard folder written by hand from the documented format (not by procgen)."""
    root.mkdir()
    rng = np.random.default_rng(0)
    shards, start = [], 0
    for k, count in enumerate(counts):
        arrays = {
            "images": (
                np.arange(count)[:, None, None, None] + start + np.zeros((1, 6, 6, 3))
            ).astype(np.uint8),
            "a": rng.integers(0, 2, count).astype(np.int64),
            "b": rng.integers(-1, 3, count).astype(np.int64),
        }
        if extra_column:
            arrays[extra_column] = np.zeros(count, np.int64)
        if bad_code is not None and k == 1:
            arrays["b"][0] = bad_code
        write_npz(root / f"shard-{k:05d}.npz", arrays)
        shards.append({"file": f"shard-{k:05d}.npz", "count": count})
        start += count
    meta = {
        "format": "causalscene-shards",
        "format_version": 1,
        "generator": "handmade",
        "dag": {
            "file": "tiny.yaml",
            "name": "tiny",
            "digest": dag.digest(),
            "definition": dag.to_dict(),
        },
        "labels": states or {"a": ["no", "yes"], "b": ["x", "y", "z"]},
        "extras": {},
        "data": {"key": "images", "dtype": "uint8", "shape": [6, 6, 3]},
        "seed": 0,
        "image_size": 6,
        "count": sum(counts),
        "shards": shards,
    }
    (root / "meta.json").write_text(json.dumps(meta))
    return root


def test_write_npz_is_deterministic_and_readable_by_numpy(tmp_path):
    arrays = {"images": np.arange(24, dtype=np.uint8).reshape(2, 2, 2, 3), "a": np.array([1, -1])}
    write_npz(tmp_path / "one.npz", arrays)
    write_npz(tmp_path / "two.npz", arrays)
    assert (tmp_path / "one.npz").read_bytes() == (tmp_path / "two.npz").read_bytes()
    with np.load(tmp_path / "one.npz", allow_pickle=False) as loaded:  # numpy's reader agrees
        np.testing.assert_array_equal(loaded["images"], arrays["images"])
    mapped = read_npz(tmp_path / "one.npz")
    assert isinstance(mapped["images"], np.memmap)
    np.testing.assert_array_equal(mapped["a"], [1, -1])


def test_read_npz_reads_compressed_files_and_refuses_objects(tmp_path):
    np.savez_compressed(tmp_path / "c.npz", x=np.arange(5))
    np.testing.assert_array_equal(read_npz(tmp_path / "c.npz")["x"], np.arange(5))
    np.savez(tmp_path / "o.npz", x=np.array([{"evil": 1}], dtype=object))
    with pytest.raises(DatasetError):
        read_npz(tmp_path / "o.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match="junk.npz"):
        read_npz(tmp_path / "junk.npz")


def test_shard_dataset_items_and_loader(tmp_path):
    root = _write_folder(tmp_path / "d")
    dataset = ShardDataset(root)  # the DAG stored in meta.json
    assert len(dataset) == 8 and dataset.label_nodes == ["a", "b"]
    assert dataset.locate(6) == (1, 1)
    image, labels = dataset[6]
    assert image.dtype == torch.uint8 and image.shape == (3, 6, 6)
    assert int(image[0, 0, 0]) == 6  # the item's own pixels
    assert set(labels) == {"a", "b"} and labels["a"].dtype == torch.int64
    full = read_npz(root / "shard-00001.npz")
    assert int(labels["b"]) == int(full["b"][1])
    assert int(dataset[-1][0][0, 0, 0]) == 7
    with pytest.raises(IndexError):
        dataset[8]
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, shuffle=False)
    batches = list(loader)
    assert batches[0][0].shape == (4, 3, 6, 6) and batches[0][1]["a"].shape == (4,)
    # pickles without its memory maps (DataLoader workers reopen them)
    _ = dataset[0]
    clone = pickle.loads(pickle.dumps(dataset))
    assert clone._maps == {} and int(clone[5][0][0, 0, 0]) == 5
    images, codes = load_arrays(root, DAG)
    assert images.shape == (8, 6, 6, 3) and codes["b"].shape == (8,)


def test_shard_dataset_memory_does_not_hold_the_images(tmp_path):
    root = _write_folder(tmp_path / "d", counts=(4000, 4000))
    dataset = ShardDataset(root)
    _ = dataset[0], dataset[7999]
    assert all(isinstance(m, np.memmap) for m in dataset._maps.values())
    assert sum(v.nbytes for v in dataset.labels.values()) == 2 * 8 * 8000


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"extra_column": "c"}, "unknown column 'c'"),
        ({"states": {"a": ["no", "maybe"], "b": ["x", "y", "z"]}}, "state 'maybe'"),
        ({"states": {"a": ["no", "yes"], "q": ["x"]}}, "label column 'q'"),
        ({"states": {"a": ["no", "yes"], "h": ["lo", "hi"]}}, "hidden"),
        ({"bad_code": 3}, "label 'b' has code 3"),
        ({"states": {"a": ["yes", "no"], "b": ["x", "y", "z"]}}, "misread"),
    ],
)
def test_shard_dataset_checks_labels_against_the_dag(tmp_path, kwargs, match):
    root = _write_folder(tmp_path / "d", **kwargs)
    with pytest.raises(DatasetError, match=match):
        ShardDataset(root, DAG)


def test_shard_dataset_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        ShardDataset(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no meta.json"):
        ShardDataset(tmp_path / "empty")
    root = _write_folder(tmp_path / "d")
    (root / "shard-00001.npz").unlink()
    with pytest.raises(DatasetError, match="shard-00001.npz is missing"):
        ShardDataset(root)


# ------------------------------------------------------------------------------- CelebA
CELEBA_NAMES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
    "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee "
    "Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard "
    "Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair "
    "Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()


def _celeba(root: Path, n=6, partition=True, extra_line=None) -> tuple[Path, np.ndarray]:
    from PIL import Image

    (root / "img_align_celeba").mkdir(parents=True)
    rng = np.random.default_rng(0)
    table = rng.choice([-1, 1], size=(n, len(CELEBA_NAMES)))
    lines = [str(n), " ".join(CELEBA_NAMES)]
    for i in range(n):
        name = f"{i + 1:06d}.jpg"
        pixels = np.full((218, 178, 3), 20 * i, np.uint8)
        Image.fromarray(pixels).save(root / "img_align_celeba" / name, quality=95)
        lines.append(name + " " + "  ".join(f"{v:d}" for v in table[i]))  # CelebA's spacing
    if extra_line:
        lines.append(extra_line)
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    if partition:
        (root / "list_eval_partition.txt").write_text(
            "\n".join(f"{i + 1:06d}.jpg {[0, 0, 0, 1, 2, 2][i % 6]}" for i in range(n)) + "\n"
        )
    return root, table


def test_celeba_folder_maps_attributes_onto_the_faces_dag(tmp_path, dag_path):
    faces = CausalDAG.from_yaml(dag_path("faces"))
    root, table = _celeba(tmp_path / "celeba")
    data = CelebAFolder(root, faces, image_size=32)
    assert len(data) == 6 and set(data.labels) == set(faces.label_nodes)
    col = {name: table[:, CELEBA_NAMES.index(name)] for name in CELEBA_NAMES}
    # independent reading of the documented table
    np.testing.assert_array_equal(data.labels["gender"], (col["Male"] == 1).astype(int))  # male = 1
    np.testing.assert_array_equal(data.labels["age"], (col["Young"] == -1).astype(int))  # old = 1
    for node, attribute in [
        ("smiling", "Smiling"),
        ("eyeglasses", "Eyeglasses"),
        ("bald", "Bald"),
        ("blond_hair", "Blond_Hair"),
        ("goatee", "Goatee"),
        ("mustache", "Mustache"),
        ("rosy_cheeks", "Rosy_Cheeks"),
    ]:
        np.testing.assert_array_equal(data.labels[node], (col[attribute] == 1).astype(int))
    assert set(CELEBA_ATTRIBUTES) == set(faces.label_nodes)
    image, labels = data[2]
    assert image.shape == (3, 32, 32) and image.dtype == torch.uint8
    assert abs(int(image[0, 16, 16]) - 40) <= 2  # the third image is grey level 40
    assert int(labels["gender"]) == int(col["Male"][2] == 1)
    test = CelebAFolder(root, faces, split="test", image_size=16)
    assert test.files == ["000005.jpg", "000006.jpg"]
    images, codes = test.arrays()
    assert images.shape == (2, 16, 16, 3) and codes["age"].shape == (2,)


def test_celeba_folder_errors(tmp_path, dag_path):
    faces = CausalDAG.from_yaml(dag_path("faces"))
    root, _ = _celeba(tmp_path / "a", partition=False)
    with pytest.raises(FileNotFoundError, match="list_eval_partition"):
        CelebAFolder(root, faces, split="train")
    with pytest.raises(ValueError, match="unknown split"):
        CelebAFolder(root, faces, split="dev")
    with pytest.raises(ValueError, match="'Smiles'"):
        CelebAFolder(root, faces, attributes={**CELEBA_ATTRIBUTES, "smiling": ("Smiles", "yes")})
    partial = {k: v for k, v in CELEBA_ATTRIBUTES.items() if k != "goatee"}
    with pytest.raises(ValueError, match="no attribute mapped to node 'goatee'"):
        CelebAFolder(root, faces, attributes=partial)
    data = CelebAFolder(root, faces, attributes=partial, allow_missing=True)
    assert (data.labels["goatee"] == -1).all()
    rpg = CausalDAG.from_yaml(dag_path("rpg_fight"))
    with pytest.raises(ValueError, match="unknown to DAG"):
        CelebAFolder(root, rpg)
    bad, _ = _celeba(tmp_path / "b", extra_line="000009.jpg 1 -1")
    with pytest.raises(ValueError, match="line 9 has 2 values"):
        CelebAFolder(bad, faces)
    (root / "img_align_celeba" / "000001.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="000001.jpg"):
        CelebAFolder(root, faces)[0]
    big = CelebAFolder(root, faces, max_pixels=100)
    with pytest.raises(ValueError, match="max_pixels"):
        big[1]
    with pytest.raises(FileNotFoundError):
        CelebAFolder(tmp_path / "none", faces)
