"""Query-driven images: exact node laws under evidence/do, counterfactuals against a hand-solved
monotone-noise example, hidden-node inference, evaluation, and the four verbs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from causalscene import queries
from causalscene.cli import main
from causalscene.dag import CausalDAG
from causalscene.generate import counterfactual_images, evaluate, infer, sample_images
from causalscene.model import CausalVAE
from causalscene.train import TrainConfig, fit
from tests.test_model import read_synth, synth_data


@pytest.fixture
def faces(dag_path):
    return CausalDAG.load(dag_path("faces"))


@pytest.fixture
def rpg(dag_path):
    return CausalDAG.load(dag_path("rpg_fight"))


def test_sample_images_follow_the_exact_interventional_law(rpg):
    """do(action=attack): reaction's law is P(reaction | do(action=attack)); actor stays at its
    prior (upstream beliefs do not move). Frequencies vs exact probabilities, 5-sigma bands."""
    model = CausalVAE(rpg, 16, 2, base_channels=4)
    n = 3000
    images, codes = sample_images(model, do={"action": "attack"}, n=n, seed=0)
    assert images.shape == (n, 3, 16, 16)
    assert (codes["action"] == 0).all()
    for node in ("reaction", "actor"):
        exact = queries.intervene(rpg, [node], {"action": "attack"}).probs
        freq = np.bincount(codes[node], minlength=len(exact)) / n
        assert np.all(np.abs(freq - exact) <= 5 * np.sqrt(exact * (1 - exact) / n) + 1e-9), node
    # conditioning on a hidden node moves its rendered children (tutorial: strength → action)
    _, cond = sample_images(model, evidence={"actor_strength": "high"}, n=n, seed=1)
    exact = queries.condition(rpg, ["action"], {"actor_strength": "high"}).probs
    freq = np.bincount(cond["action"], minlength=3) / n
    assert np.all(np.abs(freq - exact) <= 5 * np.sqrt(exact * (1 - exact) / n))
    with pytest.raises(ValueError, match="both in the evidence and in do"):
        sample_images(model, evidence={"action": "walk"}, do={"action": "attack"})
    with pytest.raises(ValueError, match="unknown"):
        sample_images(model, do={"action": "dance"})


def test_counterfactual_matches_hand_solved_monotone_example(faces):
    """Factual: a young woman, no mustache, blond, not bald. do(gender=male) under monotone noise:
    mustache: U ∈ [0, .99) → yes iff U ≥ .70 → P = .29/.99 ≈ .29 → MAP 'no';
    blond_hair: U ∈ [.70, 1) → yes iff U ≥ .95 → P = .05/.30 ≈ .17 → MAP 'no';
    age, smiling, eyeglasses (non-descendants) keep their factual values."""
    torch.manual_seed(0)
    model = CausalVAE(faces, 16, 2, base_channels=4)
    factual = {
        "gender": 0,
        "age": 0,
        "smiling": 1,
        "mustache": 0,
        "goatee": 0,
        "bald": 0,
        "blond_hair": 1,
        "rosy_cheeks": 0,
        "eyeglasses": 1,
    }
    labels = {k: np.array([v, v]) for k, v in factual.items()}
    x = torch.rand(2, 3, 16, 16)
    res = counterfactual_images(model, x, {"gender": "male"}, labels)
    cf = {k: int(v[0]) for k, v in res["counterfactual_codes"].items()}
    assert cf["gender"] == 1 and cf["mustache"] == 0 and cf["blond_hair"] == 0
    for node in ("age", "smiling", "eyeglasses"):
        assert cf[node] == factual[node]
    probs = queries.counterfactual(faces, ["mustache"], factual, {"gender": "male"}).probs
    np.testing.assert_allclose(probs, [0.70 / 0.99, 0.29 / 0.99], atol=1e-9)
    # do(gender = its factual value) reproduces the reconstruction exactly
    same = counterfactual_images(model, x, {"gender": "female"}, labels)
    assert torch.equal(same["counterfactual"], same["reconstruction"])
    assert "monotone" in res["assumption"]
    # a sampled counterfactual keeps the non-descendants too
    sampled = counterfactual_images(model, x, {"gender": "male"}, labels, mode="sample", seed=3)
    assert all(int(sampled["counterfactual_codes"][k][0]) == factual[k] for k in ("age", "smiling"))


def test_infer_returns_distributions(rpg):
    model = CausalVAE(rpg, 16, 2, base_channels=4)
    images, _ = synth_data(rpg, 3)
    res = infer(model, images)
    assert set(res["hidden"]) == set(rpg.hidden_nodes)
    for probs in [*res["hidden"].values(), *res["rendered"].values()]:
        np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)


class _OracleProbe:
    """Reads the planted synthetic renderer exactly (an ImageProbe stand-in)."""

    def __init__(self, dag):
        self.dag = dag

    def predict(self, images):
        if torch.is_tensor(images):
            images = (images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
        return read_synth(self.dag, images)

    def accuracy(self, images, labels):
        pred = self.predict(images)
        return {k: float(np.mean(pred[k] == np.asarray(v))) for k, v in labels.items()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A CausalVAE trained briefly on the planted synthetic faces (16 px)."""
    dag = CausalDAG.shipped("faces")
    data = synth_data(dag, 600, seed=2)
    torch.manual_seed(0)
    model = CausalVAE(dag, 16, 2, base_channels=8)
    cfg = TrainConfig(
        epochs=15,
        batch_size=32,
        latent_dim=2,
        base_channels=8,
        device="cpu",
        progress=False,
        lr=3e-3,
    )
    run = tmp_path_factory.mktemp("runs") / "faces"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny nets: one thread is faster on a shared CPU
    try:
        fit(model, data, cfg, out=run)
    finally:
        torch.set_num_threads(threads)
    return model, data, run


