"""The causal scene tutorial's contrast between seeing and doing (Pearl 2009, sec. 3.2)."""

from __future__ import annotations

from causalscene.reproductions._base import Context, Measured, Reproduction

TUTORIAL_FACTUAL = {"actor": "satyr", "reactor": "satyr", "action": "attack", "reaction": "dying"}


def queries_tutorial(context: Context) -> Measured:
    """Exact queries: the same numbers at every scale (nothing is trained)."""
    from causalscene import queries
    from causalscene.dag import CausalDAG

    dag = CausalDAG.shipped("rpg_fight")
    prior = queries.condition(dag, ["actor_attack"])
    seen = queries.condition(dag, ["actor_attack"], {"action": "attack"})
    forced = queries.intervene(dag, ["actor_attack"], {"action": "attack"})
    cf = queries.counterfactual(dag, ["reaction"], TUTORIAL_FACTUAL, {"reactor": "golem"})
    high = dag.state_index("actor_attack", "high")
    measured: dict[str, object] = {
        "p_attack_high_prior": float(prior.probs[high]),
        "p_attack_high_given_action_attack": float(seen.probs[high]),
        "p_attack_high_do_action_attack": float(forced.probs[high]),
        "counterfactual_reaction_had_reactor_been_golem": dict(
            zip(dag.states("reaction"), map(float, cf.probs))
        ),
        "counterfactual_factual": TUTORIAL_FACTUAL,
        "counterfactual_assumption": cf.assumption,
    }
    p_prior = float(prior.probs[high])
    moved = abs(float(seen.probs[high]) - p_prior)
    still = abs(float(forced.probs[high]) - p_prior)
    measured["shift_under_conditioning"] = moved
    measured["shift_under_intervention"] = still
    return measured, bool(moved > 0.05 and still < 1e-9)


REPRODUCTIONS = [
    Reproduction(
        "queries-tutorial",
        claim=(
            "Observing action=attack changes our belief in the actor's attack skill, but forcing "
            "do(action=attack) leaves it at its prior: upstream beliefs do not move under "
            "intervention."
        ),
        source=(
            "Causal scene generation tutorial (rpg fight DAG), condition vs do; Pearl 2009, sec. 3.2"
        ),
        fn=queries_tutorial,
    )
]
