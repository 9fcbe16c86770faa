"""The demo's page: its sections (``report.json``) built from what the steps wrote into ``OUT``.

Each ``*_section`` returns one ``{"title", "lead"?, "text"?, "tables"?, "images"?}`` entry of
:mod:`causalscene.report`'s format; numbers are rounded for reading (the JSON files beside keep
them whole).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from causalscene.demo import DemoConfig
    from causalscene.queries import QueryResult

__all__ = ["sections", "cage_headline", "chosen_cage_grids"]


def sections(
    config: DemoConfig, exact: Mapping[str, QueryResult], timings: Mapping[str, float]
) -> list[dict[str, Any]]:
    """Every section of the demo's page, in reading order."""
    out = Path(config.out)
    return [
        _dag_section(out),
        _rungs_section(out, exact),
        _readoff_section(out),
        _counterfactual_section(out, exact["counterfactual"]),
        _training_section(out, config),
        _cage_section(out, config),
        _modules_section(out),
        _data_section(out),
        _timings_section(timings),
    ]


def _images(
    out: Path, *pairs: tuple[Path, str], scale: float | None = None
) -> list[dict[str, Any]]:
    """Report entries for the images that exist, with paths relative to ``out``."""
    extra = {"scale": scale} if scale else {}
    return [
        {"path": str(p.relative_to(out)), "caption": c, **extra} for p, c in pairs if p.is_file()
    ]


def _pretrained_note() -> str:
    from causalscene import pretrained

    ev = json.loads((pretrained.path("rpg") / "eval.json").read_text())
    return (
        f"The images come from the pretrained fight-scene CausalVAE shipped with the package "
        f"(64 px, trained by causalscene train at the GPU budget: {ev.get('train_epochs')} epochs "
        f"on 50,000 scenes, one H200; intervention fidelity read by the factorial probe "
        f"{ev['min_fidelity']:.2f} or more on every node). Node values are drawn from the exact "
        f"posterior of each query, z from the prior."
    )


def _dag_section(out: Path) -> dict[str, Any]:
    return {
        "title": "The scene's causal DAG",
        "text": "rpg_fight.yaml: blue nodes are rendered (they condition the decoder), grey ones hidden (strength, defense, attack skill: never in the labels, summed out exactly).",
        "images": _images(out, (out / "dags" / "rpg_fight.png", "rpg_fight DAG"), scale=0.8),
    }


def _rungs_section(out: Path, exact: Mapping[str, QueryResult]) -> dict[str, Any]:
    prior, given, do = (exact[k] for k in ("prior", "condition", "intervention"))
    rows = [
        [state, round(float(a), 4), round(float(b), 4), round(float(c), 4)]
        for state, a, b, c in zip(prior.states["actor_attack"], prior.probs, given.probs, do.probs)
    ]
    return {
        "title": "Seeing vs doing: the actor's attack skill",
        "text": "Observing an attack makes a high attack skill more likely; forcing the attack (do) cuts the arrows into action, so the belief stays at its prior. Exact answers (variable elimination), then 16 images drawn for each query, from the same 16 latents z: the two grids differ by the node values alone. "
        + _pretrained_note(),
        "tables": [
            {
                "title": "P(actor_attack), exact",
                "columns": [
                    "actor_attack",
                    "prior",
                    "given action = attack",
                    "under do(action = attack)",
                ],
                "rows": rows,
            }
        ],
        "images": _images(
            out,
            (out / "images" / "condition_attack.png", "scenes given action = attack"),
            (out / "images" / "do_attack.png", "scenes under do(action = attack)"),
            scale=2,
        ),
    }


