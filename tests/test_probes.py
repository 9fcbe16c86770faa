"""Probes: the batched logistic solver against sklearn, LatentProbe, ImageProbe."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from torch.nn import functional as F

from causalscene.probes import EarlyStopping, ImageProbe, LatentProbe, fit_logistic_batched
from causalscene.tensors import to_float_images, to_uint8_images


def _sklearn_fit(x, y, l2, sample_weight=None):
    """sklearn's objective Σ w·BCE + ‖w‖²/(2C); ours is the weighted mean + (l2/2)‖w‖²."""
    n_eff = len(x) if sample_weight is None else sample_weight.sum()
    model = LogisticRegression(C=1.0 / (l2 * n_eff), tol=1e-12, max_iter=10_000)
    model.fit(x, y, sample_weight=sample_weight)
    return model.coef_[0], model.intercept_[0]


def test_batched_logistic_matches_sklearn_per_problem():
    rng = np.random.default_rng(0)
    n, d, p = 600, 4, 5
    x = rng.standard_normal((n, d))
    y = np.stack([(x @ rng.standard_normal(d) + rng.standard_normal(n) > 0) for _ in range(p)])
    weight = (rng.random((p, n)) > 0.2).astype(float)
    w, b = fit_logistic_batched(
        torch.tensor(x), torch.tensor(y, dtype=torch.float64), torch.tensor(weight), l2=1e-2
    )
    for k in range(p):
        keep = weight[k] > 0
        ref_w, ref_b = _sklearn_fit(x[keep], y[k][keep], 1e-2)
        np.testing.assert_allclose(w[k].numpy(), ref_w, atol=1e-5)
        assert abs(float(b[k]) - ref_b) < 1e-5


def test_batched_logistic_per_problem_design_equals_shared():
    rng = np.random.default_rng(1)
    x = torch.tensor(rng.standard_normal((300, 3)))
    y = torch.tensor((rng.random((3, 300)) < 0.4).astype(float))
    w1, b1 = fit_logistic_batched(x, y, l2=1e-1)
    w2, b2 = fit_logistic_batched(x.expand(3, 300, 3).contiguous(), y, l2=1e-1)
    torch.testing.assert_close(w1, w2)
    torch.testing.assert_close(b1, b2)


def test_batched_logistic_separable_stays_finite():
    x = torch.linspace(-1, 1, 50, dtype=torch.float64)[:, None]
    y = (x[:, 0] > 0).double()[None]
    w, b = fit_logistic_batched(x, y, l2=1e-3)
    ref_w, ref_b = _sklearn_fit(x.numpy(), y[0].numpy(), 1e-3)
    assert torch.isfinite(w).all()
    np.testing.assert_allclose(w[0].numpy(), ref_w, rtol=1e-4)
    assert abs(float(b[0]) - ref_b) < 1e-4


def test_latent_probe_recovers_planted_normal_and_accuracy():
    rng = np.random.default_rng(2)
    z = rng.standard_normal((3000, 6)).astype(np.float32)
    direction = np.array([1.0, 2.0, 0, 0, 0, -2.0]) / 3.0
    labels = {"a": (z @ direction + 0.3 * rng.standard_normal(3000) > 0.2).astype(np.int64)}
    probe = LatentProbe().fit(z, labels, holdout=0.25, seed=0)
    cosine = float(probe.normal("a").double() @ torch.tensor(direction))
    assert cosine > 0.98
    # Bayes accuracy with noise 0.3 on a unit-norm score is about 0.9; the probe must be near it
    assert 0.85 < probe.accuracy_["a"] <= 1.0
    m = probe.predict(torch.tensor(z[:100]), "a").numpy()
    assert np.array_equal(m, (probe.predict_proba(torch.tensor(z[:100]), "a") > 0.5).long().numpy())


@pytest.mark.parametrize(
    "codes, message",
    [
        (np.array([0, 1, 2, 1, 0, 1]), "not binary"),
        (np.array([0, 1, 1, 1, 1, 1]), "fewer than 2 examples of class 0"),
        (np.array([0.5, 1, 0, 1, 0, 1]), "not binary"),
    ],
)
def test_latent_probe_bad_labels(codes, message):
    z = np.random.default_rng(0).standard_normal((6, 2))
    with pytest.raises(ValueError, match=message):
        LatentProbe().fit(z, {"a": codes}, holdout=0)


