"""The Besserve et al. reproductions (``modules-planted``, ``modules-faces``, ``modules-dcgan``,
``hybrids-robustness``, ``hybrids-quality``, ``sdr``, ``stretch-extrapolation``) at the tiny
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


# hybrids-robustness / hybrids-quality: the decoder conv layers of the tiny faces VAE (32 px:
# conv1 .. conv3; conv3 makes the image's colours, so it is not one of them)
HYBRID_LAYERS = ["decoder.conv1", "decoder.conv2"]


def _check_layer_modules(out, layer):
    """The modules of ``layer``: analyse_modules at the given K = 3."""
    written = json.loads((out / f"modules_{layer}" / "modules.json").read_text())
    assert written["layer"] == layer and written["k"] == 3 and written["k_chosen_by"] == "given"
    maps = np.load(out / f"modules_{layer}" / "influence_maps.npy")
    assert len(maps) == written["channels"]
    assert cluster_modules(maps, 3, seed=0).labels.tolist() == written["nmf_labels"]


def _reference_robustness(reads, attributes):
    """One layer's entry recomputed from its saved reads, one pair and attribute at a time."""
    o1, o2, h = reads["real_original1"], reads["real_original2"], reads["real_hybrids"]
    f1, f2, fh = reads["psi_original1"], reads["psi_original2"], reads["psi_hybrids"]
    n, n_attr = o1.shape
    entry = {"modules": {}, "informative_reads": 0}
    pooled = [0, 0, 0, 0]  # informative, kept there, all, kept there
    for j in range(len(h)):
        carried = []
        for a in range(n_attr):
            differ = [i for i in range(n) if f1[i, a] != f2[i, a]]
            took = sum(fh[j, i, a] == f2[i, a] for i in differ)
            if len(differ) >= 10 and took / len(differ) >= 0.5:
                carried.append(attributes[a])
        free = [a for a in range(n_attr) if attributes[a] not in carried]
        informative = [(i, a) for i in range(n) for a in free if o1[i, a] != o2[i, a]]
        every = [(i, a) for i in range(n) for a in free]
        counts = [
            len(informative),
            sum(h[j, i, a] == o1[i, a] for i, a in informative),
            len(every),
            sum(h[j, i, a] == o1[i, a] for i, a in every),
        ]
        pooled = [p + c for p, c in zip(pooled, counts)]
        entry["modules"][f"module {j}"] = {
            "carried": carried,
            "informative_reads": counts[0],
            "keep_where_originals_differ": counts[1] / counts[0] if counts[0] else math.nan,
            "keep_all_reads": counts[3] / counts[2] if counts[2] else math.nan,
        }
    entry["informative_reads"] = pooled[0]
    entry["keep_where_originals_differ"] = pooled[1] / pooled[0] if pooled[0] else math.nan
    entry["keep_all_reads"] = pooled[3] / pooled[2] if pooled[2] else math.nan
    return entry


def _same_entry(reported, reference):
    """Dicts of the same keys whose numbers agree (NaN as NaN: JSON null)."""
    if isinstance(reference, dict):
        assert set(reported) == set(reference)
        for key, value in reference.items():
            _same_entry(reported[key], value)
    elif isinstance(reference, float):
        assert _close(math.nan if reported is None else reported, reference)
    else:
        assert reported == reference


def test_hybrids_robustness_tiny(base):
    """Every keep share recomputed, pair by pair, from the reads saved per layer; the carried
    attributes from the factorial probe's reads; ``holds`` from the stated thresholds (0.7 at
    the layer closest to the output, a spread of 0.1 over layers)."""
    out = base / "robustness"
    result = _run("hybrids-robustness", out)
    measured = result["measured"]
    assert measured["k"] == 3 and measured["k_chosen_by"] == "fixed"
    attributes = measured["attributes"]
    assert set(attributes) == set(
        json.loads((base / "_faces_vae_tiny_seed0" / "data" / "meta.json").read_text())["labels"]
    )
    for key in ("classifier", "factorial_probe"):
        accuracy = measured[f"{key}_heldout_accuracy_on_real_faces"]
        assert set(accuracy) == set(attributes) and all(0 <= v <= 1 for v in accuracy.values())
    assert list(measured["layers"]) == HYBRID_LAYERS
    shares = []
    for layer, entry in measured["layers"].items():
        _check_layer_modules(out, layer)
        reads = np.load(out / f"reads_{layer}.npz")
        n = 32  # pairs at the tiny scale
        for who in ("real", "psi"):
            assert reads[f"{who}_original1"].shape == reads[f"{who}_original2"].shape == (n, 9)
            assert reads[f"{who}_hybrids"].shape == (3, n, 9)
            assert set(np.unique(reads[f"{who}_hybrids"])) <= {0, 1}
        _same_entry(entry, _reference_robustness(reads, attributes))
        shares.append(
            math.nan
            if entry["keep_where_originals_differ"] is None
            else entry["keep_where_originals_differ"]
        )
    assert measured["layer_closest_to_output"] == HYBRID_LAYERS[-1]
    last = measured["keep_at_last_layer"]
    spread = measured["keep_spread_over_layers"]
    assert _close(math.nan if last is None else last, shares[-1])
    assert _close(
        math.nan if spread is None else spread,
        max(shares) - min(shares) if not any(map(math.isnan, shares)) else math.nan,
    )
    holds = last is not None and spread is not None and last >= 0.7 and spread >= 0.1
    assert result["holds"] == holds


