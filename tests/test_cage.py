"""CAGE: planted directions, a closed-form GATE, MMD, the batched null vs sklearn, DAG relations."""

import json
import math

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from causalscene import cli
from causalscene.cage import (
    CageConfig,
    PairResult,
    alpha_sweep,
    compare_with_dag,
    counterfactual_latents,
    dag_relation,
    direction_scores,
    gate,
    mmd,
    p_value,
    parse_pairs,
    permutation_null,
    run_cage,
    scores_caption,
    tau,
)
from causalscene.dag import CausalDAG
from causalscene.probes import LatentProbe


def _planted(seed, n=2000, k=2000, d=16):
    """A latent space where e is generated from c's direction.

    z ~ N(0, I). The cause c is read off direction u_1 with noise (c = 1[z_1 + 0.7 ε > 0]); the
    effect is generated from that same direction plus its own (e = 1[z_1 + 0.5 z_2 > 0]); a third
    attribute i = 1[z_3 > 0] is independent of both. Like the paper's mixture toy, the effect is a
    sharp function of the generated point and the cause a noisy label of its latent factor.
    """
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, d)).astype(np.float32)
    latents = rng.standard_normal((k, d)).astype(np.float32)
    labels = {
        "c": (z[:, 0] + 0.7 * rng.standard_normal(n) > 0).astype(np.int64),
        "e": (z[:, 0] + 0.5 * z[:, 1] > 0).astype(np.int64),
        "i": (z[:, 2] > 0).astype(np.int64),
    }
    return z, labels, latents


@pytest.fixture(scope="module")
def planted_result():
    z, labels, latents = _planted(seed=0)
    config = CageConfig(permutations=100, seed=0)
    return run_cage(z, labels, "c:e,c:i,i:e", config, latents=latents)


def test_planted_direction_recovered(planted_result):
    p = planted_result.pair("c", "e")
    assert p.tau > 0.05
    assert p.p_ce < 0.05
    assert p.inferred == "c->e"
    assert p.reliable
    assert p.p_ce == pytest.approx(1 / 101)  # no shuffle reaches the observed GATE


def test_independent_attributes_not_rejected(planted_result):
    for cause, effect in (("c", "i"), ("i", "e")):
        p = planted_result.pair(cause, effect)
        assert abs(p.tau) < 0.02
        assert p.p_ce > 0.05 and p.p_ec > 0.05
        assert p.inferred == "none"


def test_reversed_pair_flips_tau():
    z, labels, latents = _planted(seed=1, n=1500, k=1500)
    result = run_cage(z, labels, "e:c", CageConfig(permutations=30, seed=1), latents=latents)
    p = result.pairs[0]
    assert p.tau < 0 and p.inferred == "e->c"


def _hand_probe(a):
    """Probes on R²: φ_c = σ(z_1), φ_e = σ(a z_1) (both boundaries at z_1 = 0)."""
    probe = LatentProbe()
    probe.attributes = ["c", "e"]
    probe.weight = torch.tensor([[1.0, 0.0], [a, 0.0]], dtype=torch.float64)
    probe.bias = torch.zeros(2, dtype=torch.float64)
    return probe