def test_latent_probe_unknown_attribute():
    z = np.random.default_rng(0).standard_normal((8, 2))
    probe = LatentProbe().fit(z, {"a": np.array([0, 1] * 4)}, holdout=0)
    with pytest.raises(ValueError, match="unknown attribute 'b'"):
        probe.normal("b")


def _toy_images(n, rng):
    a = rng.integers(0, 2, n)
    b = rng.integers(0, 3, n)
    images = rng.integers(0, 40, (n, 16, 16, 3)).astype(np.uint8)
    images[a == 1, :8, :, 0] += 180
    for k in range(3):
        images[b == k, :, 4 * k : 4 * k + 4, 1] += 180
    return images, {"a": a, "b": b}


def test_image_probe_learns_attributes_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    images, labels = _toy_images(700, rng)
    train = slice(0, 500)
    test = slice(500, 700)
    probe = ImageProbe({"a": 2, "b": 3}, 16).fit(
        images[train], {k: v[train] for k, v in labels.items()}, epochs=4, seed=0
    )
    accuracy = probe.accuracy(images[test], {k: v[test] for k, v in labels.items()})
    assert accuracy["a"] > 0.95 and accuracy["b"] > 0.95
    # uint8 NHWC and float NCHW inputs give the same answer
    as_float = torch.from_numpy(images[test]).permute(0, 3, 1, 2).float() / 255
    p_uint8 = probe.predict_proba(images[test])
    p_float = probe.predict_proba(as_float)
    np.testing.assert_allclose(p_uint8["b"], p_float["b"], atol=1e-6)
    loaded = ImageProbe.load(probe.save(tmp_path / "probe.pt"))
    np.testing.assert_allclose(loaded.predict_proba(images[test])["a"], p_uint8["a"], atol=1e-6)


@pytest.mark.parametrize("shape", [(8, 8), (16, 12), (6, 6), (5, 9)])
def test_probe_pooling_equals_adaptive_pooling(shape):
    from causalscene.probes import _Pool4

    x = torch.randn(3, 5, *shape, dtype=torch.float64)
    expected = torch.nn.AdaptiveAvgPool2d(4)(x)
    torch.testing.assert_close(_Pool4()(x), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="GPU determinism (device runs)")
def test_image_probe_fit_is_reproducible_on_a_gpu():
    """Same seed, same ψ on the same GPU, bit for bit (captured and eager), at 32 px (a 4×4 map
    before the pooling: the plain, deterministic average pool)."""
    rng = np.random.default_rng(2)
    images, labels = _toy_images(700, rng)
    images = images.repeat(2, axis=1).repeat(2, axis=2)  # 32 px
    for captured in (False, True):
        fits = [
            ImageProbe({"a": 2, "b": 3}, 32).fit(
                images,
                labels,
                epochs=2,
                seed=4,
                batch_size=64,
                device="cuda",
                cuda_graph=captured,
            )
            for _ in range(2)
        ]
        for p, q in zip(fits[0].parameters(), fits[1].parameters()):
            assert torch.equal(p, q)