def _readoff_section(out: Path) -> dict[str, Any]:
    path = out / "images" / "readoff.json"
    if not path.is_file():
        return {"title": "What the images say", "text": "(not run)"}
    result = json.loads(path.read_text())
    accuracy = result.get("probe", {}).get("accuracy_fresh_factorial", {})
    nodes = list(result["given"])
    acc = ", ".join(f"{n} {accuracy[n]:.3f}" for n in nodes if n in accuracy)
    n = result["num_images"]
    return {
        "title": "What the images say",
        "text": f"The attack skill is hidden: no image shows it. Its parents actor and actor_type are rendered and upstream of action (actor, actor_type → actor_attack, strength, defense → action), so evidence on action moves them and do(action) does not; the images can show which. For {n} images generated given action = attack and {n} under do(action = attack), an image probe ψ reads actor_type and actor off the pixels. Given an attack, the exact answer makes type2 actors more frequent and type3 ones rarer (type3 has the weakest attack) and barely moves the actor (0.518 vs 0.5); under do both keep the prior. Each query shows three numbers per state: exact, the share of images whose decoder was fed that state (drawn from the exact answer: they differ by sampling alone), and the share ψ reads off the pixels (it differs from the fed share by the generator's and ψ's errors). {_readoff_gaps(result)} ψ learned from a factorial design (every rendered node drawn uniformly and independently), so it cannot read actor_type off the action through the DAG's correlation; its accuracy on fresh factorial scenes: {acc}. Numbers: images/readoff.json.",
        "tables": [_readoff_table(result)],
        "images": _images(
            out,
            (
                out / "images" / "readoff.png",
                "light bars: exact; hatched: read off generated images by the probe (± 1 SE)",
            ),
        ),
    }


def _readoff_table(result: Mapping[str, Any]) -> dict[str, Any]:
    rows = []
    for node in result["given"]:
        for i, state in enumerate(result["given"][node]["states"]):
            row: list[Any] = [node, state]
            for query in ("given", "do"):
                entry = result[query][node]
                row += [
                    round(entry["exact"][i], 3),
                    round(entry["fed"][i], 3),
                    _share(entry["read"][i], entry["read_se"][i]),
                ]
            rows.append(row)
    columns = ["node", "state"]
    for query in ("| attack", "| do(attack)"):
        columns += [f"exact {query}", f"fed {query}", f"read {query}"]
    return {
        "title": "exact, fed to the decoder, read off the images (± 1 SE)",
        "columns": columns,
        "rows": rows,
    }


def _readoff_gaps(result: Mapping[str, Any]) -> str:
    """The largest gaps, read vs exact and read vs fed, over every state of both queries."""
    exact_gap, fed_gap = (0.0, ""), (0.0, "")
    for query in ("given", "do"):
        for node, entry in result[query].items():
            for i, state in enumerate(entry["states"]):
                where = f"{node} = {state}, {'given' if query == 'given' else 'under do'}"
                exact_gap = max(exact_gap, (abs(entry["read"][i] - entry["exact"][i]), where))
                fed_gap = max(fed_gap, (abs(entry["read"][i] - entry["fed"][i]), where))
    return (
        f"Largest gap, read vs exact: {exact_gap[0]:.3f} ({exact_gap[1]}); read vs fed: "
        f"{fed_gap[0]:.3f} ({fed_gap[1]})."
    )


def _share(value: float, se: float) -> str:
    return f"{value:.3f} ± {se:.3f}"


def _counterfactual_section(out: Path, cf: QueryResult) -> dict[str, Any]:
    return {
        "title": "Counterfactual: had the reactor been a golem",
        "text": f"Exact answer for the factual world {cf.factual}: {cf.assumption}. The images (pretrained model): factual | reconstruction | counterfactual for four scenes with a satyr reactor, same latent z (abduction, action, prediction).",
        "tables": [_query_table(cf, "P(reaction had the reactor been a golem | factual), exact")],
        "images": _images(
            out,
            (
                out / "images" / "counterfactual_golem.png",
                "factual | reconstruction | counterfactual (do(reactor = golem))",
            ),
            scale=2.5,
        ),
    }


def _query_table(result: QueryResult, title: str) -> dict[str, Any]:
    frame = result.to_frame()
    return {
        "title": title,
        "columns": list(frame.columns),
        "rows": [[*r[:-1], round(float(r[-1]), 4)] for r in frame.itertuples(index=False)],
    }


