"""The Besserve et al. reproductions (``modules-planted``, ``modules-faces``, ``modules-dcgan``,
``sdr``, ``stretch-extrapolation``) at the tiny
scale: each reported number is checked against its definition, recomputed from the files the run
wrote where they allow, and ``holds`` against our own reading of the claim — not that it holds
(tiny runs are too small for the claims to mean anything)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score
from torch import nn

from causalscene.modularity import cluster_modules
from causalscene.reproductions import run
from causalscene.reproductions.besserve2021 import stretch_distortion, stretch_width

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


# ------------------------------------------------------------------------ stretch-extrapolation


def _np_stretch(maps, factor=1.5):
    """Bilinear (half-pixel centres, edge-clamped) resize of the width to round(factor * w), by
    hand in numpy, then the centre w columns."""
    maps = np.asarray(maps, dtype=np.float64)
    w = maps.shape[-1]
    wide = round(factor * w)
    src = np.maximum((np.arange(wide) + 0.5) * (w / wide) - 0.5, 0.0)
    left = np.floor(src).astype(int)
    right = np.minimum(left + 1, w - 1)
    lam = src - left
    out = maps[..., left] * (1 - lam) + maps[..., right] * lam
    start = (wide - w) // 2
    return out[..., start : start + w]


def test_stretch_width_is_a_centred_bilinear_stretch():
    rng = np.random.default_rng(0)
    for w in (4, 8, 16, 6):
        maps = rng.normal(size=(2, 3, 5, w)).astype(np.float32)
        got = stretch_width(torch.from_numpy(maps)).numpy()
        assert got.shape == maps.shape
        np.testing.assert_allclose(got, _np_stretch(maps), atol=1e-5)
        constant = np.repeat(maps[..., :1], w, axis=-1)  # constant along the width
        np.testing.assert_allclose(stretch_width(torch.from_numpy(constant)).numpy(), constant)
        assert not np.allclose(got, maps)  # a map varying along the width does change
    with pytest.raises(ValueError, match="factor"):
        stretch_width(torch.zeros(1, 1, 4, 4), 0.5)


class _Pointwise(nn.Module):
    """z → a 16×16 map (``hidden``) → a 1×1 conv (+ ``pattern``, a fixed map varying along the
    width) → image: with no pattern the layer after ``hidden`` commutes with the stretch."""

    def __init__(self, pattern: float):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(4, 3 * 16 * 16)
        self.hidden = nn.Identity()
        self.out = nn.Conv2d(3, 3, 1)
        self.register_buffer("pattern", pattern * torch.linspace(-1, 1, 16).repeat(16, 1))

    def forward(self, z):
        h = self.hidden(self.fc(z).view(-1, 3, 16, 16))
        return self.out(h) + self.pattern


def test_stretch_distortion_is_zero_when_the_layer_commutes_with_the_stretch():
    z = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))
    assert stretch_distortion(_Pointwise(0.0), "hidden", z) == pytest.approx(0.0, abs=1e-10)
    # a fixed pattern added after the layer is not stretched with it: the definition, by hand
    net = _Pointwise(3.0)
    with torch.no_grad():
        h = net.fc(z).view(-1, 3, 16, 16)
        target = _np_stretch(net(z))
        images = (net.out(torch.from_numpy(_np_stretch(h)).float()) + net.pattern).numpy()
    expected = np.mean((images - target) ** 2) / target.var()
    assert expected > 0.01
    assert stretch_distortion(net, "hidden", z) == pytest.approx(expected, rel=1e-4)


def _decode_stretched(model, z, layer):
    """The PlainVAE decoder run by hand (fc, SiLU, 4×4 grid, transposed convs with SiLU between)
    with ``layer``'s output stretched by :func:`_np_stretch`; the mean image."""
    dec = model.decoder
    with torch.no_grad():
        h = torch.nn.functional.silu(dec.fc(z)).view(-1, dec.grid_channels, 4, 4)
        for i, name in enumerate(dec.names):
            h = getattr(dec, name)(h)
            if f"decoder.{name}" == layer:
                h = torch.from_numpy(_np_stretch(h)).float()
            if i < len(dec.names) - 1:
                h = torch.nn.functional.silu(h)
        return model.likelihood.mean(h).numpy()


def test_stretch_extrapolation_tiny(tmp_path):
    from causalscene.sdr import sdr_penalty
    from causalscene.train import load_run

    out = tmp_path / "stretch"
    result = _run("stretch-extrapolation", out)
    measured = result["measured"]
    assert measured["stretch"] == 1.5 and measured["sdr_weight"] > 0
    assert list(measured["runs"]) == ["no_penalty", "sdr_penalty"]
    weights = [r["sdr_weight"] for r in measured["runs"].values()]
    assert weights == [0.0, measured["sdr_weight"]]
    init = None
    for name, entry in measured["runs"].items():
        folder = out / f"run_{name}"
        model, config = load_run(folder)
        assert config.sdr_weight == entry["sdr_weight"] and config.seed == 0
        lines = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        assert len(lines) == config.epochs == 2
        assert entry["train_elbo"] == [line["train_elbo"] for line in lines]
        layers = [f"decoder.{n}" for n in model.decoder.names]
        assert list(entry["distortion"]) == list(entry["at_init"]) == layers
        assert all(len(curve) == config.epochs for curve in entry["distortion"].values())
        assert len(entry["sdr_penalty"]) == config.epochs
        with torch.no_grad():
            penalty = float(sdr_penalty(model.decoder))
        assert entry["sdr_penalty"][-1] == pytest.approx(penalty, rel=1e-5)
        # the last epoch's distortions, recomputed from the saved model by hand
        z = model.sample_latents(measured["latents"], seed=measured["latent_seed"])
        with torch.no_grad():
            target = _np_stretch(model.decode(z))
        for layer in layers:
            images = _decode_stretched(model, z, layer)
            expected = np.mean((images - target) ** 2) / target.var()
            got = entry["distortion"][layer][-1]
            assert got == pytest.approx(expected, rel=1e-3, abs=1e-9), (name, layer)
        init = entry["at_init"] if init is None else init
        assert entry["at_init"] == init  # same seed, same initial model
        means = [float(np.mean(v)) for v in zip(*entry["distortion"].values())]
        assert measured["mean_over_layers"][name] == pytest.approx(means, rel=1e-12)
    assert (out / "stretch_distortion.png").is_file()
    means = measured["mean_over_layers"]
    plain = means["no_penalty"]
    holds = means["sdr_penalty"][-1] < plain[-1] and plain[-1] > plain[0]
    assert result["holds"] == holds
