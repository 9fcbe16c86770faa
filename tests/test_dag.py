"""DAG files: the shipped tables, the CPT layout, sampling, and every validation fault."""

import copy
import string

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

from causalscene import queries
from causalscene.dag import CausalDAG, DAGError
from tests._brute import brute_query

VALID = {
    "name": "tiny",
    "nodes": {
        "a": {"states": ["x", "y"]},
        "b": {"states": ["p", "q", "r"], "parents": ["a"], "rendered": True},
        "c": {"states": ["no", "yes"], "parents": ["a", "b"], "hidden": True},
    },
    "cpts": {
        "a": [0.3, 0.7],
        "b": {"x": [0.2, 0.3, 0.5], "y": [0.6, 0.2, 0.2]},
        "c": {
            "x,p": [0.1, 0.9],
            "x,q": [0.2, 0.8],
            "x,r": [0.3, 0.7],
            "y,p": [0.4, 0.6],
            "y,q": [0.5, 0.5],
            "y,r": [0.6, 0.4],
        },
    },
}


def write(tmp_path, data, name="bad.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_all_shipped_dags_load(dag_path):
    for name in ("rpg_fight", "faces", "morpho", "mog"):
        dag = CausalDAG.from_yaml(dag_path(name))
        assert dag.name == name
        for node in dag.nodes:
            assert np.allclose(dag.cpt(node).sum(-1), 1.0)


def test_shipped_dags_resolve_by_name_through_the_package(tmp_path, monkeypatch, dag_path):
    """Shipped DAGs are package data (causalscene.dags), found by name from any directory; the
    alias rpg names rpg_fight; a path still loads a file, and a file in the cwd wins over a name."""
    from importlib import resources

    from causalscene.dag import shipped_dag_names, shipped_dag_path

    monkeypatch.chdir(tmp_path)
    assert shipped_dag_names() == ["faces", "mog", "morpho", "rpg_fight"]
    package = resources.files("causalscene.dags")
    for name in shipped_dag_names():
        assert shipped_dag_path(name).read_text() == package.joinpath(f"{name}.yaml").read_text()
        assert CausalDAG.load(name).to_dict() == CausalDAG.from_yaml(dag_path(name)).to_dict()
    assert CausalDAG.load("rpg").name == CausalDAG.shipped("rpg").name == "rpg_fight"
    assert shipped_dag_path("rpg") == shipped_dag_path("rpg_fight")
    with pytest.raises(DAGError, match="no shipped DAG 'wings'.*faces.*rpg = rpg_fight"):
        CausalDAG.load("wings")
    with pytest.raises(DAGError, match="no shipped DAG"):
        CausalDAG.shipped("../faces")
    with pytest.raises(DAGError, match="file not found"):
        CausalDAG.load("faces.yaml")  # a path (it has an extension), not a name
    mine = write(tmp_path, VALID, "mine.yaml")
    assert CausalDAG.load(mine).name == CausalDAG.load("mine.yaml").name == "tiny"
    (tmp_path / "faces").write_text("not a DAG")
    with pytest.raises(DAGError, match="unknown DAG file type"):
        CausalDAG.load("faces")  # the file in the working directory, not the shipped DAG


def test_rpg_fight_tables_are_the_tutorials(dag_path):
    dag = CausalDAG.from_yaml(dag_path("rpg_fight"))
    assert dag.hidden_nodes == [
        "actor_strength", "actor_defense", "actor_attack",
        "reactor_strength", "reactor_defense", "reactor_attack",
    ]  # fmt: skip
    assert set(dag.rendered_nodes) == {
        "actor",
        "actor_type",
        "reactor",
        "reactor_type",
        "action",
        "reaction",
    }
    # P(high | golem, type3) for strength, defense, attack: .2, .4, .1 (issue 2's table)
    golem, type3, high = 1, 2, 1
    assert dag.cpt("actor_strength")[golem, type3, high] == pytest.approx(0.2)
    assert dag.cpt("reactor_defense")[golem, type3, high] == pytest.approx(0.4)
    assert dag.cpt("actor_attack")[0, 1, high] == pytest.approx(0.4)  # satyr type2
    assert dag.parents("action") == ("actor_strength", "actor_defense", "actor_attack")
    # action | S=high, D=low, A=high: (.4, .3, .3)
    assert np.allclose(dag.cpt("action")[1, 0, 1], [0.4, 0.3, 0.3])
    r = dag.cpt("reaction")
    assert np.allclose(r[1, 0, 0, 1], [0.2, 0.4, 0.399, 0.001])  # reactor 100, taunt
    assert np.allclose(r[0, 1, 1, 0], [0.3, 0.2, 0.3, 0.2])  # reactor 011, attack
    assert np.allclose(r[:, :, 0, 2], [0.001, 0.001, 0.997, 0.001])  # walk, reactor attack low
    assert np.allclose(r[:, :, 1, 2], [0.001, 0.001, 0.99, 0.008])


def test_faces_edges_are_strong(dag_path):
    dag = CausalDAG.from_yaml(dag_path("faces"))
    assert {n for n in dag.nodes if not dag.parents(n)} == {"gender", "age", "smiling"}
    assert not dag.children("smiling")
    for node in dag.nodes:
        table = dag.cpt(node)
        for axis in range(table.ndim - 1):  # every parent, every context of the others
            moved = np.moveaxis(table, axis, 0)
            tv = 0.5 * np.abs(moved[0] - moved[1]).sum(-1)
            assert tv.min() >= 0.2, (node, axis)


def test_cpt_layout_and_conversions(tmp_path):
    dag = CausalDAG.from_dict(VALID, source="tiny.yaml")
    assert dag.cpt("c").shape == (2, 3, 2)
    assert dag.cpt("c")[1, 2, 0] == pytest.approx(0.6)
    assert dag.topological_order == ["a", "b", "c"]
    assert dag.label_nodes == ["a", "b"]
    again = CausalDAG.from_dict(dag.to_dict())
    assert again.digest() == dag.digest()
    back = CausalDAG.from_pgmpy(dag.to_pgmpy())
    for n in dag.nodes:
        assert np.allclose(back.cpt(n), dag.cpt(n))
    assert set(dag.to_networkx().edges) == {("a", "b"), ("a", "c"), ("b", "c")}


def test_mutilate_returns_a_copy():
    dag = CausalDAG.from_dict(VALID)
    cut = dag.mutilate({"b": "q"})
    assert cut.parents("b") == () and np.allclose(cut.cpt("b"), [0, 1, 0])
    assert dag.parents("b") == ("a",) and np.allclose(dag.cpt("b")[0], [0.2, 0.3, 0.5])


def test_sampling_matches_exact_marginals(dag_path):
    dag = CausalDAG.from_yaml(dag_path("rpg_fight"))
    n = 40_000
    for kwargs in ({}, {"do": {"action": "walk"}}, {"evidence": {"reaction": "hurt"}}):
        draw = dag.sample(n, seed=7, **kwargs)
        for node in ("actor_attack", "reaction", "action"):
            if node in kwargs.get("evidence", {}) or node in kwargs.get("do", {}):
                assert np.all(
                    draw[node]
                    == dag.state_index(
                        node, {**kwargs.get("evidence", {}), **kwargs.get("do", {})}[node]
                    )
                )
                continue
            if "do" in kwargs:
                exact = queries.intervene(dag, [node], kwargs["do"]).probs
            else:
                exact = queries.condition(dag, [node], kwargs.get("evidence")).probs
            counts = np.bincount(draw[node], minlength=len(exact))
            keep = exact > 0
            p = stats.chisquare(counts[keep], exact[keep] * n).pvalue
            assert p > 1e-3, (kwargs, node, counts / n, exact)
    a = dag.sample(100, seed=3)
    b = dag.sample(100, seed=3)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert np.all(dag.sample(500, evidence={"reaction": "dying"}, seed=1)["reaction"] == 0)


def test_joint_probability_matches_enumeration():
    dag = CausalDAG.from_dict(VALID)
    draw = dag.sample(50, seed=0)
    p = dag.joint_probability(draw)
    full = brute_query(dag, ["a", "b", "c"])
    assert np.allclose(p, full[draw["a"], draw["b"], draw["c"]])


# --------------------------------------------------------------- validation
def mutate(fn):
    data = copy.deepcopy(VALID)
    fn(data)
    return data


FAULTS = [
    (lambda d: d["nodes"]["b"].update(parents=["zz"]), "node 'b': unknown parent 'zz'"),
    (lambda d: d["nodes"]["a"].update(parents=["c"]), "cycle a -> b -> c -> a|cycle"),
    (lambda d: d["nodes"]["b"].update(states=["p", "p", "r"]), "node 'b': duplicate state 'p'"),
    (lambda d: d["cpts"]["c"].pop("y,q"), "node 'c': missing CPT row 'y,q'"),
    (lambda d: d["cpts"]["c"].update({"y,s": [0.5, 0.5]}), "node 'c': extra CPT row 'y,s'"),
    (
        lambda d: d["cpts"]["b"].update(x=[0.5, 0.5]),
        "node 'b': CPT row 'x' has length 2, expected 3",
    ),
    (
        lambda d: d["cpts"]["b"].update(x=[-0.1, 0.6, 0.5]),
        "node 'b': CPT row 'x' has a negative probability",
    ),
    (
        lambda d: d["cpts"]["b"].update(x=[0.2, 0.3, 0.4]),
        "node 'b': CPT row 'x' sums to 0.9, not 1",
    ),
    (lambda d: d["cpts"].pop("a"), "node 'a': missing CPT"),
    (lambda d: d["cpts"].update(zz=[1.0]), "node 'zz': CPT given for unknown node"),
    (
        lambda d: d["nodes"]["a"].update(hidden=True, rendered=True),
        "node 'a': a node cannot be both",
    ),
    (lambda d: d["nodes"]["a"].update(colour="red"), "node 'a': unknown key 'colour'"),
    (lambda d: d["cpts"].update(a={"x": [1.0]}), "node 'a': a root's CPT is one row"),
    (
        lambda d: d["cpts"]["b"].update(x=[0.2, "many", 0.5]),
        "node 'b': CPT row 'x' has a non-number",
    ),
]


@pytest.mark.parametrize("fault,message", FAULTS)
def test_each_fault_names_file_node_and_fault(tmp_path, fault, message):
    path = write(tmp_path, mutate(fault))
    with pytest.raises(DAGError) as info:
        CausalDAG.from_yaml(path)
    text = str(info.value)
    assert text.startswith(str(path)), text
    assert any(m in text for m in message.split("|")), text


def test_cycle_is_printed(tmp_path):
    path = write(tmp_path, mutate(lambda d: d["nodes"]["a"].update(parents=["c"])))
    with pytest.raises(DAGError, match=r"cycle (\w -> )+\w"):
        CausalDAG.from_yaml(path)


def test_file_level_faults(tmp_path):
    with pytest.raises(DAGError, match="file not found"):
        CausalDAG.from_yaml(tmp_path / "missing.yaml")
    with pytest.raises(DAGError, match="not valid YAML"):
        CausalDAG.from_yaml(write(tmp_path, "nodes: [a\n"))
    with pytest.raises(DAGError, match="'nodes' must be a non-empty mapping"):
        CausalDAG.from_yaml(write(tmp_path, "name: x\ncpts: {}\n"))
    with pytest.raises(DAGError, match="unknown DAG file type"):
        CausalDAG.load(tmp_path / "x.txt")
    with pytest.raises(DAGError, match=r"x\.bif:2: expected '\}', found 'variable'"):
        CausalDAG.from_bif(write(tmp_path, "network x {\n variable", "x.bif"))
    # yaml tags that would build objects are refused by the safe loader
    with pytest.raises(DAGError, match="not valid YAML"):
        CausalDAG.from_yaml(write(tmp_path, "name: !!python/object/apply:os.system ['true']\n"))


def test_yes_no_states_stay_strings(tmp_path):
    text = "nodes:\n  a: {states: [no, yes]}\n  b: {states: [off, on], parents: [a]}\ncpts:\n  a: [0.5, 0.5]\n  b:\n    no: [1, 0]\n    yes: [0, 1]\n"
    dag = CausalDAG.from_yaml(write(tmp_path, text))
    assert dag.states("a") == ("no", "yes") and dag.states("b") == ("off", "on")


# ------------------------------------------------------- property-based
names = st.text(alphabet=string.ascii_lowercase + "_,= ", min_size=0, max_size=4)
scalars = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-3, 3),
    names,
    st.booleans(),
    st.none(),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(names, inner, max_size=4)),
    max_leaves=12,
)


