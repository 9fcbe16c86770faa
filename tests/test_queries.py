"""Exact queries against brute-force enumeration, hand-solved and textbook answers."""

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from causalscene import queries
from causalscene.dag import CausalDAG, DAGError
from tests._brute import brute_counterfactual, brute_query, random_dag

SHAPES = [(3, 1), (5, 2), (6, 3), (8, 3), (8, 2), (7, 4)]


def _codes(dag, rng, nodes):
    return {n: int(rng.integers(dag.cardinality(n))) for n in nodes}


def _pick(dag, rng, avoid=(), k=1):
    pool = [n for n in dag.nodes if n not in avoid]
    return [pool[i] for i in rng.choice(len(pool), size=min(k, len(pool)), replace=False)]


def _possible_evidence(dag, rng, avoid, k):
    """Evidence drawn from a forward sample, so it has positive probability."""
    sample = dag.sample(1, seed=int(rng.integers(1 << 30)))
    nodes = _pick(dag, rng, avoid, k)
    return {n: int(sample[n][0]) for n in nodes}


@pytest.mark.parametrize("seed", range(6))
def test_condition_intervene_counterfactual_match_brute_force(seed):
    num_nodes, max_parents = SHAPES[seed]
    dag = random_dag(seed, num_nodes, max_parents)
    rng = np.random.default_rng(100 + seed)
    for _ in range(4):
        targets = _pick(dag, rng, k=2)
        evidence = _possible_evidence(dag, rng, targets, k=2)
        got = queries.condition(dag, targets, evidence).probs
        assert np.abs(got - brute_query(dag, targets, evidence)).max() < 1e-9

        do_node = _pick(dag, rng, targets, k=1)
        do = _codes(dag, rng, do_node)
        ev = {k: v for k, v in evidence.items() if k not in do}
        mutilated = dag.mutilate(do)
        if ev and queries.probability_of_evidence(mutilated, ev) == 0:
            ev = {}
        got = queries.intervene(dag, targets, do, ev).probs
        assert np.abs(got - brute_query(dag, targets, ev, do)).max() < 1e-9

        factual = _possible_evidence(dag, rng, (), k=3)
        cf = queries.counterfactual(dag, targets, factual, do).probs
        assert np.abs(cf - brute_counterfactual(dag, targets, factual, do)).max() < 1e-9


def test_rpg_fight_against_brute_force(dag_path):
    dag = CausalDAG.from_yaml(dag_path("rpg_fight"))
    ev = {"action": 0, "reaction": 1}
    for targets in (["actor_attack"], ["reactor_strength", "reactor_defense"]):
        got = queries.condition(dag, targets, ev).probs
        assert np.abs(got - brute_query(dag, targets, ev)).max() < 1e-9
    got = queries.intervene(dag, ["actor_attack", "reaction"], {"action": 0}).probs
    assert (
        np.abs(got - brute_query(dag, ["actor_attack", "reaction"], {}, {"action": 0})).max() < 1e-9
    )
    factual = {"actor": 0, "reactor": 0, "action": 0, "reaction": 0}
    got = queries.counterfactual(dag, ["reaction"], factual, {"reactor": 1}).probs
    ref = brute_counterfactual(dag, ["reaction"], factual, {"reactor": 1})
    assert np.abs(got - ref).max() < 1e-9


@pytest.mark.parametrize("seed", range(3))
def test_twin_cache_answers_bit_identically(seed, monkeypatch, dag_path):
    """Counterfactuals through kept twin networks equal freshly built ones bit for bit, and the
    brute-force enumeration; one (DAG, do) builds one twin, and the cache stays bounded."""
    dag = random_dag(seed, 7, 3) if seed else CausalDAG.from_yaml(dag_path("rpg_fight"))
    rng = np.random.default_rng(200 + seed)
    cases = []
    for _ in range(12):  # few do's, many factual worlds: the evaluate pattern
        targets = _pick(dag, rng, k=2)
        do = _codes(dag, rng, _pick(dag, rng, targets, k=1 + int(rng.integers(2))))
        cases.append((targets, _possible_evidence(dag, rng, (), k=3), do))
    cases += cases[:4]  # asked again: answered from the kept twins
    monkeypatch.setattr(queries, "TWIN_CACHE_SIZE", 0)
    fresh = [queries.counterfactual(dag, t, f, d).probs for t, f, d in cases]
    first = cases[0][2]
    assert queries.twin_network(dag, first)[0] is not queries.twin_network(dag, first)[0]
    monkeypatch.setattr(queries, "TWIN_CACHE_SIZE", 256)
    kept = [queries.counterfactual(dag, t, f, d).probs for t, f, d in cases]
    for (t, f, d), a, b in zip(cases, fresh, kept):
        assert np.array_equal(a, b)
        assert np.abs(b - brute_counterfactual(dag, t, f, d)).max() < 1e-9
    twin, names = queries.twin_network(dag, cases[0][2])
    assert queries.twin_network(dag, cases[0][2])[0] is twin
    names.clear()  # the caller's copy: the kept map is untouched
    assert queries.twin_network(dag, cases[0][2])[1]
    monkeypatch.setattr(queries, "TWIN_CACHE_SIZE", 2)
    copy = dag.with_cpts({})  # another DAG object: twins of its own
    for _, _, d in cases:
        queries.twin_network(copy, d)
    assert len(queries._TWINS[copy]) == 2 and len(queries._TWINS[dag]) > 2


