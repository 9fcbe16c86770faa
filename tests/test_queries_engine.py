"""The compiled elimination engine: answers vs brute force and pgmpy, determinism across hash
seeds, the memory bound, and caches that keep no state between queries."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from causalscene import elimination, queries
from causalscene.dag import CausalDAG, Node
from tests._brute import brute_query, random_dag

ROOT = Path(__file__).resolve().parents[1]


def _bundled(name):
    import pgmpy

    return CausalDAG.from_bif(
        Path(pgmpy.__file__).parent / "utils/example_models" / f"{name}.bif.gz"
    )


def _random_query(dag, rng, with_do):
    """One target, up to two evidence nodes read off a forward sample (positive probability)."""
    nodes = dag.nodes
    picks = [nodes[i] for i in rng.choice(len(nodes), min(4, len(nodes)), replace=False)]
    target, rest = picks[0], picks[1:]
    do = {}
    if with_do and rest:
        d = rest.pop()
        do = {d: int(rng.integers(dag.cardinality(d)))}
    draw = (dag.mutilate(do) if do else dag)._forward(1, rng)
    evidence = {n: int(draw[n][0]) for n in rest}
    return [target], evidence, do


@pytest.mark.parametrize("seed", range(8))
def test_random_queries_match_brute_force(seed):
    dag = random_dag(200 + seed, num_nodes=5 + seed % 4, max_parents=1 + seed % 3)
    rng = np.random.default_rng(seed)
    for i in range(6):
        targets, evidence, do = _random_query(dag, rng, with_do=i % 2 == 1)
        if i % 3 == 2:  # two targets, their axes in the asked order
            targets = [targets[0], *[n for n in dag.nodes if n not in {targets[0], *evidence}][:1]]
        ref = brute_query(dag, targets, evidence, do)
        got = (
            queries.intervene(dag, targets, do, evidence)
            if do
            else queries.condition(dag, targets, evidence)
        ).probs
        assert np.abs(got - ref).max() < 1e-12
        if not do:
            p = queries.probability_of_evidence(dag, evidence)
            assert p == pytest.approx(brute_joint_probability(dag, evidence), abs=1e-12)


def brute_joint_probability(dag, evidence):
    from tests._brute import joint_table

    names, table = joint_table(dag)
    return float(table[tuple(evidence.get(n, slice(None)) for n in names)].sum())


def test_rpg_fight_random_queries_match_brute_force(dag_path):
    dag = CausalDAG.from_yaml(dag_path("rpg_fight"))
    rng = np.random.default_rng(7)
    for i in range(6):
        targets, evidence, do = _random_query(dag, rng, with_do=i % 2 == 1)
        if do:
            got = queries.intervene(dag, targets, do, evidence)
        else:
            got = queries.condition(dag, targets, evidence)
        assert np.abs(got.probs - brute_query(dag, targets, evidence, do)).max() < 1e-12


def test_queried_and_intervened_variable_is_a_point_mass(dag_path):
    dag = CausalDAG.from_yaml(dag_path("rpg_fight"))
    got = queries.intervene(dag, ["action", "actor_attack"], {"action": 1}).probs
    ref = brute_query(dag, ["action", "actor_attack"], {}, {"action": 1})
    assert np.abs(got - ref).max() < 1e-12 and got[0].sum() == 0.0


def _pgmpy_answer(dag, target, evidence, do):
    from pgmpy.inference import VariableElimination

    model = (dag.mutilate(do) if do else dag).to_pgmpy()
    names = {k: dag.states(k)[v] for k, v in evidence.items()}
    factor = VariableElimination(model).query([target], evidence=names, show_progress=False)
    order = [str(s) for s in factor.state_names[target]]
    return np.asarray(factor.values)[[order.index(s) for s in dag.states(target)]]


@pytest.mark.parametrize(
    "name", ["alarm", "insurance", pytest.param("hailfinder", marks=pytest.mark.slow)]
)
def test_bundled_networks_match_pgmpy(name):
    dag = _bundled(name)
    rng = np.random.default_rng(3)
    for i in range(6):
        (target,), evidence, do = _random_query(dag, rng, with_do=i % 2 == 1)
        ours = (
            queries.intervene(dag, [target], do, evidence)
            if do
            else queries.condition(dag, [target], evidence)
        )
        assert np.abs(ours.probs - _pgmpy_answer(dag, target, evidence, do)).max() < 1e-9


_DETERMINISM = """
import json, sys
from causalscene import elimination, queries
from tests._brute import random_dag
dag = random_dag(11, num_nodes=40, max_parents=3, max_states=3)
nodes = dag.nodes
order = elimination.elimination_order(dag, [nodes[-1]], [nodes[3], nodes[20]], [nodes[9]])
probs = queries.intervene(dag, [nodes[-1]], {nodes[9]: 1}, {nodes[3]: 0, nodes[20]: 1}).probs
width = elimination.induced_width(dag)
print(json.dumps({"order": order, "probs": probs.tolist(), "width": width}))
"""


def test_elimination_order_does_not_depend_on_the_hash_seed():
    runs = []
    for hash_seed in ("1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(ROOT)}
        proc = subprocess.run(
            [sys.executable, "-c", _DETERMINISM], capture_output=True, text=True, env=env, cwd=ROOT
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert runs[0] == runs[1]
    assert len(runs[0]["order"]) > 5  # the query eliminates something


def _clique_dag(size):
    """A chain of ``size`` binary roots all feeding one collider per pair: conditioning on the
    last node couples every root, so eliminating them needs a factor over all of them."""
    nodes = [Node(f"r{i}", ("a", "b")) for i in range(size)]
    cpts = {f"r{i}": np.array([0.5, 0.5]) for i in range(size)}
    parents = tuple(f"r{i}" for i in range(size))
    table = np.full((2,) * size + (2,), 0.5)
    nodes.append(Node("sink", ("a", "b"), parents))
    cpts["sink"] = table
    return CausalDAG("clique", nodes, cpts)


def test_query_above_the_memory_bound_is_refused_before_allocating():
    dag = _clique_dag(12)  # the sink's CPT alone couples all 12 roots: a 2**13-entry factor
    ok = queries.condition(dag, ["r0"], {"sink": "a"})
    assert ok.probs == pytest.approx([0.5, 0.5])
    plan = elimination.query_plan(dag, ["r0"], ["sink"])
    assert plan.max_entries >= 2**11
    with pytest.raises(ValueError, match=r"above the bound of 1,000 entries") as info:
        queries.condition(dag, ["r0"], {"sink": "a"}, max_entries=1000)
    assert "\n" not in str(info.value) and "r1" in str(info.value)
    # the default bound (2**27 entries) refuses a 40-root clique: 2**40 entries, never allocated
    big, evidence = _all_pairs_colliders(30)
    with pytest.raises(ValueError, match="above the bound of 134,217,728 entries"):
        queries.condition(big, ["r0"], evidence)
    small, evidence = _all_pairs_colliders(4)  # the same shape, small: answered, and right
    got = queries.condition(small, ["r0", "r1"], evidence).probs
    codes = {k: 0 for k in evidence}
    assert np.abs(got - brute_query(small, ["r0", "r1"], codes)).max() < 1e-12


def _all_pairs_colliders(size):
    """``size`` binary roots and one collider per pair of roots: with every collider observed,
    the roots' moral graph is complete, so any order needs a factor over all of them."""
    nodes = [Node(f"r{i}", ("a", "b")) for i in range(size)]
    cpts = {f"r{i}": np.array([0.5, 0.5]) for i in range(size)}
    pair = np.array([[[0.9, 0.1], [0.2, 0.8]], [[0.3, 0.7], [0.6, 0.4]]])
    for i in range(size):
        for j in range(i + 1, size):
            nodes.append(Node(f"c{i}_{j}", ("a", "b"), (f"r{i}", f"r{j}")))
            cpts[f"c{i}_{j}"] = pair
    dag = CausalDAG("pairs", nodes, cpts)
    return dag, {n: "a" for n in dag.nodes if n.startswith("c")}