def test_hybrids_quality_tiny(base):
    """Every d² recomputed from the features saved per image set (real held-out faces, the
    originals, each module's hybrids, all sets of hybrids as large as the originals'); ratios
    and ``holds`` (every ratio at most 1.5) from them."""
    from causalscene.quality import frechet_distance

    out = base / "quality"
    result = _run("hybrids-quality", out)
    measured = result["measured"]
    assert measured["k"] == 3 and measured["k_chosen_by"] == "fixed"
    assert (out / "frechet_features.txt").read_text().strip() == measured["features"]
    features = np.load(out / "features.npz")
    real = features["real"]
    assert real.shape == (64, 128) == (measured["real_images"], 128)
    _check_quality_inputs(base, out, features)

    def d2(a):
        return frechet_distance(
            a.mean(0), np.cov(a, rowvar=False), real.mean(0), np.cov(real, rowvar=False)
        )

    originals = features["originals"]
    assert originals.shape == (32, 128) == (measured["images_per_set"], 128)
    assert measured["frechet_originals"] == pytest.approx(d2(originals), rel=1e-9)
    assert list(measured["frechet_hybrids"]) == HYBRID_LAYERS
    ratios = []
    for layer, entry in measured["frechet_hybrids"].items():
        _check_layer_modules(out, layer)
        assert list(entry) == ["module 0", "module 1", "module 2"]
        for module, d in entry.items():
            hybrid = features[f"{layer}:{module}"]
            assert hybrid.shape == originals.shape
            assert d >= 0 and d == pytest.approx(d2(hybrid), rel=1e-9)
            ratio = measured["ratio_to_originals"][layer][module]
            assert ratio == pytest.approx(d / measured["frechet_originals"], rel=1e-12)
            ratios.append(ratio)
    assert measured["frechet_originals"] >= 0
    assert set(features.files) == {"real", "originals"} | {
        f"{l}:module {j}" for l in HYBRID_LAYERS for j in range(3)
    }
    assert measured["max_ratio"] == max(ratios)
    assert result["holds"] == (max(ratios) <= 1.5)


def _check_quality_inputs(base, out, features):
    """The saved features are those of the last 64 dataset faces and of the decoded first 32 of
    64 prior draws of seed 1, in the cached feature network."""
    from causalscene.datasets import load_arrays
    from causalscene.probes import ImageProbe
    from causalscene.quality import FeatureNetwork, image_features
    from causalscene.train import load_run

    shared = base / "_faces_vae_tiny_seed0"
    network = FeatureNetwork(ImageProbe.load(out / "frechet_features.pt"), "cached")
    images, _ = load_arrays(shared / "data")
    assert np.allclose(image_features(network, images[-64:]), features["real"], atol=1e-5)
    model = load_run(shared / "run", device="cpu")[0]
    originals = model(model.sample_latents(64, seed=1)[:32])
    assert np.allclose(image_features(network, originals), features["originals"], atol=1e-5)


def test_hybrids_robustness_shares_on_random_reads():
    """The tiny run's classifiers read constants (no informative read at all): the shares'
    code is checked here against the pair-by-pair reference on random reads, where module 0's
    hybrids take Original 2's factorial reads of the first three attributes (carried) and some
    attributes have fewer than 10 disagreeing pairs (NaN transfer: not carried)."""
    from causalscene.reproductions.besserve2020 import _robustness_at

    rng = np.random.default_rng(3)
    n, k, attributes = 40, 3, [f"a{i}" for i in range(6)]
    real = {
        "original1": rng.integers(0, 2, (n, 6)),
        "original2": rng.integers(0, 2, (n, 6)),
        "hybrids": rng.integers(0, 2, (k, n, 6)),
    }
    f1, f2 = rng.integers(0, 2, (n, 6)), rng.integers(0, 2, (n, 6))
    f2[:, 5] = f1[:, 5]  # attribute a5: the originals never disagree
    fh = rng.integers(0, 2, (k, n, 6))
    fh[0, :, :3] = f2[:, :3]
    factorial = {"original1": f1, "original2": f2, "hybrids": fh}
    entry = _robustness_at(real, factorial, attributes)
    reads = {f"real_{key}": v for key, v in real.items()}
    reads |= {f"psi_{key}": v for key, v in factorial.items()}
    reference = _reference_robustness(reads, attributes)
    assert reference["modules"]["module 0"]["carried"][:3] == ["a0", "a1", "a2"]
    assert reference["informative_reads"] > 0
    _same_entry(json.loads(json.dumps(entry)), reference)
