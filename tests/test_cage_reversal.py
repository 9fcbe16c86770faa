"""CAGE's reversals: the first-order closed form of GATE, the planted c → e generator, the
calibrated estimator, its CLI flag and the ``cage-reversal`` reproduction at the tiny scale."""

import json

import numpy as np
import pytest
import torch

from causalscene import cli
from causalscene.cage import direction_scores, gate, scaled_outcomes, tau
from causalscene.probes import LatentProbe
from causalscene.reproductions._reversal import PlantedPair, first_order_gate


def _two_probes(norm_c, norm_e, angle=0.6, bias_c=0.3, bias_e=-0.2):
    """Hand-set probes on R³: w_c = norm_c·(1, 0, 0), w_e = norm_e·(cos a, sin a, 0)."""
    probe = LatentProbe()
    probe.attributes = ["c", "e"]
    probe.weight = torch.tensor(
        [[norm_c, 0.0, 0.0], [norm_e * np.cos(angle), norm_e * np.sin(angle), 0.0]],
        dtype=torch.float64,
    )
    probe.bias = torch.tensor([bias_c, bias_e], dtype=torch.float64)
    return probe


def _latents(n=4000, seed=0):
    return torch.randn(n, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def _numpy_first_order(z, w_c, w_e, b_e, alpha):
    """α cosθ ‖w_e‖ mean σ'(w_eᵀz + b_e), written out in numpy (the reference)."""
    s = 1 / (1 + np.exp(-(z @ w_e + b_e)))
    cos = w_c @ w_e / np.linalg.norm(w_c) / np.linalg.norm(w_e)
    return alpha * cos * np.linalg.norm(w_e) * np.mean(s * (1 - s))


@pytest.mark.parametrize("mode", ["shift"])
def test_gate_matches_the_first_order_closed_form(mode):
    probe, z = _two_probes(2.0, 0.7), _latents()
    zn, w = z.numpy(), probe.weight.numpy()
    for alpha in (1e-3, 1e-2):
        for c, e, i, j in (("c", "e", 0, 1), ("e", "c", 1, 0)):
            expected = _numpy_first_order(zn, w[i], w[j], probe.bias.numpy()[j], alpha)
            computed = gate(z, probe, c, e, alpha=alpha, mode=mode)
            assert computed == pytest.approx(expected, rel=5 * alpha)  # O(α²) remainder
            assert first_order_gate(z, probe, c, e, alpha) == pytest.approx(expected, rel=1e-9)


def test_tau_sign_follows_the_sharper_probe_not_the_roles():
    """Same two boundaries, only the norms swapped: τ's sign flips with which probe is sharper."""
    z = _latents()
    sharp_c, sharp_e = _two_probes(4.0, 0.5), _two_probes(0.5, 4.0)
    t_c = tau(gate(z, sharp_c, "c", "e", 0.5), gate(z, sharp_c, "e", "c", 0.5))
    t_e = tau(gate(z, sharp_e, "c", "e", 0.5), gate(z, sharp_e, "e", "c", 0.5))
    assert t_c < -0.05 and t_e > 0.05


def test_calibrated_latent_outcome_carries_no_direction():
    """On the common scale both GATEs are α cosθ exactly (shift mode): τ = 0 whatever the norms."""
    z = _latents(1000)
    for norms in ((4.0, 0.5), (0.5, 4.0)):
        probe = _two_probes(*norms)
        fns = scaled_outcomes(z, probe, ["c", "e"])
        for c, e in (("c", "e"), ("e", "c")):
            value = gate(z, probe, c, e, alpha=0.8, outcome_fn=fns[e])
            assert value == pytest.approx(0.8 * np.cos(0.6), rel=1e-9)


def test_a_tie_within_float_rounding_decides_no_direction():
    """float32 latents: the calibrated latent GATEs, equal in theory, differ in the last bits;
    that difference must not pick a direction (it did on faces before the tie rule)."""
    from causalscene.cage import infer_direction, tau_sign

    z = _latents(1000).float()
    probe = _two_probes(4.0, 0.5)
    probe.weight, probe.bias = probe.weight.float(), probe.bias.float()
    fns = scaled_outcomes(z, probe, ["c", "e"])
    ce = gate(z, probe, "c", "e", alpha=0.8, outcome_fn=fns["e"])
    ec = gate(z, probe, "e", "c", alpha=0.8, outcome_fn=fns["c"])
    assert ce == pytest.approx(ec, rel=1e-6)
    assert tau_sign(ce, ec) == 0
    assert infer_direction(ce, ec, 0.001, 0.001, 0.05) == "none"
    assert tau_sign(0.30, 0.10) == 1 and tau_sign(-0.1, 0.3) == -1  # real differences keep a sign
    assert infer_direction(0.30, 0.10, 0.01, 0.5, 0.05) == "c->e"


def test_planted_pair_renders_c_to_e_by_construction():
    gen = PlantedPair(s_c=2.0, s_e=3.0, beta=1.5, latent_dim=4, size=8)
    z = gen.sample_latents(200, seed=0)
    x = gen.decode(z)
    assert x.shape == (200, 1, 8, 8) and float(x.min()) >= 0 and float(x.max()) <= 1
    left, right = x[..., :4].mean((1, 2, 3)), x[..., 4:].mean((1, 2, 3))
    z1, z2 = z.clone(), z.clone()
    z1[:, 0] += 1.0  # c's input
    z2[:, 1] += 1.0  # e's own noise
    x1, x2 = gen.decode(z1), gen.decode(z2)
    assert bool((x1[..., :4].mean((1, 2, 3)) > left).all())  # c moved
    assert float((x1[..., 4:].mean((1, 2, 3)) - right).abs().min()) > 0  # and e with it
    torch.testing.assert_close(x2[..., :4].mean((1, 2, 3)), left)  # e's noise leaves c alone
    assert bool((x2[..., 4:].mean((1, 2, 3)) > right).all())
    # the rendered P(e = 1 | z) is the mixture over c of the label mechanism
    sc = torch.sigmoid(torch.tensor(2.0) * z[:, 0])
    pe = sc * torch.sigmoid(3.0 * (1.5 + z[:, 1])) + (1 - sc) * torch.sigmoid(3.0 * (z[:, 1] - 1.5))
    torch.testing.assert_close(right, pe)
    labels = gen.sample_labels(gen.sample_latents(20_000, seed=1), seed=1)
    p_e_given_c = [labels["e"][labels["c"] == k].mean() for k in (0, 1)]
    assert p_e_given_c[1] - p_e_given_c[0] > 0.5  # c drives e
    _, fact = gen.factorial_set(20_000, seed=0)
    assert abs(np.corrcoef(fact["c"], fact["e"])[0, 1]) < 0.03  # factorial: independent


def test_paper_tau_flips_with_sharpness_on_the_planted_generator():
    """Direction c → e fixed; the latent-outcome τ's sign follows which label is sharper."""
    signs = {}
    for s_c, s_e in ((4.5, 0.5), (0.5, 4.5)):
        gen = PlantedPair(s_c, s_e)
        z = gen.sample_latents(3000, seed=0)
        probe = LatentProbe().fit(z, gen.sample_labels(z, seed=0), holdout=0)
        zk = gen.sample_latents(2000, seed=1)
        signs[(s_c, s_e)] = tau(gate(zk, probe, "c", "e"), gate(zk, probe, "e", "c")) > 0
    assert signs == {(4.5, 0.5): False, (0.5, 4.5): True}


# ------------------------------------------------------------------ the CLI flag
def test_cage_verb_estimator_flag(tiny_run, tmp_path, capsys):
    run, _ = tiny_run
    out = tmp_path / "cal"
    flags = ["--pairs", "gender:age", "--permutations", "3", "--num-latents", "100", "--json"]
    code = cli.main(["cage", str(run), *flags, "--estimator", "calibrated", "--out", str(out)])
    assert code == 0
    payload = json.loads((out / "cage.json").read_text())
    assert payload["config"]["estimator"] == "calibrated"
    pair = payload["pairs"][0]
    assert pair["tau"] == pytest.approx(abs(pair["gate_ce"]) - abs(pair["gate_ec"]))
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:  # argparse's choices: exit 2, one error line
        cli.main(["cage", str(run), *flags, "--estimator", "best", "--out", str(out)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "--estimator" in err[-1] and "invalid choice" in err[-1]


def test_planted_grid_in_worker_processes_equals_one_process():
    """Spawned workers compute each generator whole from its own seed: the same rows, in order
    (each process with one thread, as a CPU's float sums depend on the thread count)."""
    from causalscene.reproductions._reversal import GridPreset, planted_grid

    preset = GridPreset((0.5, 4.5), 1, 300, 120, 60, 6, 200, 1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers get max(1, 1 // 2) = 1 thread each
    try:
        one = planted_grid(preset, seed=3, workers=1)
        two = planted_grid(preset, seed=3, workers=2)
    finally:
        torch.set_num_threads(threads)
    assert len(one["rows"]) == 4 * 16
    assert json.dumps(one, sort_keys=True) == json.dumps(two, sort_keys=True)


# ------------------------------------------------------------------ the reproduction
@pytest.mark.slow
def test_cage_reversal_tiny(tmp_path):
    from causalscene import reproductions

    result = reproductions.run("cage-reversal", tmp_path, seed=0, scale="tiny", device="cpu")
    m = result["measured"]
    rows = m["rows"]
    assert len(m["cells"]) == 2 * 2 * 2 * 2
    for cell in m["cells"]:
        keys = ("estimator", "outcome", "mode", "alpha_units")
        group = [r for r in rows if all(r[k] == cell[k] for k in keys)]
        assert cell["rows"] == len(group) == 4  # 2 × 2 sharpness pairs, one seed
        positive = [r["tau"] > 1e-6 * max(abs(r["gate_ce"]), abs(r["gate_ec"])) for r in group]
        assert cell["tau_recovered"] == pytest.approx(np.mean(positive))
        assert cell["inferred_reversed"] == pytest.approx(
            np.mean([r["inferred"] == "e->c" for r in group])
        )
    for r in rows:
        assert r["tau"] == pytest.approx(abs(r["gate_ce"]) - abs(r["gate_ec"]))
        if r["inferred"] == "c->e":
            assert r["tau"] > 0 and r["p_ce"] < 0.05
    paper = [c["tau_recovered"] for c in m["cells"] if c["estimator"] == "paper"]
    assert m["paper_min_tau_recovered"] == min(paper)
    assert result["holds"] == (min(paper) >= 0.9)
    for name in ("paper", "calibrated", "image_paper", "image_calibrated"):
        faces = m["faces"][name]
        scores = direction_scores(faces["rows"])
        assert faces["edges"] == pytest.approx(scores["edges"], nan_ok=True)
    assert 0 <= m["faces"]["closed_form_sign_agreement"] <= 1
    for name in ("image_paper", "image_calibrated"):  # the image outcome: the DAG's edges only
        rows = m["faces"][name]["rows"]
        assert {r["relation"] for r in rows} <= {"c->e"} and len(rows) == 7