def test_caches_keep_no_state_between_queries(dag_path):
    dag = CausalDAG.from_yaml(dag_path("rpg_fight"))
    before = dag.to_dict()
    first = queries.condition(dag, ["actor_attack"], {"action": "attack"}).probs.copy()
    rng = np.random.default_rng(5)
    for _i in range(10):
        targets, evidence, do = _random_query(dag, rng, with_do=True)
        queries.intervene(dag, targets, do, evidence)
        queries.condition(dag, targets, evidence)
    again = queries.condition(dag, ["actor_attack"], {"action": "attack"}).probs
    assert np.array_equal(first, again)
    forced = queries.intervene(dag, ["actor_attack"], {"action": "attack"}).probs
    assert dag.to_dict() == before  # a do-query never edits the caller's DAG
    assert np.array_equal(forced, queries.condition(dag, ["actor_attack"]).probs)
    # results are copies: editing one does not touch the next
    first_again = queries.condition(dag, ["actor_attack"], {"action": "attack"})
    first_again.probs[:] = 0.0
    assert np.array_equal(
        queries.condition(dag, ["actor_attack"], {"action": "attack"}).probs, first
    )


def test_a_new_dag_with_other_cpts_gets_its_own_compiled_form(dag_path):
    dag = CausalDAG.from_yaml(dag_path("rpg_fight"))
    p = queries.condition(dag, ["actor_attack"], {"action": "attack"}).probs
    flipped = dag.with_cpts({"actor_attack": dag.cpt("actor_attack")[..., ::-1]})
    q = queries.condition(flipped, ["actor_attack"], {"action": "attack"}).probs
    attack = {"action": dag.state_index("action", "attack")}
    assert np.abs(q - brute_query(flipped, ["actor_attack"], attack)).max() < 1e-12
    assert not np.allclose(p, q)


