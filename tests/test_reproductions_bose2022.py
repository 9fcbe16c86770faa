"""The CAGE reproductions (Bose, Monti & Grover 2022) at ``scale="tiny"``.

Tiny runs are far too small for the paper's claims to mean anything, so these tests check each
reported field against its definition — τ from the reported GATEs, p-values as permutation
p-values, counts from the reported rows and the DAG, ``holds`` recomputed from ``measured`` by
this file's own reading of each claim — never that a claim holds.
"""

import json
import math
import statistics

import networkx as nx
import pytest

from causalscene import reproductions
from causalscene.dag import CausalDAG

RECORD = {"name", "claim", "source", "measured", "holds", "seed", "scale", "device", "seconds"}
LEVEL = 0.05  # CageConfig.level
MIN_ACCURACY = 0.75  # CageConfig.min_accuracy


def _run(name, out):
    result = reproductions.run(name, out, seed=0, scale="tiny", device="cpu")
    assert set(result) == RECORD
    assert (result["name"], result["seed"], result["scale"], result["device"]) == (
        name,
        0,
        "tiny",
        "cpu",
    )
    assert result["claim"].strip() and "Bose, Monti & Grover" in result["source"]
    assert result["seconds"] >= 0
    assert isinstance(result["holds"], bool)
    assert json.loads((out / "result.json").read_text())["name"] == name
    return result


def _tau(gate_ce, gate_ec):
    return abs(gate_ce) - abs(gate_ec)


def _is_p_value(p, permutations=None):
    """A permutation p-value with the +1 correction: in [1 / (1 + P), 1]."""
    low = 1 / (1 + permutations) if permutations else 0
    return low - 1e-12 <= p <= 1 and p > 0


def _inferred(tau, p_ce, p_ec):
    """CAGE's direction: the sign of τ, kept when the larger GATE's p-value is below the level."""
    if tau > 0 and p_ce < LEVEL:
        return "c->e"
    if tau < 0 and p_ec < LEVEL:
        return "e->c"
    return "none"


def test_cage_mog_tiny(tmp_path):
    from causalscene.datasets import load_arrays

    result = _run("cage-mog", tmp_path)
    measured = result["measured"]
    assert measured["n_points"] == len(load_arrays(tmp_path / "data")[0])
    holds = True
    for name, order in (("causal_order", [0, 1]), ("anticausal_order", [1, 0])):
        part = measured[name]
        flows = part["flows"]
        assert part["order"] == order
        assert [f["flow_seed"] for f in flows] == list(range(len(flows)))  # seeds seed, seed+1..
        for f in flows:
            assert f["tau"] == pytest.approx(
                _tau(f["gate_mixture_to_low_mean"], f["gate_low_mean_to_mixture"]), abs=1e-12
            )
            assert _is_p_value(f["p_value"], f["permutations"])
            assert _is_p_value(f["p_value_reverse"], f["permutations"])
            assert f["infers_mixture_to_low_mean"] == (f["tau"] > 0 and f["p_value"] < LEVEL)
            assert f["infers_low_mean_to_mixture"] == (
                f["tau"] < 0 and f["p_value_reverse"] < LEVEL
            )
            latent = f["latent_outcome"]
            gates = (latent["gate_mixture_to_low_mean"], latent["gate_low_mean_to_mixture"])
            assert latent["tau"] == pytest.approx(_tau(*gates), abs=1e-12)
            assert _is_p_value(latent["p_value"]) and _is_p_value(latent["p_value_reverse"])
            assert latent["inferred"] == _inferred(
                latent["tau"], latent["p_value"], latent["p_value_reverse"]
            )
            accuracy = latent["probe_accuracy"]
            assert latent["reliable"] == (min(accuracy.values()) >= MIN_ACCURACY)
            assert latent["mmd_mixture"] >= 0 and latent["mmd_low_mean"] >= 0
        agree = sum(f["infers_mixture_to_low_mean"] for f in flows)
        assert part["flows_inferring_mixture_to_low_mean"] == agree
        reverse = sum(f["infers_low_mean_to_mixture"] for f in flows)
        assert part["flows_inferring_low_mean_to_mixture"] == reverse
        assert part["median_tau"] == pytest.approx(statistics.median(f["tau"] for f in flows))
        assert part["median_latent_tau"] == pytest.approx(
            statistics.median(f["latent_outcome"]["tau"] for f in flows)
        )
        holds = holds and agree > len(flows) / 2  # a majority of the flows, in each ordering
        assert (tmp_path / f"counterfactuals_{name}.png").is_file()
    assert result["holds"] == holds