def _training_section(out: Path, config: DemoConfig) -> dict[str, Any]:
    from causalscene.plots import plot_training_curve

    run = out / "runs" / "faces"
    metrics = run / "metrics.jsonl"
    history = [json.loads(s) for s in metrics.read_text().splitlines() if s.strip()]
    curve = plot_training_curve(history, run / "training_curve.png", "plain VAE on faces, CPU")
    last = history[-1]
    seconds = sum(r["seconds"] for r in history)
    samples = sorted(run.glob("samples_e*.png"))[-1:]
    recon = sorted(run.glob("recon_e*.png"))[-1:]
    return {
        "title": "Live training: SVI on this machine",
        "text": f"The demo trains one small model itself: a plain VAE (no DAG, latent dimension {config.latent_dim}) on {config.faces_images} procedural faces at {config.faces_size} px, {len(history)} epochs of SVI on {last.get('device', config.device)} in {seconds:.0f} s. Final train ELBO {last['train_elbo']:.0f}, held-out ELBO {last['heldout_elbo']:.0f}. At this budget its samples are blurry; it is the black box CAGE probes below. The sharp images above come from the pretrained models.",
        "images": _images(
            out,
            (curve, "ELBO per epoch"),
            *[(p, f"live VAE: samples after epoch {len(history)}") for p in samples],
            *[(p, "live VAE: reconstructions (left: data)") for p in recon],
        ),
    }


def cage_headline(comparison: Mapping[str, Any]) -> str:
    """One sentence: agreement with the DAG over reliably probed pairs, and the DAG's edges
    recovered, reversed, found without direction or unreliable (``dag_comparison.json``)."""
    from causalscene.cage import direction_scores

    rows = comparison["rows"]
    s = direction_scores(rows)["edges"]
    scored = [r for r in rows if r["reliable"]]
    agree = sum(bool(r["agree"]) for r in scored)
    share = f" ({agree / len(scored):.0%})" if scored else ""
    return (
        f"CAGE agrees with the faces DAG on {agree} of {len(scored)} reliably probed pairs{share}"
        f" ({len(rows) - len(scored)} of {len(rows)} pairs unreliable: a probe near chance). "
        f"Of the DAG's {s['pairs']} edges, {s['recovered']} recovered in the DAG's "
        f"direction, {s['reversed']} reversed, {s['missed']} with no direction found, "
        f"{s['unreliable']} unreliable."
    )


_RELATION = {
    "c->e": "edge c→e",
    "e->c": "edge e→c",
    "c~>e": "path c⇝e",
    "e~>c": "path e⇝c",
}


def chosen_cage_grids(comparison: Mapping[str, Any], count: int) -> list[tuple[str, str, str]]:
    """``(cause, effect, why)`` of up to ``count`` pairs whose counterfactual grids are shown:
    reliably probed DAG edges first (recovered before the others), then other reliable pairs
    with a direction found."""
    rows = [r for r in comparison["rows"] if r["reliable"]]
    edges = [r for r in rows if r["relation"] in ("c->e", "e->c")]
    edges.sort(key=lambda r: r["inferred"] != r["relation"])
    others = [r for r in rows if r not in edges and r["inferred"] != "none"]
    return [
        (
            r["cause"],
            r["effect"],
            f"DAG: {_RELATION.get(r['relation'], r['relation'])}; CAGE: "
            f"{r['inferred'].replace('->', '→')}, τ = {r['tau']:+.3f}",
        )
        for r in (edges + others)[:count]
    ]


def _cage_table(comparison: Mapping[str, Any]) -> dict[str, Any]:
    """Pairs with a DAG edge first, then the rest; τ, GATEs and p-values rounded."""
    order = {"c->e": 0, "e->c": 0, "c~>e": 1, "e~>c": 1}
    rows = sorted(comparison["rows"], key=lambda r: order.get(r["relation"], 2))
    table = []
    for r in rows:
        agree = "unreliable" if not r["reliable"] else ("yes" if r["agree"] else "no")
        table.append(
            [
                f"{r['cause']} → {r['effect']}",
                _RELATION.get(r["relation"], r["relation"]),
                r["inferred"].replace("->", "→"),
                agree,
                _signed(r["tau"]),
                _signed(r["gate_ce"]),
                _signed(r["gate_ec"]),
                f"{r['p_ce']:.2f}",
                f"{r['p_ec']:.2f}",
            ]
        )
    columns = ["pair c → e", "DAG", "CAGE", "agree", "τ", "GATE c→e", "GATE e→c", "p c→e", "p e→c"]
    return {"title": "every pair (DAG edges first)", "columns": columns, "rows": table}