def test_impossible_evidence_in_a_pruned_component_is_still_refused():
    # r -> a, s -> b: evidence b = y is impossible, and b is d-separated from the target a
    dag = CausalDAG.from_dict(
        {
            "nodes": {
                "r": {"states": ["x", "y"]},
                "a": {"states": ["x", "y"], "parents": ["r"]},
                "s": {"states": ["x", "y"]},
                "b": {"states": ["x", "y"], "parents": ["s"]},
            },
            "cpts": {
                "r": [0.5, 0.5],
                "a": {"x": [0.9, 0.1], "y": [0.2, 0.8]},
                "s": [0.3, 0.7],
                "b": {"x": [1.0, 0.0], "y": [1.0, 0.0]},
            },
        },
        source="pruned.yaml",
    )
    with pytest.raises(ValueError, match=r"pruned.yaml: evidence \{'b': 'y'\} has probability 0"):
        queries.condition(dag, ["a"], {"b": "y"})
    with pytest.raises(ValueError, match="has probability 0"):
        queries.intervene(dag, ["a"], {"r": "x"}, {"b": "y"})
    assert queries.probability_of_evidence(dag, {"b": "y"}) == 0.0


def test_relevant_nodes_are_the_ancestors_in_the_mutilated_graph():
    """The plan keeps the ancestors of the query, evidence and do nodes in the graph where the do
    nodes lost their parents (a bit-mask union when no do node sits among them, a search when one
    cuts an edge); checked against networkx on the mutilated graph."""
    import networkx as nx

    from causalscene.elimination import _relevant, compile_dag

    dag = random_dag(31, num_nodes=30, max_parents=3, max_states=2)
    c = compile_dag(dag)
    rng = np.random.default_rng(0)
    whole = nx.DiGraph([(p, n) for n in range(30) for p in c.parents[n]])
    whole.add_nodes_from(range(30))
    cut = 0
    for _ in range(200):
        seeds = [int(i) for i in rng.choice(30, 3, replace=False)]
        do = frozenset(int(i) for i in rng.choice(30, int(rng.integers(0, 3)), replace=False))
        graph = nx.DiGraph([(p, n) for n in range(30) for p in c.parents[n] if n not in do])
        graph.add_nodes_from(range(30))
        want = set(seeds).union(*(nx.ancestors(graph, s) for s in seeds)) | do
        assert _relevant(c, [*seeds, *do], do) == sorted(want)
        upstream = set(seeds).union(*(nx.ancestors(whole, s) for s in seeds if s not in do))
        cut += any(c.parents[d] and d in upstream for d in do)
    assert 20 < cut < 180  # both paths ran: a do node cut an edge upstream, or none did