def test_gate_closed_form():
    """Two units z = (−1, 0), (1, 0); α = 1; φ_e(z) = σ(ln 3 · z_1), so σ(±ln 3) = 3/4, 1/4.

    shift: unit 1 (m = 0): do(1) → (0, 0), do(0) stays: σ(0) − σ(−ln 3) = 1/2 − 1/4;
           unit 2 (m = 1): do(1) stays, do(0) → (0, 0): σ(ln 3) − σ(0) = 3/4 − 1/2  → GATE = 1/4.
    cross: each unit steps its distance 1 plus α = 1 → crosses to ±1: both effects 3/4 − 1/4 → 1/2.
    """
    probe = _hand_probe(math.log(3))
    z = torch.tensor([[-1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    assert gate(z, probe, "c", "e", alpha=1.0, mode="shift") == pytest.approx(0.25, abs=1e-12)
    assert gate(z, probe, "c", "e", alpha=1.0, mode="cross") == pytest.approx(0.5, abs=1e-12)
    cf = counterfactual_latents(z, probe, "c", alpha=1.0, mode="cross")
    torch.testing.assert_close(cf.z_do1[0], torch.tensor([1.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(cf.z_do0[1], torch.tensor([-1.0, 0.0], dtype=torch.float64))
    assert cf.treated.tolist() == [0, 1]
    assert tau(0.25, -0.4) == pytest.approx(-0.15)


def test_gate_with_outcome_fn_matches_latent_probe():
    probe = _hand_probe(2.0)
    z = torch.randn(50, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    by_probe = gate(z, probe, "c", "e", alpha=0.7)
    by_fn = gate(z, probe, "c", "e", alpha=0.7, outcome_fn=lambda u: torch.sigmoid(2.0 * u[:, 0]))
    assert by_probe == pytest.approx(by_fn, abs=1e-12)


def test_mmd_zero_identical_positive_shifted_and_brute_force():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 3))
    assert mmd(x, x.copy()) == pytest.approx(0.0, abs=1e-12)
    small, large = mmd(x, x + 0.3), mmd(x, x + 1.5)
    assert 0 < small < large
    y = rng.standard_normal((150, 3)) + 0.5
    # brute force with the same bandwidth (median heuristic on the pooled sample)
    pooled = np.concatenate([x, y])
    d2 = ((pooled[:, None] - pooled[None]) ** 2).sum(-1)
    sigma2 = np.median(d2[~np.eye(len(pooled), dtype=bool)]) / 2
    k = np.exp(-d2 / (2 * sigma2))
    expected = k[:200, :200].mean() + k[200:, 200:].mean() - 2 * k[:200, 200:].mean()
    # torch's median of an even count takes the lower middle value; compare with a tolerance
    assert mmd(x, y) == pytest.approx(expected, rel=1e-3)
    assert mmd(x, y, bandwidth=math.sqrt(sigma2)) == pytest.approx(expected, rel=1e-9)


def test_permutation_null_matches_sklearn_loop():
    """The batched null equals the obvious loop: shuffle, sklearn refit, recompute GATE."""
    z, labels, latents = _planted(seed=3, n=400, k=300, d=4)
    probe = LatentProbe(l2=1e-2).fit(z, labels, holdout=0)
    null = permutation_null(z, labels, latents, probe, [("c", "e")], permutations=4, seed=7)
    rng = np.random.default_rng(7)
    expected = {}
    for treatment in ("c", "e"):  # the order permutation_null draws them in (sorted)
        codes = labels[treatment]
        for _ in range(4):
            shuffled = codes[rng.permutation(len(codes))]
            model = LogisticRegression(C=1 / (1e-2 * len(codes)), tol=1e-10, max_iter=5000)
            model.fit(z.astype(np.float64), shuffled)
            w = model.coef_[0]
            h = w / np.linalg.norm(w)
            logit_t = latents @ w + model.intercept_[0]
            other = "e" if treatment == "c" else "c"
            w_e, b_e = (t.double().numpy() for t in probe.params(other))
            m = logit_t > 0
            sig = lambda u: 1 / (1 + np.exp(-u))  # noqa: E731
            y1 = np.where(m, sig(latents @ w_e + b_e), sig((latents + h) @ w_e + b_e))
            y0 = np.where(m, sig((latents - h) @ w_e + b_e), sig(latents @ w_e + b_e))
            expected.setdefault((treatment, other), []).append((y1 - y0).mean())
    for key, values in expected.items():
        np.testing.assert_allclose(null.gates[key], values, atol=2e-4)


def test_permutation_null_for_one_direction_is_the_whole_calls():
    """``only=[(e, c)]`` refits e's shuffles alone: the same shuffles (drawn for both treatments)
    and so the same null as the two-way call, to the refits' tolerance; nothing for c → e."""
    z, labels, latents = _planted(seed=3, n=400, k=300, d=4)
    probe = LatentProbe(l2=1e-2).fit(z, labels, holdout=0)
    both = permutation_null(z, labels, latents, probe, [("c", "e")], permutations=6, seed=7)
    one = permutation_null(
        z, labels, latents, probe, [("c", "e")], permutations=6, seed=7, only=[("e", "c")]
    )
    assert set(one.gates) == {("e", "c")} and set(one.probes) == {"e"}
    np.testing.assert_allclose(one.gates[("e", "c")], both.gates[("e", "c")], atol=1e-6)
    with pytest.raises(ValueError, match="outside pairs"):
        permutation_null(z, labels, latents, probe, [("c", "e")], permutations=2, only=[("c", "x")])


@pytest.mark.parametrize("mode", ["shift", "cross"])
def test_image_null_gates_equal_one_permutation_at_a_time(mode):
    """The image-outcome null (several permutations' latents through the outcome in one call)
    equals the loop over permutations written out with eq. 4 in numpy."""
    from causalscene.cage import _image_null_gates

    rng = np.random.default_rng(5)
    zk = torch.as_tensor(rng.standard_normal((37, 4)))
    w_t = torch.as_tensor(rng.standard_normal((9, 4)))
    b_t = torch.as_tensor(rng.standard_normal(9))
    v = rng.standard_normal(4)

    def outcome(z):  # any row-wise outcome
        return torch.sigmoid(z @ torch.as_tensor(v) + 0.3 * z[:, 0] ** 2)

    got = _image_null_gates(zk, (w_t, b_t), outcome, 0.7, mode, rows=80)  # 2 permutations a call
    z = zk.numpy()
    expected = []
    for w, b in zip(w_t.numpy(), b_t.numpy()):
        h = w / np.linalg.norm(w)
        logit = z @ w + b
        distance = logit / np.linalg.norm(w)
        step = np.full(len(z), 0.7) if mode == "shift" else 0.7 + np.abs(distance)
        up = np.where(logit > 0, 0.0, step)  # do(1): units with m = 0 cross upwards
        down = np.where(logit > 0, step, 0.0)
        y1 = outcome(torch.as_tensor(z + up[:, None] * h)).numpy()
        y0 = outcome(torch.as_tensor(z - down[:, None] * h)).numpy()
        expected.append((y1 - y0).mean())
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


def test_p_value_plus_one_correction():
    assert p_value(0.5, np.array([0.1, -0.2, 0.6])) == pytest.approx(2 / 4)
    assert p_value(0.5, np.zeros(99)) == pytest.approx(1 / 100)


def test_alpha_sweep_shapes_and_monotone_start(planted_result):
    probe, latents = planted_result.probe, planted_result.latents
    sweep = alpha_sweep(latents, probe, [("c", "e")], [0.1, 0.5, 1.0])
    assert sweep["alpha"] == [0.1, 0.5, 1.0]
    assert len(sweep["c:e"]["tau"]) == 3
    assert sweep["c:e"]["gate_ce"][0] < sweep["c:e"]["gate_ce"][1]  # bigger step, bigger effect
    with pytest.raises(ValueError, match="alpha must be > 0"):
        alpha_sweep(latents, probe, [("c", "e")], [1.0, 0.0])


@pytest.mark.parametrize(
    "pairs, labels_update, config, message",
    [
        ("c:c", {}, {}, "names the attribute 'c' twice"),
        ("c:zzz", {}, {}, "unknown attribute 'zzz'"),
        ("c", {}, {}, "not of the form cause:effect"),
        ("c:e", {"e": np.array([0, 1, 2] * 20)}, {}, "not binary"),
        ("c:e", {"e": np.array([1] * 59 + [0])}, {}, "fewer than 2 examples of class 0"),
        ("c:e", {}, {"alpha": 0.0}, "alpha must be > 0"),
        ("c:e", {}, {"alpha": -1.0}, "alpha must be > 0"),
        ("c:e", {}, {"mode": "jump"}, "mode must be one of"),
    ],
)
def test_bad_input(pairs, labels_update, config, message):
    rng = np.random.default_rng(0)
    z = rng.standard_normal((60, 3))
    labels = {"c": np.array([0, 1] * 30), "e": np.array([1, 0, 0] * 20)}
    labels.update(labels_update)
    with pytest.raises(ValueError, match=message):
        run_cage(z, labels, pairs, CageConfig(permutations=2, **config), latents=z)


def test_counterfactual_latents_rejects_bad_alpha():
    with pytest.raises(ValueError, match="alpha must be > 0"):
        counterfactual_latents(
            torch.zeros(2, 2, dtype=torch.float64), _hand_probe(1.0), "c", alpha=0
        )


def test_parse_pairs():
    assert parse_pairs("a:b, c:d") == [("a", "b"), ("c", "d")]
    assert parse_pairs([("a", "b")], ["a", "b"]) == [("a", "b")]


def test_dag_relations(dag_path):
    faces = CausalDAG.load(dag_path("faces"))
    assert dag_relation(faces, "gender", "mustache") == "c->e"
    assert dag_relation(faces, "mustache", "gender") == "e->c"
    assert dag_relation(faces, "mustache", "goatee") == "common cause"
    assert dag_relation(faces, "gender", "age") == "d-separated"
    assert dag_relation(faces, "smiling", "bald") == "d-separated"
    chain = CausalDAG.from_dict(
        {
            "name": "chain",
            "nodes": {
                "a": {"states": ["0", "1"]},
                "b": {"states": ["0", "1"], "parents": ["a"]},
                "c": {"states": ["0", "1"], "parents": ["b"]},
            },
            "cpts": {
                "a": [0.5, 0.5],
                "b": {"0": [0.9, 0.1], "1": [0.1, 0.9]},
                "c": {"0": [0.9, 0.1], "1": [0.1, 0.9]},
            },
        }
    )
    assert dag_relation(chain, "a", "c") == "c~>e"
    assert dag_relation(chain, "c", "a") == "e~>c"


def _pair(cause, effect, inferred, reliable=True):
    return PairResult(
        cause,
        effect,
        0.1,
        0.0,
        0.1,
        0.01,
        0.5,
        0.2,
        0.0,
        0.0,
        0.9,
        0.9 if reliable else 0.5,
        reliable,
        inferred,
    )


def test_compare_with_dag_scores_only_reliable(dag_path, tmp_path):
    faces = CausalDAG.load(dag_path("faces"))
    pairs = [
        _pair("gender", "mustache", "c->e"),  # agrees
        _pair("age", "eyeglasses", "e->c"),  # disagrees
        _pair("gender", "age", "none"),  # d-separated, agrees
        _pair("mustache", "goatee", "c->e", reliable=False),  # not scored
    ]
    comparison = compare_with_dag(faces, pairs)
    assert [r["relation"] for r in comparison.rows] == [
        "c->e",
        "c->e",
        "d-separated",
        "common cause",
    ]
    assert comparison.agreement_fraction == pytest.approx(2 / 3)
    assert comparison.rows[-1]["agree"] is None
    assert [(r["cause"], r["effect"]) for r in comparison.disagreements()] == [
        ("age", "eyeglasses")
    ]
    files = comparison.save(tmp_path)
    assert json.loads(files["json"].read_text())["scored_pairs"] == 3
    assert files["csv"].read_text().splitlines()[0].startswith("cause,effect,relation")
    from causalscene.plots import plot_dag_comparison

    assert plot_dag_comparison(faces, comparison, tmp_path / "cmp.png").stat().st_size > 1000


# ------------------------------------------------------------------ the `cage` verb, reproductions


def test_cage_verb_writes_tables_and_figures(tiny_run, tmp_path, capsys):
    run, data = tiny_run
    out = tmp_path / "cage"
    code = cli.main(
        [
            "cage",
            str(run),
            "--pairs",
            "gender:mustache",
            "--permutations",
            "5",
            "--num-latents",
            "60",
            "--alphas",
            "0.5,1",
            "--dag",
            "faces",
            "--out",
            str(out),
            "--seed",
            "1",
            "--json",
        ]
    )
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    pair = printed["pairs"][0]
    assert (pair["cause"], pair["effect"]) == ("gender", "mustache")
    assert 1 / 6 <= pair["p_ce"] <= 1.0  # the +1 correction with 5 permutations
    assert printed["comparison"]["rows"][0]["relation"] == "c->e"
    for name in (
        "cage.json",
        "tau_table.csv",
        "tau_vs_alpha.png",
        "null_histograms.png",
        "counterfactuals_gender_mustache.png",
        "dag_comparison.csv",
        "dag_comparison.png",
    ):
        assert (out / name).is_file(), name


@pytest.mark.slow
def test_cage_verb_image_outcome(tiny_run, tmp_path):
    run, _ = tiny_run
    code = cli.main(
        [
            "cage",
            str(run),
            "--pairs",
            "gender:smiling",
            "--outcome",
            "image",
            "--permutations",
            "3",
            "--num-latents",
            "20",
            "--alphas",
            "1",
            "--probe-epochs",
            "1",
            "--out",
            str(tmp_path / "img"),
        ]
    )
    assert code == 0
    result = json.loads((tmp_path / "img" / "cage.json").read_text())
    assert result["config"]["outcome"] == "image"
    # the faces folder's generator renders both attributes: ψ learns from its factorial design
    assert result["image_probe_training"] == "factorial procgen faces"


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--pairs", "gender:gender"], "twice"),
        (["--pairs", "gender:wings"], "unknown attribute 'wings'"),
        (["--pairs", "gender:age", "--alpha", "0"], "--alpha must be a finite number > 0"),
        (["--pairs", "gender:age", "--all-pairs"], "exactly one of"),
    ],
)
def test_cage_verb_user_errors(tiny_run, tmp_path, capsys, flags, message):
    run, _ = tiny_run
    code = cli.main(["cage", str(run), *flags, "--permutations", "2", "--out", str(tmp_path)])
    assert code == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_reproduce_cage_mog_small(tmp_path):
    """The paper's Q1 at the small scale: the JSON contract; `holds` is computed, not asserted."""
    from causalscene import reproductions

    result = reproductions.run("cage-mog", tmp_path, seed=0, scale="small", device="cpu")
    assert set(result) >= {"name", "claim", "source", "measured", "holds", "seed", "seconds"}
    measured = result["measured"]
    for order in ("causal_order", "anticausal_order"):
        flows = measured[order]["flows"]
        assert len(flows) == 5
        for f in flows:
            assert set(f) >= {"tau", "p_value", "p_value_reverse", "latent_outcome"}
            assert f["infers_mixture_to_low_mean"] == (f["tau"] > 0 and f["p_value"] < 0.05)
            assert f["tau"] == pytest.approx(
                abs(f["gate_mixture_to_low_mean"]) - abs(f["gate_low_mean_to_mixture"])
            )
        assert measured[order]["flows_inferring_mixture_to_low_mean"] == sum(
            f["infers_mixture_to_low_mean"] for f in flows
        )
    expected = all(
        measured[o]["flows_inferring_mixture_to_low_mean"] >= 3
        for o in ("causal_order", "anticausal_order")
    )
    assert result["holds"] == expected
    assert (tmp_path / "result.json").is_file()


def test_cage_verb_finds_dag_from_dataset_meta(tiny_run):
    from causalscene.cage_pipeline import resolve_dag

    run, data = tiny_run
    dag = resolve_dag(None, run, data)
    assert dag is not None and dag.name == "faces" and "mustache" in dag


def test_resolve_dag_by_name_file_or_nothing(dag_path, tmp_path):
    from causalscene.cage_pipeline import resolve_dag
    from causalscene.dag import DAGError

    assert resolve_dag("faces").name == "faces"
    assert resolve_dag(dag_path("mog")).name == "mog"
    assert resolve_dag(None, tmp_path, tmp_path) is None
    with pytest.raises(DAGError, match="no shipped DAG 'wings'.*faces"):
        resolve_dag("wings")


def test_cage_verb_module_imports_no_torch():
    """The CLI parser builds without torch: the verb imports the library inside ``_main``."""
    import subprocess
    import sys

    code = (
        "import argparse, sys; import causalscene.commands.cage as c; "
        "c.register(argparse.ArgumentParser().add_subparsers()); "
        "print(sorted(m for m in ('torch', 'pyro', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "torch" not in out.stdout and "pyro" not in out.stdout, out.stdout


def test_encode_images_needs_an_encoder():
    from causalscene.cage_pipeline import encode_images

    class DecodeOnly:
        latent_dim = 2

        def decode(self, z):
            return torch.zeros(len(z), 3, 8, 8)

        def sample_latents(self, n, seed=None):
            return torch.zeros(n, 2)

    with pytest.raises(ValueError, match="has no encode"):
        encode_images(DecodeOnly(), np.zeros((2, 8, 8, 3), dtype=np.uint8))


def _hand_dag():
    """a → b → c, a → d, and e alone: edges a:b, b:c, a:d; a ⇝ c indirect; b, d and c, d share
    the cause a; e is d-separated from everything."""
    yes_no = {"0": [0.8, 0.2], "1": [0.2, 0.8]}
    return CausalDAG.from_dict(
        {
            "name": "hand",
            "nodes": {
                "a": {"states": ["0", "1"]},
                "b": {"states": ["0", "1"], "parents": ["a"]},
                "c": {"states": ["0", "1"], "parents": ["b"]},
                "d": {"states": ["0", "1"], "parents": ["a"]},
                "e": {"states": ["0", "1"]},
            },
            "cpts": {"a": [0.5, 0.5], "b": yes_no, "c": yes_no, "d": yes_no, "e": [0.5, 0.5]},
        }
    )


def test_compare_with_dag_scores_edges_and_non_edges_apart():
    """Hand-made CAGE answers on a hand-made DAG, counted by hand."""
    pairs = [
        _pair("a", "b", "c->e"),  # edge, recovered
        _pair("c", "b", "c->e"),  # edge b → c read as c → b: reversed
        _pair("a", "d", "none"),  # edge, missed
        _pair("a", "c", "c->e"),  # indirect a ⇝ c, along the path
        _pair("b", "d", "none"),  # common cause: kept
        _pair("c", "d", "e->c"),  # common cause: spurious
        _pair("a", "e", "none"),  # d-separated: kept
        _pair("b", "e", "none", reliable=False),  # not scored
        _pair("c", "e", "c->e"),  # d-separated: spurious
        _pair("d", "e", "none"),  # kept
    ]
    comparison = compare_with_dag(_hand_dag(), pairs)
    kinds = [r["kind"] for r in comparison.rows]
    assert kinds == ["edge"] * 3 + ["indirect"] + ["non-edge"] * 6
    s = comparison.scores
    assert s["edges"] == {
        "pairs": 3,
        "unreliable": 0,
        "scored": 3,
        "recovered": 1,
        "reversed": 1,
        "undirected": 0,
        "missed": 1,
        "recall": pytest.approx(1 / 3),
    }
    assert (s["indirect"]["pairs"], s["indirect"]["recovered"]) == (1, 1)
    assert s["non_edges"] == {
        "pairs": 6,
        "unreliable": 1,
        "scored": 5,
        "kept": 3,
        "spurious": 2,
        "kept_fraction": pytest.approx(3 / 5),
    }
    saved = comparison.to_dict()
    assert saved["edges"]["reversed"] == 1 and saved["non_edges"]["spurious"] == 2
    caption = scores_caption(s)
    assert "1 recovered, 1 reversed, 0 undirected, 1 missed of 3 scored" in caption
    assert "3 kept, 2 spurious of 5 scored (1 unreliable)" in caption


def test_direction_scores_of_an_adjacency_matrix():
    """A graph-discovery answer (A[i, j] = 1: i → j; both: undirected) on the hand-made DAG."""
    from causalscene.discovery import pair_rows

    names = ["a", "b", "c", "d", "e"]
    adjacency = np.zeros((5, 5), dtype=int)
    adjacency[0, 1] = 1  # a → b: recovered
    adjacency[1, 2] = adjacency[2, 1] = 1  # b - c: undirected
    adjacency[3, 0] = 1  # d → a: reversed
    adjacency[2, 4] = 1  # c → e: spurious
    rows = pair_rows(adjacency, names, _hand_dag())
    assert len(rows) == 10
    s = direction_scores(rows)
    edges, non_edges = s["edges"], s["non_edges"]
    assert [edges[k] for k in ("recovered", "reversed", "undirected", "missed")] == [1, 1, 1, 0]
    assert (s["indirect"]["scored"], s["indirect"]["missed"]) == (1, 1)  # a ⇝ c: no adjacency
    assert (non_edges["scored"], non_edges["kept"], non_edges["spurious"]) == (6, 5, 1)
    with pytest.raises(ValueError, match="unknown DAG relation"):
        direction_scores([{"relation": "sideways", "inferred": "none", "reliable": True}])