def _signed(value: float) -> str:
    """``+0.123``; a value that rounds to zero prints as ``0.000`` (no ``-0.000``)."""
    return f"{value:+.3f}" if round(value, 3) != 0 else "0.000"


def _cage_section(out: Path, config: DemoConfig) -> dict[str, Any]:
    folder = out / "cage"
    path = folder / "dag_comparison.json"
    if not path.is_file():
        return {"title": "CAGE", "text": "(not run)"}
    comparison = json.loads(path.read_text())
    grids = [
        (
            folder / f"counterfactuals_{c}_{e}.png",
            f"{c} vs {e} ({why}); a row per prior latent: the source, moved across {c}'s boundary (do({c}=0), do({c}=1)), then across {e}'s",
        )
        for c, e, why in chosen_cage_grids(comparison, config.cage_grids)
    ]
    return {
        "title": "CAGE: which directions the live faces VAE encodes",
        "lead": cage_headline(comparison),
        "text": "The plain VAE trained above never saw a DAG. CAGE (Bose et al. 2022) moves latents across each attribute's probe boundary and measures the other attribute's change: τ = |GATE(c→e)| − |GATE(e→c)|, τ > 0 supports c → e when GATE(c→e) beats its permutation null (p < 0.05). It runs on the live VAE, not on the pretrained CausalVAE, whose decoder takes the DAG's nodes as separate inputs: there CAGE would measure those inputs, not directions the model learned on its own. In the DAG figure solid arrows are the faces DAG, dashed ones CAGE's; green agrees, red disagrees, grey is unreliable.",
        "figures": _images(
            out,
            (folder / "dag_comparison.png", "faces DAG (solid) vs CAGE (dashed)"),
            (folder / "tau_vs_alpha.png", "τ and both GATEs against the step size α (DAG edges)"),
            (folder / "null_histograms.png", "permutation nulls of GATE (grey), observed in red"),
        ),
        "tables": [_cage_table(comparison)],
        "images": _images(out, *grids),
    }


def _modules_section(out: Path) -> dict[str, Any]:
    folder = out / "modules"
    return {
        "title": "Modules of the pretrained faces decoder",
        "text": "Counterfactual hybridization (Besserve et al. 2020) on the pretrained faces CausalVAE: each channel's influence map (how much the image changes when that channel takes its activation from a second sample), clustered into modules by NMF; a hybrid takes one module's activations from Original 2 and the rest from Original 1. Every channel's map: modules/influence_mosaic.png.",
        "images": _images(
            out,
            (folder / "hybrids.png", "hybrids per module"),
            (folder / "templates.png", "module templates (NMF): where each module acts"),
        ),
    }


def _data_section(out: Path) -> dict[str, Any]:
    return {
        "title": "Data",
        "text": "Procedural images, labels sampled from each scene's DAG: the fight scenes are the counterfactual's factual images; the faces train the live VAE and label CAGE's probes.",
        "images": _images(
            out,
            (out / "data" / "rpg" / "preview.png", "procedural fight scenes"),
            (out / "data" / "faces" / "preview.png", "procedural faces"),
            scale=0.45,
        ),
    }


def _timings_section(timings: Mapping[str, float]) -> dict[str, Any]:
    total = sum(timings.values())
    return {
        "title": "Timings",
        "tables": [
            {
                "title": f"seconds per step ({total:.0f} s before the report)",
                "columns": ["step", "seconds"],
                "rows": [[k, v] for k, v in timings.items()],
            }
        ],
    }
