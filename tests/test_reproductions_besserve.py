"""The Besserve et al. reproductions (``modules-planted``, ``modules-faces``, ``modules-dcgan``,
``sdr``) at the tiny
scale: each reported number is checked against its definition, recomputed from the files the run
wrote where they allow, and ``holds`` against our own reading of the claim — not that it holds
(tiny runs are too small for the claims to mean anything)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from causalscene.modularity import cluster_modules
from causalscene.reproductions import run

RECORD = {"name", "claim", "source", "measured", "holds", "seed", "scale", "device", "seconds"}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """One folder for all three, so ``modules-faces`` and ``sdr`` share the faces VAE."""
    return tmp_path_factory.mktemp("besserve")


def _run(name, out):
    result = run(name, out, seed=0, scale="tiny", device="cpu")
    assert RECORD <= set(result)
    assert (result["name"], result["seed"], result["scale"], result["device"]) == (
        name,
        0,
        "tiny",
        "cpu",
    )
    assert result["claim"] and result["source"] and result["seconds"] >= 0
    assert isinstance(result["holds"], bool)
    assert json.loads((out / "result.json").read_text()) == json.loads(json.dumps(result))
    return result


def _close(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-12)


def test_modules_planted_numbers_follow_from_the_written_maps(base):
    out = base / "planted"
    measured = _run("modules-planted", out)["measured"]
    entries = {int(key[2:]): m for key, m in measured.items() if key.startswith("K=")}
    assert entries
    for k, m in entries.items():
        folder = out / f"planted_k{k}"
        written = json.loads((folder / "modules.json").read_text())
        maps = np.load(folder / "influence_maps.npy")
        truth = np.repeat(np.arange(k), 6)  # channels_per_module=6: channel c is module c // 6
        assert len(written["nmf_labels"]) == len(truth) == maps.shape[0]
        for method in ("nmf", "kmeans"):
            ari = m[f"ari_{method}_at_true_k"]
            assert -1.0 <= ari <= 1.0
            labels = cluster_modules(maps, k, method=method, seed=0).labels
            assert ari == pytest.approx(adjusted_rand_score(truth, labels))
        assert m["stability_best_k"] == written["k"] == written["stability"]["best_k"]
        if written["k"] == k:  # modules.json's own labels are at the true K: the same ARI
            assert m["ari_nmf_at_true_k"] == pytest.approx(
                adjusted_rand_score(truth, written["nmf_labels"])
            )
        ks = list(range(2, k + 4))
        assert [int(key) for key in m["consistency"]] == ks == written["stability"]["ks"]
        assert list(m["consistency"].values()) == written["stability"]["consistency"]
        assert all(-1.0 <= v <= 1.0 for v in m["consistency"].values())
        assert all(-1.0 - 1e-9 <= v <= 1.0 + 1e-9 for v in m["template_cosine"].values())
    assert measured["min_ari_nmf_at_true_k"] == min(
        e["ari_nmf_at_true_k"] for e in entries.values()
    )
    assert measured["min_ari_kmeans_at_true_k"] == min(
        e["ari_kmeans_at_true_k"] for e in entries.values()
    )
    peaks = all(e["stability_best_k"] == k for k, e in entries.items())
    assert measured["stability_peaks_at_true_k"] == peaks
    holds = measured["min_ari_nmf_at_true_k"] == 1.0 and peaks
    assert json.loads((out / "result.json").read_text())["holds"] == holds


def test_modules_faces_transfer_and_controls_follow_their_definitions(base):
    out = base / "faces"
    _check_faces_modules(out, _run("modules-faces", out))


def test_modules_dcgan_transfer_and_controls_follow_their_definitions(base):
    """The same analysis on the generator of a DCGAN trained on faces: its ``conv1`` (the first
    stride-2 transposed conv; 32 px, base 4 at the tiny scale: 8 channels), and the GAN's last
    epoch as metrics.jsonl wrote it."""
    out = base / "dcgan"
    result = _run("modules-dcgan", out)
    _check_faces_modules(out, result)
    shared = base / "_faces_dcgan_tiny_seed0" / "run"
    model = json.loads((shared / "model.json").read_text())
    assert model["kind"] == "dcgan" and model["latent_dim"] == 100
    assert json.loads((out / "modules" / "modules.json").read_text())["channels"] == 8
    last = json.loads((shared / "metrics.jsonl").read_text().splitlines()[-1])
    gan = result["measured"]["gan_last_epoch"]
    assert gan == {k: last[k] for k in ("loss_d", "loss_g", "d_real", "d_fake")}
    assert 0 < gan["d_real"] < 1 and 0 < gan["d_fake"] < 1


def _check_faces_modules(out, result):
    """``modules-faces``/``modules-dcgan``: every number against modules.json and the maps."""
    measured = result["measured"]
    written = json.loads((out / "modules" / "modules.json").read_text())
    assert measured["layer"] == written["layer"] and measured["layer"].endswith("conv1")
    assert measured["k"] == written["k"] and measured["k_chosen_by"] == "stability"
    assert [int(k) for k in measured["stability"]] == written["stability"]["ks"] == [2, 3, 4, 5, 6]
    assert list(measured["stability"].values()) == written["stability"]["consistency"]
    assert all(0.0 <= a <= 1.0 for a in measured["probe_heldout_accuracy_on_real_faces"].values())
    assert sorted(measured["by_k"], key=int) == [str(k) for k in sorted({written["k"], 3, 4})]
    maps = np.load(out / "modules" / "influence_maps.npy")
    for key, entry in measured["by_k"].items():
        k = int(key)
        labels = cluster_modules(maps, k, seed=0).labels
        assert entry["module_sizes"] == [int((labels == j).sum()) for j in range(k)]
        assert sum(entry["module_sizes"]) == written["channels"]
        _check_controls(entry, k)
        assert (out / f"faces_hybrids_k{k}.png").is_file()
    chosen = measured["by_k"][str(measured["k"])]
    assert chosen["module_sizes"] == [len(written["modules"][str(j)]) for j in range(measured["k"])]
    holds = (
        len(chosen["attributes_with_module_specific_transfer"]) >= 2
        and chosen["distinct_controlling_modules"] >= 2
    )
    assert result["holds"] == holds


def _check_controls(entry, k):
    """Each control recomputed from the transfer matrix (rates in [0, 1] or NaN)."""
    transfer = entry["transfer_rate"]
    assert list(transfer) == [f"module {j}" for j in range(k)]
    attributes = list(transfer["module 0"])
    matrix = np.array([[transfer[m][a] for a in attributes] for m in transfer], dtype=float)
    assert np.all(np.isnan(matrix) | ((matrix >= 0) & (matrix <= 1)))
    specific = []
    for a_i, attr in enumerate(attributes):
        col = matrix[:, a_i]
        if np.all(np.isnan(col)):
            assert attr not in entry["controls"]
            continue
        control = entry["controls"][attr]
        assert control["module"] == int(np.nanargmax(col))
        assert _close(control["transfer"], float(np.nanmax(col)))
        assert _close(control["spread"], float(np.nanmax(col) - np.nanmin(col)))
        assert 0.0 <= control["spread"] <= 1.0
        if control["spread"] >= 0.3:
            specific.append(attr)
    assert entry["attributes_with_module_specific_transfer"] == specific
    modules = {entry["controls"][a]["module"] for a in specific}
    assert entry["distinct_controlling_modules"] == len(modules)


def _summary(values):
    """sdr_summary's definition, from the values: mode of the 60-bin log10 histogram on
    [-1.5, 1.5], median, std and IQR of log10 SDR, count."""
    values = np.asarray(values, dtype=np.float64)  # saved as float32; summarised in float64
    logs = np.log10(values)
    counts, edges = np.histogram(logs, bins=60, range=(-1.5, 1.5))
    top = int(np.argmax(counts))
    return {
        "count": len(values),
        "mode": 10 ** ((edges[top] + edges[top + 1]) / 2),
        "median": float(np.median(values)),
        "log10_std": float(logs.std()),
        "log10_iqr": float(np.subtract(*np.percentile(logs, [75, 25]))),
    }


def test_sdr_summaries_follow_from_the_saved_values(base):
    out = base / "sdr"
    result = _run("sdr", out)
    measured = result["measured"]
    shared = base / "_faces_vae_tiny_seed0"  # the faces VAE of modules-faces, trained once
    assert (shared / "run" / "checkpoint.pt").is_file()
    assert len((shared / "run" / "metrics.jsonl").read_text().splitlines()) == 1
    saved = json.loads((out / "sdr" / "sdr.json").read_text())
    reported = {"trained": measured, "untrained": measured["untrained"]}
    for tag in ("trained", "untrained"):
        values = np.load(out / "sdr" / f"sdr_{tag}.npz")
        for part in ("decoder", "encoder"):
            array = values[part]
            assert array.size and np.all(np.isfinite(array) & (array > 0))
            summary = reported[tag][part]
            assert summary == saved[tag][part]
            for name, value in _summary(array).items():
                assert summary[name] == pytest.approx(value, rel=1e-9), (tag, part, name)
            share = float(np.mean(np.abs(np.log10(array)) < np.log10(1.5)))
            assert summary["fraction_within_1.5x"] == pytest.approx(share)
    assert measured["per_layer"] == {
        "decoder": saved["trained"]["decoder_layers"],
        "encoder": saved["trained"]["encoder_layers"],
    }
    counts = sum(s["count"] for s in measured["per_layer"]["decoder"].values())
    assert counts == measured["decoder"]["count"]
    assert measured["trained_vs_untrained_decoder_log10_std"] == [
        measured["decoder"]["log10_std"],
        measured["untrained"]["decoder"]["log10_std"],
    ]
    dec, enc = measured["decoder"], measured["encoder"]
    holds = 0.8 <= dec["mode"] <= 1.25 and enc["log10_std"] > dec["log10_std"]
    assert result["holds"] == holds
