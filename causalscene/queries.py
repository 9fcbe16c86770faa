"""Exact discrete queries on a :class:`~causalscene.dag.CausalDAG`, at the three rungs of Pearl's ladder.

- :func:`condition` — P(variables | evidence): variable elimination over numpy factors
  (:mod:`causalscene.elimination`: pruned model, deterministic min-fill order, compiled per DAG).
- :func:`intervene` — P(variables | do(...), evidence): the *mutilated* graph (incoming edges of the
  intervened nodes cut, their CPTs point masses), then variable elimination. Upstream beliefs do not
  move. (pgmpy's ``CausalInference.query`` is not used: it weights its adjustment set by the
  observational posterior, which is wrong when the evidence is downstream of the intervention.)
- :func:`counterfactual` — P(variables in the world where do(...) | factual world): abduction,
  action, prediction. CPTs alone do not fix counterfactuals; an exogenous-noise model does:

  * ``noise="monotone"`` (default): every node is ``X = F⁻¹(U | parents)`` with ``U ~ Uniform(0, 1)``
    shared between the factual and the counterfactual world, where ``F`` is the CDF over the
    node's states *in the order the DAG file lists them*. ``U`` is discretised exactly into the
    cells between all the node's CPT rows' cumulative sums, so the twin network stays discrete and
    is answered exactly by variable elimination.
  * ``noise="gumbel"``: the Gumbel-max SCM (Oberst & Sontag, ICML 2019): ``X = argmax_k log p_k(pa)
    + G_k`` with Gumbel noise shared between worlds; abduction samples the noise posterior
    (top-down truncated Gumbels), so the answer is a Monte Carlo estimate with a seed.

Every result is a :class:`QueryResult`; a counterfactual one states its noise assumption.
"""

from __future__ import annotations

import itertools
import weakref
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from causalscene import elimination as _elimination
from causalscene.dag import Assignment, CausalDAG, DAGError, Node
from causalscene.elimination import probability_of_evidence

__all__ = [
    "QueryResult",
    "condition",
    "intervene",
    "counterfactual",
    "probability_of_evidence",
    "twin_network",
    "NOISE_ASSUMPTIONS",
    "TWIN_CACHE_SIZE",
]

#: twin networks kept per DAG (least recently used dropped first); 0 builds one on every call
TWIN_CACHE_SIZE = 256
_TWINS: weakref.WeakKeyDictionary[CausalDAG, OrderedDict[frozenset, tuple[CausalDAG, dict]]] = (
    weakref.WeakKeyDictionary()
)

NOISE_ASSUMPTIONS = {
    "monotone": (
        "monotone inverse-CDF noise: each node X = F^-1(U | parents), U ~ Uniform(0,1) shared "
        "between the factual and counterfactual worlds, states ordered as in the DAG file"
    ),
    "gumbel": (
        "Gumbel-max noise: each node X = argmax_k log P(X=k | parents) + G_k, Gumbel noise G "
        "shared between worlds (Oberst & Sontag 2019); Monte Carlo estimate"
    ),
}


