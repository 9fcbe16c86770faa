"""`causalscene demo --quick`: the whole story end to end at tiny sizes, and its report; the
read-off of generated images against the exact distributions."""

import json
import re

import numpy as np
import pytest

from causalscene import pretrained, queries
from causalscene.cli import main
from causalscene.dag import CausalDAG
from causalscene.demo import CONDITION, READOFF_NODES
from causalscene.demo_report import cage_headline, chosen_cage_grids
from causalscene.generate import load_causal
from causalscene.readoff import load_or_fit_probe, read_off_queries


def exact(node, query):
    """P(node | action = attack) or P(node | do(action = attack)), from the queries module."""
    dag = CausalDAG.shipped("rpg_fight")
    if query == "given":
        return queries.condition(dag, [node], CONDITION).probs
    return queries.intervene(dag, [node], CONDITION).probs


@pytest.mark.slow
def test_demo_quick_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    assert printed.rstrip().splitlines()[-1] == f"The report is at {out / 'index.html'}"
    html = (out / "index.html").read_text()
    for needle in ("Seeing vs doing", "What the images say", "Counterfactual", "CAGE", "Modules"):
        assert needle in html, needle
    assert "0.6229" in html and "0.3928" in html  # P(actor_attack = high | attack), under do
    report = json.loads((out / "report.json").read_text())
    images = [
        img
        for section in report["sections"]
        for key in ("figures", "images")
        for img in section.get(key, [])
    ]
    assert len(images) >= 14 and all((out / img["path"]).is_file() for img in images)
    queries_json = json.loads((out / "queries" / "queries.json").read_text())
    assert queries_json["intervention"]["probabilities"] == queries_json["prior"]["probabilities"]
    timings = json.loads((out / "timings.json").read_text())
    assert len(timings["steps_seconds"]) == 12
    check_readoff_json(out / "images" / "readoff.json")
    check_cage_section(out, report)
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)
    assert not re.search(r"\d\.\d{6,}", text), "a number with six or more decimals on the page"


def check_readoff_json(path):
    """The exact columns are the queries module's answers; the images were fed node values
    drawn from them (within sampling error)."""
    result = json.loads(path.read_text())
    assert result["assignment"] == CONDITION and set(result["given"]) == set(READOFF_NODES)
    n = result["num_images"]
    for query in ("given", "do"):
        for node in READOFF_NODES:
            entry = result[query][node]
            np.testing.assert_allclose(entry["exact"], exact(node, query), atol=1e-9)
            p = np.asarray(entry["exact"])
            assert np.all(
                np.abs(np.asarray(entry["fed"]) - p) <= 4 * np.sqrt(p * (1 - p) / n) + 1e-9
            )
            assert abs(sum(entry["read"]) - 1) < 1e-9
    assert result["probe"]["file"] == "probe_factorial.pt"  # the probe shipped with the model


def check_cage_section(out, report):
    """The headline counts are those of dag_comparison.json, recounted here; the grids shown are
    of reliably probed DAG edges before any other pair."""
    comparison = json.loads((out / "cage" / "dag_comparison.json").read_text())
    rows = comparison["rows"]
    edges = [r for r in rows if r["relation"] in ("c->e", "e->c")]
    scored = [r for r in rows if r["reliable"]]
    headline = cage_headline(comparison)
    agree = sum(1 for r in scored if r["agree"])
    assert f"on {agree} of {len(scored)} reliably probed pairs" in headline
    recovered = sum(1 for r in edges if r["reliable"] and r["inferred"] == r["relation"])
    assert f"Of the DAG's {len(edges)} edges, {recovered} recovered" in headline
    section = next(s for s in report["sections"] if s["title"].startswith("CAGE"))
    assert section["lead"] == headline
    shown = [img["path"] for img in section["images"]]
    chosen = chosen_cage_grids(comparison, 2)
    assert shown == [f"cage/counterfactuals_{c}_{e}.png" for c, e, _ in chosen]
    reliable_edges = {(r["cause"], r["effect"]) for r in edges if r["reliable"]}
    kinds = [(c, e) in reliable_edges for c, e, _ in chosen]
    assert kinds == sorted(kinds, reverse=True)  # edges first
    figures = [img["path"] for img in section["figures"]]
    assert figures == [
        "cage/dag_comparison.png",
        "cage/tau_vs_alpha.png",
        "cage/null_histograms.png",
    ]


def test_chosen_cage_grids_prefers_recovered_edges():
    def row(c, e, relation, inferred, reliable=True):
        return {
            "cause": c,
            "effect": e,
            "relation": relation,
            "inferred": inferred,
            "reliable": reliable,
            "tau": 0.1,
        }

    comparison = {
        "rows": [
            row("a", "b", "d-separated", "c->e"),
            row("a", "c", "c->e", "none"),
            row("b", "c", "e->c", "e->c"),
            row("c", "d", "c->e", "c->e", reliable=False),
            row("b", "d", "common cause", "none"),
        ]
    }
    assert [(c, e) for c, e, _ in chosen_cage_grids(comparison, 5)] == [
        ("b", "c"),
        ("a", "c"),
        ("a", "b"),
    ]
    assert "edges, 1 recovered in the DAG's direction, 0 reversed, 1 with no direction" in (
        cage_headline({"rows": [dict(r, agree=None, expected="") for r in comparison["rows"]]})
    )


@pytest.mark.slow
def test_readoff_matches_the_exact_distributions():
    """Images of the pretrained model, read by its shipped factorial probe: the read-off of
    actor_type and actor lies within sampling error (plus the probe's few percent of misreads)
    of the exact P(· | action = attack) and P(· | do(action = attack)); and it shows the
    contrast the exact numbers make: type3 actors rarer given an attack than under do."""
    model, _ = load_causal(pretrained.path("rpg"))
    probe, about = load_or_fit_probe(pretrained.path("rpg"), model, pretrained.path("rpg"))
    assert about["file"] == "probe_factorial.pt"
    n = 768
    result = read_off_queries(model, probe, READOFF_NODES, CONDITION, num_images=n, seed=3)
    for query in ("given", "do"):
        for node in READOFF_NODES:
            p = exact(node, query)
            read = np.asarray(result[query][node]["read"])
            tolerance = 4 * np.sqrt(p * (1 - p) / n) + 0.02
            assert np.all(np.abs(read - p) <= tolerance), (query, node, read, p)
    given, do = result["given"]["actor_type"]["read"][2], result["do"]["actor_type"]["read"][2]
    assert do - given > 0.03, (given, do)  # exact: 0.330 - 0.244 = 0.086