def test_cage_morpho_tiny(tmp_path):
    result = _run("cage-morpho", tmp_path)
    m = result["measured"]
    assert m["tau"] == pytest.approx(
        _tau(m["gate_thickness_to_intensity"], m["gate_intensity_to_thickness"]), abs=1e-12
    )
    for key in ("p_value", "p_value_reverse", "p_tau"):
        assert _is_p_value(m[key])
    assert m["inferred"] == _inferred(m["tau"], m["p_value"], m["p_value_reverse"])
    assert m["reliable"] == (min(m["probe_accuracy"].values()) >= MIN_ACCURACY)
    assert math.isfinite(m["final_train_elbo"])
    # the numbers are the pipeline's, as written to its cage.json
    pair = json.loads((tmp_path / "cage" / "cage.json").read_text())["pairs"][0]
    assert (pair["cause"], pair["effect"]) == ("thickness", "intensity")
    assert pair["tau"] == m["tau"] and pair["p_ce"] == m["p_value"]
    # the one pair is the morpho DAG's edge thickness -> intensity, scored as an edge
    edges = m["edges"]
    assert (edges["pairs"], m["non_edges"]["pairs"], m["indirect"]["pairs"]) == (1, 0, 0)
    assert edges["scored"] == int(m["reliable"])
    assert edges["recovered"] == int(m["reliable"] and m["inferred"] == "c->e")
    assert edges["reversed"] == int(m["reliable"] and m["inferred"] == "e->c")
    assert result["holds"] == (m["tau"] > 0 and m["p_value"] < LEVEL)


def test_cage_faces_tiny(tmp_path):
    _check_scored_on_faces_dag(_run("cage-faces", tmp_path))


def test_cage_dcgan_tiny(tmp_path):
    """As cage-faces, on the faces DCGAN: latents by inversion, its summary recomputable."""
    result = _run("cage-dcgan", tmp_path)
    _check_scored_on_faces_dag(result)
    m = result["measured"]
    for found in (m["latents"], m["inversion_heldout"]):
        assert found["method"] == "inversion" and found["steps"] == 50
        assert 0 <= found["recon_mse_mean"] <= found["recon_mse_p90"] <= found["recon_mse_max"]
        assert found["pixel_variance"] > 0
    assert set(m["gan_last_epoch"]) == {"loss_d", "loss_g", "d_real", "d_fake"}
    assert 0 <= m["gan_last_epoch"]["d_real"] <= 1 and 0 <= m["gan_last_epoch"]["d_fake"] <= 1
    cage = json.loads((tmp_path / "cage" / "cage.json").read_text())
    assert cage["latents"] == m["latents"]


def _check_scored_on_faces_dag(result):
    """Every row's τ, p-values, inferred direction and reliability from its definition; the edge
    and non-edge counts recounted from the rows and the faces DAG; ``holds`` recomputed."""
    m = result["measured"]
    rows = m["rows"]
    dag = CausalDAG.shipped("faces")
    binary = [a for a in dag.label_nodes if dag.cardinality(a) == 2]
    assert m["pairs"] == len(rows) == len(binary) * (len(binary) - 1) // 2
    for r in rows:
        assert r["tau"] == pytest.approx(_tau(r["gate_ce"], r["gate_ec"]), abs=1e-12)
        assert all(_is_p_value(r[k]) for k in ("p_ce", "p_ec", "p_tau"))
        assert r["inferred"] == _inferred(r["tau"], r["p_ce"], r["p_ec"])
        assert r["reliable"] == (min(r["accuracy_c"], r["accuracy_e"]) >= MIN_ACCURACY)
    # edges: the rows' direct edges are exactly the DAG's edges between binary attributes
    graph = dag.to_networkx()
    dag_edges = {(u, v) for u, v in graph.edges if u in binary and v in binary}
    edge_rows = [r for r in rows if r["relation"] in ("c->e", "e->c")]
    as_edges = {
        (r["cause"], r["effect"]) if r["relation"] == "c->e" else (r["effect"], r["cause"])
        for r in edge_rows
    }
    assert as_edges == dag_edges
    assert [r["kind"] for r in rows] == [_kind(graph, r) for r in rows]
    assert m["edges"]["pairs"] == len(dag_edges)
    scored = [r for r in edge_rows if r["reliable"]]
    right = [r for r in scored if graph.has_edge(*_directed(r))]
    _check_scores(m, rows, graph)
    assert m["scored_pairs"] == sum(r["reliable"] for r in rows)
    # holds: at least half of the reliably probed DAG edges come out in the DAG's direction
    assert result["holds"] == (len(scored) > 0 and len(right) >= len(scored) / 2)