@st.composite
def malformed(draw):
    """A valid DAG dict with a few random paths replaced by random junk."""
    data = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 3))):
        node = data
        path = []
        while isinstance(node, (dict, list)) and node and draw(st.booleans()):
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            key = draw(st.sampled_from(keys))
            path.append((node, key))
            node = node[key]
        if path:
            parent, key = path[-1]
            parent[key] = draw(values)
        else:
            data[draw(names)] = draw(values)
    return data


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(malformed())
def test_malformed_files_give_only_clear_errors(data):
    try:
        dag = CausalDAG.from_dict(data, source="fuzz.yaml")
    except DAGError as exc:
        assert str(exc).startswith("fuzz.yaml")
        return
    # if it loaded, it is a valid DAG: rows normalised, queries work
    for node in dag.nodes:
        assert np.allclose(dag.cpt(node).sum(-1), 1.0, atol=1e-6)


@settings(max_examples=80, deadline=None)
@given(
    variable=st.sampled_from(["a", "b", "c", "zz", ""]),
    ev_node=st.sampled_from(["a", "b", "c", "zz"]),
    ev_state=st.one_of(
        st.sampled_from(["x", "y", "p", "q", "r", "no", "yes", "bogus"]), st.integers(-2, 4)
    ),
    kind=st.sampled_from(["condition", "intervene", "counterfactual"]),
)
def test_malformed_queries_give_only_clear_errors(variable, ev_node, ev_state, kind):
    dag = CausalDAG.from_dict(VALID, source="tiny.yaml")
    try:
        if kind == "condition":
            r = queries.condition(dag, [variable], {ev_node: ev_state})
        elif kind == "intervene":
            r = queries.intervene(dag, [variable], {ev_node: ev_state})
        else:
            r = queries.counterfactual(dag, [variable], {"a": "x"}, {ev_node: ev_state})
    except DAGError as exc:
        message = str(exc)
        assert message.startswith("tiny.yaml")
        assert any(
            s in message
            for s in ("unknown variable", "unknown state", "also in the evidence", "probability 0")
        )
        return
    assert r.probs.sum() == pytest.approx(1.0)