@dataclass(frozen=True)
class QueryResult:
    """A labelled probability table over ``variables`` (one array axis per variable, in order)."""

    kind: str
    variables: tuple[str, ...]
    states: dict[str, tuple[str, ...]]
    probs: np.ndarray
    evidence: dict[str, str] = field(default_factory=dict)
    do: dict[str, str] = field(default_factory=dict)
    factual: dict[str, str] = field(default_factory=dict)
    assumption: str | None = None
    num_samples: int | None = None

    def prob(self, **assignment: str) -> float:
        """Probability of a full assignment of the result's variables, by state name."""
        index = tuple(self.states[v].index(assignment[v]) for v in self.variables)
        return float(self.probs[index])

    def marginal(self, variable: str) -> np.ndarray:
        axis = self.variables.index(variable)
        others = tuple(i for i in range(len(self.variables)) if i != axis)
        return self.probs.sum(axis=others)

    def to_frame(self):
        """A pandas DataFrame: one column per variable, then ``probability``."""
        import pandas as pd

        rows = [
            (*combo, float(p))
            for combo, p in zip(
                itertools.product(*(self.states[v] for v in self.variables)), self.probs.ravel()
            )
        ]
        return pd.DataFrame(rows, columns=[*self.variables, "probability"])

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``probabilities`` flattened row-major over ``variables``)."""
        out: dict[str, Any] = {
            "kind": self.kind,
            "variables": list(self.variables),
            "states": {v: list(self.states[v]) for v in self.variables},
            "probabilities": [float(p) for p in self.probs.ravel()],
            "evidence": dict(self.evidence),
            "do": dict(self.do),
        }
        if self.kind == "counterfactual":
            out["factual"] = dict(self.factual)
            out["assumption"] = self.assumption
            if self.num_samples is not None:
                out["num_samples"] = self.num_samples
        return out


# ------------------------------------------------------------------ validation
def _check_variables(dag: CausalDAG, variables: Sequence[str] | str) -> tuple[str, ...]:
    if isinstance(variables, str):
        variables = [variables]
    variables = tuple(variables)
    if not variables:
        raise DAGError("a query needs at least one variable", source=dag.source)
    for v in variables:
        dag.check_node(v)
    duplicates = sorted({v for v in variables if variables.count(v) > 1})
    if duplicates:
        raise DAGError(f"variable '{duplicates[0]}' is listed twice", source=dag.source)
    dag.check_table_size(variables)
    return variables


def _names(dag: CausalDAG, codes: Mapping[str, int]) -> dict[str, str]:
    return {k: dag.states(k)[i] for k, i in codes.items()}


# ----------------------------------------------------------------- inference
def _solve(
    dag: CausalDAG,
    variables: tuple[str, ...],
    codes: Mapping[str, int],
    fixed: Mapping[str, int],
    what: str,
    max_entries: int | None,
) -> np.ndarray:
    """P(variables | do(fixed), codes), normalised; a clear error when the evidence has
    probability 0 (including evidence that contradicts the intervention)."""
    if not any(k in fixed and codes[k] != fixed[k] for k in codes):
        table = _elimination.solve(dag, variables, codes, fixed, max_entries)
        total = float(table.sum())
        if total > 0.0:
            return np.asarray(table / total)
    raise DAGError(f"{what} {_names(dag, codes)} has probability 0", source=dag.source)


def condition(
    dag: CausalDAG,
    variables: Sequence[str] | str,
    evidence: Assignment | None = None,
    max_entries: int | None = None,
) -> QueryResult:
    """P(variables | evidence), exactly (rung 1: association).

    ``max_entries`` bounds the largest intermediate factor (default
    :data:`causalscene.elimination.MAX_FACTOR_ENTRIES`); a query above it raises a ``ValueError``
    before allocating.
    """
    variables = _check_variables(dag, variables)
    codes = dag.check_assignment(evidence, "evidence")
    overlap = [v for v in variables if v in codes]
    if overlap:
        raise DAGError(f"variable '{overlap[0]}' is also in the evidence", source=dag.source)
    probs = _solve(dag, variables, codes, {}, "evidence", max_entries)
    return QueryResult(
        "condition",
        variables,
        {v: dag.states(v) for v in variables},
        probs,
        evidence=_names(dag, codes),
    )


def intervene(
    dag: CausalDAG,
    variables: Sequence[str] | str,
    do: Assignment,
    evidence: Assignment | None = None,
    max_entries: int | None = None,
) -> QueryResult:
    """P(variables | do(do), evidence) on the mutilated graph, exactly (rung 2: intervention).

    The mutilated graph is never built: the intervened nodes' CPTs drop out and their children
    read the fixed states (the caller's DAG is not touched). ``max_entries`` as in
    :func:`condition`.
    """
    variables = _check_variables(dag, variables)
    fixed = dag.check_assignment(do, "do")
    if not fixed:
        raise DAGError("an intervention needs at least one do=... assignment", source=dag.source)
    codes = dag.check_assignment(evidence, "evidence")
    overlap = [v for v in variables if v in codes]
    if overlap:
        raise DAGError(f"variable '{overlap[0]}' is also in the evidence", source=dag.source)
    what = "evidence under the intervention"
    probs = _solve(dag, variables, codes, fixed, what, max_entries)
    return QueryResult(
        "intervention",
        variables,
        {v: dag.states(v) for v in variables},
        probs,
        evidence=_names(dag, codes),
        do=_names(dag, fixed),
    )


# ----------------------------------------------------------- counterfactuals
def noise_cells(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact discretisation of U for the monotone noise model of one node.

    Args:
        table: CPT ``[*parent cards, K]``.

    Returns:
        ``(weights [C], response [C, *parent cards])``: the probability of each U-cell and the state
        ``F⁻¹(U | parents)`` the node takes for every U in that cell and every parent assignment.
    """
    card = table.shape[-1]
    cumulative = np.cumsum(table.reshape(-1, card), axis=-1)[:, :-1]
    edges = np.unique(np.concatenate([[0.0, 1.0], np.clip(cumulative.ravel(), 0.0, 1.0)]))
    weights = np.diff(edges)
    left = edges[:-1][weights > 0]
    weights = weights[weights > 0]
    # state = number of cumulative sums <= U (for U anywhere inside the cell, as cells are
    # bounded by those sums); the comparison is made at the left edge.
    response = (cumulative[None, :, :] <= left[:, None, None]).sum(-1)
    return weights, response.reshape(len(left), *table.shape[:-1])


def twin_network(dag: CausalDAG, do: Assignment) -> tuple[CausalDAG, dict[str, str]]:
    """The twin network of ``dag`` under the monotone noise model.

    Nodes: every node's noise ``U_X`` (a root over the cells of :func:`noise_cells`), the factual
    ``X`` (deterministic given ``U_X`` and its parents), and a counterfactual copy ``X*`` for every
    node downstream of an intervened node (intervened nodes are fixed in the copy). Nodes that the
    intervention cannot reach are shared between the worlds.

    The twin of one ``(dag, do)`` is built once and kept (:data:`TWIN_CACHE_SIZE` per DAG, while
    the DAG lives): the same object answers again, so the elimination compiled for it
    (:func:`causalscene.elimination.compile_dag`, its plans) is reused too. DAGs are not mutated
    (``with_cpts`` and friends return copies), so a kept twin never goes stale.

    Returns:
        the twin DAG and a map ``{node: name of its counterfactual copy}`` (itself where shared).
    """
    fixed = dag.check_assignment(do, "do")
    if TWIN_CACHE_SIZE <= 0:
        return _build_twin(dag, fixed)
    kept = _TWINS.setdefault(dag, OrderedDict())
    key = frozenset(fixed.items())
    if key in kept:
        kept.move_to_end(key)
    else:
        kept[key] = _build_twin(dag, fixed)
        while len(kept) > TWIN_CACHE_SIZE:
            kept.popitem(last=False)
    twin, cf_name = kept[key]
    return twin, dict(cf_name)


def _build_twin(dag: CausalDAG, fixed: Mapping[str, int]) -> tuple[CausalDAG, dict[str, str]]:
    """The twin network of :func:`twin_network` for validated ``fixed`` ({node: state index})."""
    affected = set(fixed)
    for intervened in fixed:
        affected |= dag.descendants(intervened)
    taken = set(dag.nodes)

    def fresh(base: str) -> str:
        name = base
        while name in taken:
            name += "_"
        taken.add(name)
        return name

    cf_name = {n: (fresh(f"{n}*") if n in affected else n) for n in dag.nodes}
    nodes: list[Node] = []
    cpts: dict[str, np.ndarray] = {}
    for name in dag.nodes:
        node = dag.node(name)
        weights, response = noise_cells(dag.cpt(name))
        u_name = fresh(f"U[{name}]")
        nodes.append(Node(u_name, tuple(f"u{i}" for i in range(len(weights)))))
        cpts[u_name] = weights
        deterministic = np.moveaxis(np.eye(node.cardinality)[response], 0, -2)
        # deterministic: [*parent cards, cells, K] -> parents order (parents..., U)
        for world, parent_names in (
            ("factual", node.parents),
            ("cf", tuple(cf_name[p] for p in node.parents)),
        ):
            if world == "cf" and name not in affected:
                continue
            target = name if world == "factual" else cf_name[name]
            if world == "cf" and name in fixed:
                point = np.zeros(node.cardinality)
                point[fixed[name]] = 1.0
                nodes.append(Node(target, node.states))
                cpts[target] = point
                continue
            nodes.append(Node(target, node.states, (*parent_names, u_name)))
            cpts[target] = deterministic
    return CausalDAG(f"{dag.name}-twin", nodes, cpts, source=dag.source), cf_name


def counterfactual(
    dag: CausalDAG,
    variables: Sequence[str] | str,
    factual: Assignment,
    do: Assignment,
    noise: str = "monotone",
    num_samples: int = 20_000,
    seed: int | None = 0,
    max_entries: int | None = None,
) -> QueryResult:
    """P(variables_{do} | factual): the variables read in the world where ``do`` holds (rung 3).

    Pearl's three steps: *abduction* (the exogenous noise's posterior given the factual world),
    *action* (replace the intervened mechanisms by constants), *prediction* (propagate the same
    noise through the modified model).

    Args:
        factual: what was observed in the factual world (the evidence).
        do: the intervention applied in the counterfactual world.
        noise: ``"monotone"`` (exact, twin network) or ``"gumbel"`` (sampled with ``seed``).
        max_entries: the bound on the largest intermediate factor, as in :func:`condition`.
    """
    variables = _check_variables(dag, variables)
    observed = dag.check_assignment(factual, "factual")
    fixed = dag.check_assignment(do, "do")
    if not fixed:
        raise DAGError("a counterfactual needs at least one do=... assignment", source=dag.source)
    if noise not in NOISE_ASSUMPTIONS:
        raise DAGError(f"unknown noise model '{noise}' (known: {', '.join(NOISE_ASSUMPTIONS)})")
    if noise == "gumbel":
        dag.check_sample_count(num_samples)
    if observed and not probability_of_evidence(dag, observed, max_entries) > 0.0:
        raise DAGError(
            f"factual evidence {_names(dag, observed)} has probability 0", source=dag.source
        )
    states = {v: dag.states(v) for v in variables}
    if noise == "monotone":
        twin, cf_name = twin_network(dag, fixed)  # abduction + action live in the twin network
        targets = tuple(cf_name[v] for v in variables)
        probs = _twin_query(twin, targets, observed, max_entries)  # prediction
        samples = None
    else:
        probs = _gumbel_counterfactual(dag, variables, observed, fixed, num_samples, seed)
        samples = num_samples
    return QueryResult(
        "counterfactual",
        variables,
        states,
        probs,
        do=_names(dag, fixed),
        factual=_names(dag, observed),
        assumption=NOISE_ASSUMPTIONS[noise],
        num_samples=samples,
    )


def _twin_query(
    twin: CausalDAG,
    targets: tuple[str, ...],
    observed: Mapping[str, int],
    max_entries: int | None = None,
) -> np.ndarray:
    """P(targets | observed) on the twin network; a target that is also observed is a point mass."""
    free = tuple(t for t in targets if t not in observed)
    table = _elimination.eliminate(twin, free, observed, max_entries) if free else np.ones(())
    # re-insert observed targets (shared, unaffected nodes) as point masses
    for axis, t in enumerate(targets):
        if t in observed:
            point = np.zeros(twin.cardinality(t))
            point[observed[t]] = 1.0
            table = np.expand_dims(table, axis) * point.reshape(
                [-1 if i == axis else 1 for i in range(table.ndim + 1)]
            )
    return table


def _gumbel_posterior(
    logits: np.ndarray, observed: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Sample Gumbel noise G [n, K] given that argmax_k(logits + G) = observed (top-down trick)."""
    n, k = logits.shape
    finite = np.isfinite(logits)
    safe = np.where(finite, logits, -np.inf)
    top_location = np.logaddexp.reduce(safe, axis=1)
    top = top_location + rng.gumbel(size=n)  # max of the perturbed logits
    perturbed = safe + rng.gumbel(size=(n, k))
    # truncate the others below the max: -log(exp(-top) + exp(-g))
    truncated = -np.logaddexp(-top[:, None], -perturbed)
    truncated[np.arange(n), observed] = top
    noise = truncated - np.where(finite, logits, 0.0)
    # states with probability 0 keep prior noise (their constraint is vacuous)
    return np.where(finite, noise, rng.gumbel(size=(n, k)))


def _gumbel_counterfactual(
    dag: CausalDAG,
    variables: tuple[str, ...],
    observed: Mapping[str, int],
    fixed: Mapping[str, int],
    num_samples: int,
    seed: int | None,
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    factual = dag.sample(num_samples, evidence=observed, seed=rng)  # abduction, part 1: V | e
    with np.errstate(divide="ignore"):
        world: dict[str, np.ndarray] = {}
        for name in dag.nodes:
            logits_f = np.log(dag.cpt_rows(name, factual, num_samples))
            noise = _gumbel_posterior(logits_f, factual[name], rng)  # abduction, part 2: U | V
            if name in fixed:  # action
                world[name] = np.full(num_samples, fixed[name])
                continue
            logits_cf = np.log(dag.cpt_rows(name, world, num_samples))
            world[name] = np.argmax(logits_cf + noise, axis=1)  # prediction
    shape = tuple(dag.cardinality(v) for v in variables)
    flat = np.ravel_multi_index(tuple(world[v] for v in variables), shape)
    return np.bincount(flat, minlength=int(np.prod(shape))).reshape(shape) / num_samples