@pytest.mark.slow
def test_evaluate_on_planted_data(trained):
    model, (images, labels), _ = trained
    probe = _OracleProbe(model.dag)
    assert all(v == 1.0 for v in probe.accuracy(images, labels).values())
    result = evaluate(model, probe, images, labels, n_per_state=16, n_counterfactual=24, seed=0)
    assert set(result["fidelity"]) == set(model.rendered)
    assert result["identity_max_abs_diff"] == 0.0
    # a briefly trained model already renders the planted cells it is told to
    assert result["min_fidelity"] >= 0.9, result["fidelity"]
    assert result["min_preserved"] >= 0.9, result["preserved"]


def test_verbs(trained, tmp_path, capsys):
    model, (images, labels), run = trained
    out = tmp_path / "grid.png"
    assert (
        main(["generate", str(run), "--do", "gender=male", "--n", "4", "--out", str(out), "--json"])
        == 0
    )
    shown = json.loads(capsys.readouterr().out)
    assert [r["gender"] for r in shown["images"]] == ["male"] * 4 and out.is_file()
    png = tmp_path / "face.png"
    Image.fromarray(images[0]).save(png)
    cf = tmp_path / "cf.png"
    assert (
        main(
            [
                "counterfactual",
                str(run),
                "--image",
                str(png),
                "--do",
                "smiling=yes",
                "--out",
                str(cf),
                "--json",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["counterfactual"][0]["smiling"] == "yes" and cf.is_file()
    assert Image.open(cf).size[0] > 3 * 16
    assert main(["infer", str(run), "--image", str(png)]) == 0
    inferred = json.loads(capsys.readouterr().out)
    assert set(inferred[0]["shows"]) == set(model.rendered)
    assert main(["generate", str(run), "--do", "gender=robot", "--out", str(out)]) == 2
    assert "robot" in capsys.readouterr().err


@pytest.mark.slow
def test_evaluate_verb_on_procgen_data(tmp_path, dag_path, capsys):
    from causalscene import procgen

    data = procgen.make_dataset("faces", 160, 32, seed=0, out=tmp_path / "faces")
    run = tmp_path / "run"
    flags = ["--epochs", "1", "--batch-size", "32", "--latent-dim", "2", "--base-channels", "4"]
    assert (
        main(
            [
                "train",
                "--dag",
                dag_path("faces"),
                "--data",
                str(data),
                "--out",
                str(run),
                *flags,
                "--no-progress",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert (
        main(
            [
                "evaluate",
                str(run),
                "--n-per-state",
                "2",
                "--n-counterfactual",
                "4",
                "--probe-epochs",
                "1",
                "--probe-images",
                "120",
            ]
        )
        == 0
    )
    result = json.loads((run / "eval.json").read_text())
    assert set(result["fidelity"]) == set(CausalDAG.load(dag_path("faces")).rendered_nodes)
    assert result["identity_max_abs_diff"] == 0.0
    assert (run / "probe_factorial.pt").is_file() and "train_seconds" in result
    assert result["probe_training"] == "factorial procgen faces"
    # sample quality: 16 samples vs the run's held-out 10% of 160 images, renderer features
    assert math.isfinite(result["frechet"]) and result["frechet"] > 0
    assert "probe psi" in result["frechet_features"]  # ψ itself: no second network is trained
    assert "factorial procgen faces design" in result["frechet_features"]
    assert result["frechet_real"] == "the run's held-out split (16 images)"
    assert result["frechet_samples"] == 16 and not (run / "frechet_features.pt").exists()
    # ψ's accuracy on 1,000 fresh factorial items it never saw, recounted here
    from causalscene.probes import ImageProbe, factorial_training_set

    held, codes = factorial_training_set(
        {"generator": "faces", "options": {}}, 1000, 32, np.random.default_rng([0, 1])
    )
    probe = ImageProbe.load(run / "probe_factorial.pt")
    predicted = probe.predict(held)
    reported = result["probe_heldout_accuracy"]
    assert reported["n"] == 1000 and set(reported["accuracy"]) == set(result["fidelity"])
    for node, acc in reported["accuracy"].items():
        assert acc == pytest.approx(float((predicted[node] == codes[node]).mean()), abs=1e-12)
    # ψ's early stopping read 1,000 other fresh items (seed [0, 2]); its last reading, recounted
    fit = result["probe_fit"]
    assert fit["epochs_max"] == 1 and fit["epochs_run"] == 1 and fit["heldout_n"] == 1000
    watched, codes = factorial_training_set(
        {"generator": "faces", "options": {}}, 1000, 32, np.random.default_rng([0, 2])
    )
    assert fit["heldout_accuracy"][-1] == pytest.approx(probe.accuracy(watched, codes), abs=1e-12)
    assert (
        main(
            [
                "counterfactual",
                str(run),
                "--index",
                "0",
                "1",
                "--do",
                "age=old",
                "--out",
                str(tmp_path / "cf.png"),
            ]
        )
        == 0
    )