def test_condition_and_do_differ_upstream_in_tutorial(dag_path):
    dag = CausalDAG.from_yaml(dag_path("rpg_fight"))
    prior = queries.condition(dag, ["actor_attack"]).probs
    seen = queries.condition(dag, ["actor_attack"], {"action": "attack"}).probs
    forced = queries.intervene(dag, ["actor_attack"], {"action": "attack"}).probs
    assert np.abs(forced - prior).max() < 1e-12  # upstream beliefs do not move under do
    assert abs(seen[1] - prior[1]) > 0.1  # but they do when we only observe


def test_hand_solved_counterfactual():
    dag = CausalDAG.from_dict(
        {
            "nodes": {"X": {"states": [0, 1]}, "Y": {"states": [0, 1], "parents": ["X"]}},
            "cpts": {"X": [0.5, 0.5], "Y": {"0": [0.8, 0.2], "1": [0.3, 0.7]}},
        }
    )
    r = queries.counterfactual(dag, ["Y"], {"X": "1", "Y": "1"}, {"X": "0"})
    assert r.probs[1] == pytest.approx(0.2 / 0.7, abs=1e-12)
    r0 = queries.counterfactual(dag, ["Y"], {"X": "1", "Y": "0"}, {"X": "0"})
    assert r0.probs[1] == pytest.approx(0.0, abs=1e-12)
    assert "monotone" in r.assumption and "monotone" in r.to_dict()["assumption"]
    # do() to the factual value gives back the factual world
    same = queries.counterfactual(dag, ["Y"], {"X": "1", "Y": "1"}, {"X": "1"})
    assert same.probs[1] == pytest.approx(1.0)


def test_gumbel_counterfactual_estimates():
    # For a binary child, both the monotone and the Gumbel-max model give P(Y_0=1 | X=1, Y=0) = 0
    # (counterfactual stability) and keep the factual value under do(X = x_factual).
    dag = CausalDAG.from_dict(
        {
            "nodes": {"X": {"states": [0, 1]}, "Y": {"states": [0, 1, 2], "parents": ["X"]}},
            "cpts": {"X": [0.5, 0.5], "Y": {"0": [0.6, 0.3, 0.1], "1": [0.2, 0.3, 0.5]}},
        }
    )
    same = queries.counterfactual(dag, ["Y"], {"X": 1, "Y": 2}, {"X": 1}, noise="gumbel")
    assert same.probs[2] == 1.0
    r = queries.counterfactual(dag, ["Y"], {"X": 1, "Y": 0}, {"X": 0}, noise="gumbel", seed=3)
    # Y=0 became more likely under X=0 (0.2 -> 0.6): Gumbel-max stability keeps Y at 0.
    assert r.probs[0] == 1.0
    a = queries.counterfactual(dag, ["Y"], {"X": 1, "Y": 2}, {"X": 0}, noise="gumbel", seed=1)
    b = queries.counterfactual(dag, ["Y"], {"X": 1, "Y": 2}, {"X": 0}, noise="gumbel", seed=1)
    assert np.array_equal(a.probs, b.probs)  # same seed, same numbers
    assert a.probs.sum() == pytest.approx(1.0)
    # the counterfactual marginal over all factual worlds is the interventional one
    # (a property of any SCM): average P(Y_0 | X=1, Y=y) P(Y=y | X=1) = P(Y | do(X=0)).
    total = np.zeros(3)
    for y in range(3):
        cf = queries.counterfactual(
            dag, ["Y"], {"X": 1, "Y": y}, {"X": 0}, noise="gumbel", num_samples=40_000, seed=y
        )
        total += cf.probs * dag.cpt("Y")[1, y]
    assert np.abs(total - dag.cpt("Y")[0]).max() < 0.02


def test_sprinkler_regression_not_pgmpy_causal_inference():
    # DESIGN.md: P(R=1 | do(S=1), W=1) = .99/1.89 = 0.5238; pgmpy's CausalInference says 0.5455.
    dag = CausalDAG.from_dict(
        {
            "nodes": {
                "C": {"states": [0, 1]},
                "S": {"states": [0, 1], "parents": ["C"]},
                "R": {"states": [0, 1], "parents": ["C"]},
                "W": {"states": [0, 1], "parents": ["S", "R"]},
            },
            "cpts": {
                "C": [0.5, 0.5],
                "S": {"0": [0.5, 0.5], "1": [0.9, 0.1]},
                "R": {"0": [0.8, 0.2], "1": [0.2, 0.8]},
                "W": {"0,0": [1.0, 0.0], "0,1": [0.1, 0.9], "1,0": [0.1, 0.9], "1,1": [0.01, 0.99]},
            },
        }
    )
    r = queries.intervene(dag, ["R"], {"S": "1"}, {"W": "1"})
    assert r.probs[1] == pytest.approx(0.99 / 1.89, abs=1e-9)
    from pgmpy.inference import CausalInference

    wrong = CausalInference(dag.to_pgmpy()).query(
        ["R"], do={"S": "1"}, evidence={"W": "1"}, show_progress=False
    )
    assert abs(float(wrong.values[1]) - r.probs[1]) > 0.01  # the reason we do not use it