def test_image_probe_refuses_a_graph_it_cannot_capture():
    rng = np.random.default_rng(0)
    images, labels = _toy_images(40, rng)
    with pytest.raises(ValueError, match="cuda_graph needs a CUDA device"):
        ImageProbe({"a": 2, "b": 3}, 16).fit(images, labels, epochs=1, cuda_graph=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU (device runs)")
def test_image_probe_captured_step_follows_the_eager_loop():
    """On a GPU the captured fit (full batches replayed, the last incomplete one eager) takes the
    eager loop's steps: per-epoch losses within 1e-3 relative over 3 epochs (Adam's capturable
    arithmetic differs in the last bits; near 0, within 1e-4 of the first epoch's loss: the third
    epoch's is ~3e-5, where the H200 gave 2.6197e-05 against 2.6132e-05), and the same held-out
    accuracy within 0.02."""
    rng = np.random.default_rng(1)
    images, labels = _toy_images(1100, rng)
    fit = {k: v[:1000] for k, v in labels.items()}
    test = {k: v[1000:] for k, v in labels.items()}
    runs = {}
    for captured in (False, True):
        probe = ImageProbe({"a": 2, "b": 3}, 16).fit(
            images[:1000],
            fit,
            epochs=3,
            seed=0,
            batch_size=96,
            device="cuda",
            cuda_graph=captured,
        )
        runs[captured] = (probe.history, probe.accuracy(images[1000:], test))
    np.testing.assert_allclose(
        runs[True][0], runs[False][0], rtol=1e-3, atol=1e-4 * runs[False][0][0]
    )
    for name in ("a", "b"):
        assert abs(runs[True][1][name] - runs[False][1][name]) <= 0.02
        assert runs[True][1][name] > 0.9


def test_early_stopping_stops_on_an_easy_task_at_the_full_schedules_accuracy(tmp_path):
    """Planted toy attributes (learnt in a few epochs): with patience 2 ψ stops well before the
    12-epoch maximum, its epochs are the full schedule's first ones bit for bit, and on a third,
    independent set its accuracy is the full schedule's within 0.02 (stated tolerance)."""
    rng = np.random.default_rng(3)
    images, labels = _toy_images(900, rng)
    train, watch, test = slice(0, 400), slice(400, 600), slice(600, 900)
    part = {k: {n: v[s] for n, v in labels.items()} for k, s in (("tr", train), ("w", watch))}
    full = ImageProbe({"a": 2, "b": 3}, 16).fit(images[train], part["tr"], epochs=12, seed=0)
    rule = EarlyStopping(images[watch], part["w"], patience=2, tolerance=0.005)
    early = ImageProbe({"a": 2, "b": 3}, 16).fit(
        images[train], part["tr"], epochs=12, seed=0, early_stopping=rule
    )
    record = early.fit_record
    run = record["epochs_run"]
    assert run < 12 and record["epochs_max"] == 12 and len(early.history) == run
    assert early.history == full.history[:run]  # same draws: no RNG in the held-out reading
    # the record: recounted accuracy on the watched set after the last epoch
    last = early.accuracy(images[watch], part["w"])
    assert record["heldout_accuracy"][-1] == pytest.approx(last, abs=1e-12)
    assert record["heldout_n"] == 200 and len(record["heldout_accuracy"]) == run
    # stopped because the last `patience` epochs raised no attribute above its best + tolerance
    curve = record["heldout_accuracy"]
    best = {k: max(e[k] for e in curve[: run - 2]) for k in curve[0]}
    assert all(e[k] <= best[k] + 0.005 for e in curve[run - 2 :] for k in e)
    truth = {k: v[test] for k, v in labels.items()}
    got, ref = early.accuracy(images[test], truth), full.accuracy(images[test], truth)
    assert all(abs(got[k] - ref[k]) <= 0.02 for k in ref), (got, ref)
    loaded = ImageProbe.load(early.save(tmp_path / "probe.pt"))
    assert loaded.fit_record == record
    with pytest.raises(ValueError, match="patience >= 0"):
        EarlyStopping(images[watch], part["w"], patience=-1)


def test_image_probe_loss_is_the_sum_of_mean_cross_entropies_over_known_labels():
    """One full-batch step's recorded loss = Σ_node mean cross-entropy over that node's known
    labels (missing codes -1 left out; a node with none adds 0), from the starting weights."""
    rng = np.random.default_rng(6)
    images, labels = _toy_images(96, rng)
    labels["a"][:20] = -1
    labels["c"] = np.full(96, -1)  # no label at all
    cards = {"a": 2, "b": 3, "c": 2}
    start = ImageProbe(cards, 16).fit(images, labels, epochs=0, seed=0)  # the starting weights
    with torch.no_grad():
        logits = start(to_float_images(images))
    expected = 0.0
    for name in ("a", "b"):
        keep = labels[name] >= 0
        target = torch.as_tensor(labels[name][keep])
        expected += float(F.cross_entropy(logits[name][torch.as_tensor(keep)], target))
    probe = ImageProbe(cards, 16).fit(images, labels, epochs=1, seed=0, batch_size=96)
    assert probe.history[0] == pytest.approx(expected, rel=1e-5)


def test_early_stopping_with_patience_zero_runs_every_epoch():
    rng = np.random.default_rng(4)
    images, labels = _toy_images(120, rng)
    rule = EarlyStopping(images[:40], {"a": labels["a"][:40]}, patience=0)
    probe = ImageProbe(["a"], 16).fit(
        images[40:], {"a": labels["a"][40:]}, epochs=3, seed=0, early_stopping=rule
    )
    assert probe.fit_record["epochs_run"] == 3 and len(probe.fit_record["heldout_accuracy"]) == 3


def test_image_probe_missing_labels_ignored_and_bad_input():
    rng = np.random.default_rng(1)
    images, labels = _toy_images(64, rng)
    labels["a"][:10] = -1
    probe = ImageProbe(["a"], 16).fit(images, {"a": labels["a"]}, epochs=1, seed=0)
    assert len(probe.history) == 1 and np.isfinite(probe.history[0])
    with pytest.raises(ValueError, match="unknown attribute 'zzz'"):
        probe.fit(images, {"zzz": labels["a"]}, epochs=1)
    with pytest.raises(ValueError, match="outside"):
        probe.fit(images, {"a": labels["b"] + 1}, epochs=1)
    with pytest.raises(ValueError, match="must be uint8 or float"):
        to_float_images(np.zeros((2, 3, 8, 8), dtype=np.int32))


def test_uint8_images_invert_float_images():
    """Every uint8 NHWC image survives the round trip exactly; floats outside [0, 1] clamp and
    the rest round to the nearest level (reference: numpy by hand)."""
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    assert np.array_equal(to_uint8_images(to_float_images(images)), images)
    x = torch.tensor([-0.5, 0.0, 0.3, 0.998, 1.7]).reshape(1, 1, 1, 5)
    expected = np.round(np.clip(x.numpy(), 0, 1) * 255).astype(np.uint8).transpose(0, 2, 3, 1)
    assert np.array_equal(to_uint8_images(x), expected)


def test_svm_probe_option_matches_direction():
    """The paper's linear SVM (sklearn) finds the same normal as the logistic probe."""
    rng = np.random.default_rng(5)
    z = rng.standard_normal((800, 3))
    labels = {
        "a": (z @ np.array([2.0, -1.0, 0.0]) + 0.5 * rng.standard_normal(800) > 0).astype(int)
    }
    svm = LatentProbe(method="svm").fit(z, labels, holdout=0.2)
    logistic = LatentProbe().fit(z, labels, holdout=0.2)
    assert float(svm.normal("a") @ logistic.normal("a")) > 0.99
    assert svm.accuracy_["a"] == pytest.approx(logistic.accuracy_["a"], abs=0.03)
    p = svm.predict_proba(torch.tensor(z[:5]), "a")
    assert ((p > 0) & (p < 1)).all()


def test_factorial_source_matches_a_procgen_folder_by_generator_and_states(tmp_path):
    """A procgen folder is matched when it renders each asked node with exactly its states;
    a re-coded, hidden or unknown node, or a folder without procgen metadata, gives None. The
    factorial training set of a match renders those nodes with every state combination."""
    import json

    from causalscene import procgen
    from causalscene.probes import factorial_source, factorial_training_set

    faces = procgen.load_dag("faces")
    data = procgen.make_dataset("faces", 8, 24, 0, tmp_path / "faces")
    states = {n: list(faces.states(n)) for n in ("gender", "goatee")}
    source = factorial_source(data, states)
    assert source is not None and source["generator"] == "faces"
    assert factorial_source(data, {"gender": list(reversed(states["gender"]))}) is None
    assert factorial_source(data, {"strength": ["low", "high"]}) is None  # not a faces node
    rpg = procgen.make_dataset("rpg", 8, 32, 0, tmp_path / "rpg")
    hidden = procgen.load_dag("rpg").hidden_nodes[0]
    hidden_states = list(procgen.load_dag("rpg").states(hidden))
    assert factorial_source(rpg, {hidden: hidden_states}) is None
    meta = json.loads((data / "meta.json").read_text())
    meta["generator"] = "celeba"
    (data / "meta.json").write_text(json.dumps(meta))
    assert factorial_source(data, states) is None
    assert factorial_source(tmp_path / "missing", states) is None
    images, labels = factorial_training_set(source, 400, 24, seed=1)
    assert images.shape == (400, 24, 24, 3) and images.dtype == np.uint8
    assert set(labels) == set(faces.rendered_nodes)
    pairs = set(zip(labels["gender"].tolist(), labels["goatee"].tolist()))
    assert pairs == {(0, 0), (0, 1), (1, 0), (1, 1)}  # the DAG almost never draws some of these


def test_latent_probe_holdout_does_not_repeat_the_label_stream():
    """Labels drawn as ``default_rng(0).random(n) < 0.2`` (procgen's first draw for seed 0):
    a held-out split drawn from that same stream would hold only the positive class, and a probe
    trained on the negatives alone would score 0 there. z separates the label perfectly."""
    n, holdout = 600, 0.2
    label = (np.random.default_rng(0).random(n) < holdout).astype(np.int64)
    z = np.random.default_rng(1).normal(size=(n, 3))
    z[:, 0] = np.where(label == 1, 2.0, -2.0) + 0.1 * z[:, 0]
    probe = LatentProbe().fit(z, {"a": label}, holdout=holdout, seed=0)
    assert probe.accuracy_["a"] > 0.95