def _kind(graph, row):
    c, e = row["cause"], row["effect"]
    if graph.has_edge(c, e) or graph.has_edge(e, c):
        return "edge"
    return "indirect" if nx.has_path(graph, c, e) or nx.has_path(graph, e, c) else "non-edge"


def _check_scores(m, rows, graph):
    """``m``'s edges / non_edges counts, recounted from ``rows`` (each with ``inferred``) and the
    DAG's graph: edges by the arrow the row names, non-edges with no directed path either way."""
    edges = [r for r in rows if _kind(graph, r) == "edge" and r["reliable"]]
    arrows = [_directed(r) for r in edges]
    e = m["edges"]
    assert e["scored"] == len(edges)
    assert e["recovered"] == sum(graph.has_edge(*a) for a in arrows)
    assert e["reversed"] == sum(graph.has_edge(*a[::-1]) for a in arrows)
    assert e["undirected"] == sum(r["inferred"] == "undirected" for r in edges)
    assert e["missed"] == sum(r["inferred"] == "none" for r in edges)
    assert e["recovered"] + e["reversed"] + e["undirected"] + e["missed"] == e["scored"]
    others = [r for r in rows if _kind(graph, r) == "non-edge"]
    kept = sum(r["inferred"] == "none" for r in others if r["reliable"])
    n = m["non_edges"]
    assert (n["pairs"], n["scored"]) == (len(others), sum(r["reliable"] for r in others))
    assert (n["kept"], n["spurious"]) == (kept, n["scored"] - kept)


def _directed(row):
    """The direction CAGE inferred for a row as (from, to); (None, None) for "none"."""
    if row["inferred"] == "c->e":
        return row["cause"], row["effect"]
    if row["inferred"] == "e->c":
        return row["effect"], row["cause"]
    return None, None


@pytest.mark.slow
def test_cage_baselines_tiny(tmp_path):
    """Each baseline's rows and edge / non-edge counts recomputed from its saved adjacency
    matrix (A[i, j] = 1: i -> j) and the faces DAG; reliability is CAGE's, pair for pair."""
    result = _run("cage-baselines", tmp_path)
    m = result["measured"]
    dag = CausalDAG.shipped("faces")
    graph = dag.to_networkx()
    names = m["attributes"]
    assert sorted(names) == sorted(a for a in dag.label_nodes if dag.cardinality(a) == 2)
    cage_rows = m["cage"]["rows"]
    reliable = {(r["cause"], r["effect"]): r["reliable"] for r in cage_rows}
    _check_scores(m["cage"], cage_rows, graph)
    for method in ("lingam", "anm", "pc"):
        part = m[method]
        a = part["adjacency"]
        assert len(a) == len(names) and all(len(row) == len(names) for row in a)
        rows = part["rows"]
        assert len(rows) == len(names) * (len(names) - 1) // 2
        for r in rows:
            i, j = names.index(r["cause"]), names.index(r["effect"])
            forward, backward = bool(a[i][j]), bool(a[j][i])
            expected = {(1, 1): "undirected", (1, 0): "c->e", (0, 1): "e->c", (0, 0): "none"}
            assert r["inferred"] == expected[(forward, backward)]
            assert r["reliable"] == reliable[(r["cause"], r["effect"])]
        _check_scores(part, rows, graph)
        assert m["edges_recovered"][method] == part["edges"]["recovered"]
    lingam = m["lingam"]["adjacency"]
    assert not any(lingam[i][j] and lingam[j][i] for i in range(len(names)) for j in range(i))
    anm = m["anm"]
    assert anm["pairs_run"] == sum(reliable.values()) == len(anm["p_values"])
    for key, (forward, backward) in anm["p_values"].items():
        i, j = map(int, key.split(":"))
        assert 0 <= forward <= 1 and 0 <= backward <= 1
        assert anm["adjacency"][i][j] == int(forward >= LEVEL > backward)
        assert anm["adjacency"][j][i] == int(backward >= LEVEL > forward)
    recovered = m["edges_recovered"]
    assert recovered["cage"] == m["cage"]["edges"]["recovered"]
    holds = m["cage"]["edges"]["scored"] > 0 and all(
        recovered["cage"] >= recovered[b] for b in ("lingam", "anm", "pc")
    )
    assert result["holds"] == holds