def test_alarm_from_bundled_bif(tmp_path):
    import pgmpy

    bundled = Path(pgmpy.__file__).parent / "utils" / "example_models" / "alarm.bif.gz"
    dag = CausalDAG.from_bif(bundled)
    assert len(dag.nodes) == 37 and len(dag.edges) == 46
    plain = tmp_path / "alarm.bif"
    with gzip.open(bundled, "rb") as src, open(plain, "wb") as dst:
        shutil.copyfileobj(src, dst)
    again = CausalDAG.load(plain)
    assert again.digest() == dag.digest()
    r = queries.condition(dag, ["HYPOVOLEMIA"], {"HRBP": "HIGH", "CVP": "LOW"})
    assert r.probs.sum() == pytest.approx(1.0)
    do = queries.intervene(dag, ["LVFAILURE"], {"CVP": "LOW"})
    prior = queries.condition(dag, ["LVFAILURE"])
    assert np.allclose(do.probs, prior.probs)  # CVP is downstream of LVFAILURE


def test_asia_from_bundled_bif_matches_brute_force():
    import pgmpy

    dag = CausalDAG.from_bif(
        Path(pgmpy.__file__).parent / "utils" / "example_models" / "asia.bif.gz"
    )
    assert len(dag.nodes) == 8
    ev = {"xray": dag.state_index("xray", "yes"), "smoke": dag.state_index("smoke", "yes")}
    got = queries.condition(dag, ["lung", "tub"], ev).probs
    assert np.abs(got - brute_query(dag, ["lung", "tub"], ev)).max() < 1e-9
    do = {"either": dag.state_index("either", "yes")}
    got = queries.intervene(dag, ["dysp", "lung"], do).probs
    assert np.abs(got - brute_query(dag, ["dysp", "lung"], {}, do)).max() < 1e-9
    factual = {"dysp": 0, "xray": 0, "smoke": 1}
    got = queries.counterfactual(dag, ["dysp"], factual, {"bronc": 1}).probs
    assert np.abs(got - brute_counterfactual(dag, ["dysp"], factual, {"bronc": 1})).max() < 1e-9


def test_query_errors_name_the_fault(dag_path):
    dag = CausalDAG.from_yaml(dag_path("rpg_fight"))
    with pytest.raises(DAGError, match="unknown variable 'actr'"):
        queries.condition(dag, ["actr"])
    with pytest.raises(DAGError, match="node 'action': unknown state 'fly'"):
        queries.condition(dag, ["actor"], {"action": "fly"})
    with pytest.raises(DAGError, match="do names unknown variable 'x'"):
        queries.intervene(dag, ["actor"], {"x": "1"})
    sure = CausalDAG.from_dict(
        {
            "nodes": {"a": {"states": ["x", "y"]}, "b": {"states": ["x", "y"], "parents": ["a"]}},
            "cpts": {"a": [1.0, 0.0], "b": {"x": [0.5, 0.5], "y": [0.5, 0.5]}},
        },
        source="sure.yaml",
    )
    with pytest.raises(DAGError, match=r"sure.yaml: evidence \{'a': 'y'\} has probability 0"):
        queries.condition(sure, ["b"], {"a": "y"})
    with pytest.raises(DAGError, match="unknown noise model"):
        queries.counterfactual(
            dag, ["reaction"], {"actor": "satyr"}, {"reactor": "golem"}, noise="x"
        )
    with pytest.raises(DAGError, match="also in the evidence"):
        queries.condition(dag, ["actor"], {"actor": "satyr"})


def test_result_tables(dag_path):
    dag = CausalDAG.from_yaml(dag_path("rpg_fight"))
    r = queries.condition(dag, ["action", "actor"], {"reaction": "hurt"})
    frame = r.to_frame()
    assert list(frame.columns) == ["action", "actor", "probability"]
    assert len(frame) == 6 and frame["probability"].sum() == pytest.approx(1.0)
    d = r.to_dict()
    assert d["probabilities"] == pytest.approx(r.probs.ravel().tolist())
    assert r.prob(action="taunt", actor="golem") == pytest.approx(r.probs[1, 1])
    assert np.allclose(
        r.marginal("actor"), queries.condition(dag, ["actor"], {"reaction": "hurt"}).probs
    )
