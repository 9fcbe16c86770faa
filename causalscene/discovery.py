"""Causal discovery baselines from peer libraries, on a table of variables (e.g. probe outputs).

Bose, Monti & Grover (TMLR 2022) set CAGE beside causal discovery run on the attributes as read
by probes in latent space. Here the baselines are the peer libraries' own implementations:

* :func:`lingam_adjacency` — DirectLiNGAM (Shimizu et al., JMLR 2011) from ``lingam``;
* :func:`anm_adjacency` — the additive noise model (Hoyer et al., NeurIPS 2008), pair by pair,
  from ``causal-learn`` (GP regression both ways, KCI independence of input and residual);
* :func:`pc_adjacency` — PC (Spirtes et al. 2000) with Fisher-z tests, from ``causal-learn``.

Each returns an adjacency matrix ``A [M, M]`` of 0/1 with ``A[i, j] = 1`` for an arrow
i → j; ``A[i, j] = A[j, i] = 1`` is an adjacency without a direction (PC's undirected or
bidirected edges). :func:`pair_rows` reads it pair by pair in the form
:func:`causalscene.cage.direction_scores` scores against a DAG. The libraries are imported
inside the functions (importing them takes seconds).
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["lingam_adjacency", "anm_adjacency", "pc_adjacency", "inferred_direction", "pair_rows"]


def _check_table(x: Any) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] < 2 or x.shape[0] < 3:
        raise ValueError(f"the data must be [N >= 3, M >= 2], got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("the data has non-finite values")
    return x


def lingam_adjacency(x: Any, seed: int = 0) -> np.ndarray:
    """DirectLiNGAM's DAG on ``x: [N, M]``: its causal order and adaptive-lasso-pruned
    coefficients ``B`` (``B[i, j] ≠ 0``: j → i in lingam's convention), as ``A = 1[Bᵀ ≠ 0]``."""
    from lingam import DirectLiNGAM

    model = DirectLiNGAM(random_state=int(seed)).fit(_check_table(x))
    return (np.asarray(model.adjacency_matrix_).T != 0).astype(np.int64)


def anm_adjacency(
    x: Any,
    level: float = 0.05,
    max_samples: int = 500,
    seed: int = 0,
    pairs: Sequence[tuple[int, int]] | None = None,
) -> tuple[np.ndarray, dict[str, list[float]]]:
    """The additive noise model on every pair of columns of ``x: [N, M]`` (or only ``pairs``,
    i < j: each pair fits two GPs, about a second each) on the first ``max_samples`` rows of a
    seeded shuffle: i → j when the residual of the GP regression j ~ f(i) is independent of i
    (KCI p ≥ ``level``) and the reverse one is not (p < ``level``); no arrow otherwise. Also
    returns the p-values ``{"i:j": [p_forward, p_backward]}`` of the pairs run."""
    from causallearn.search.FCMBased.ANM.ANM import ANM
    from sklearn.exceptions import ConvergenceWarning

    x = _check_table(x)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rows = np.random.default_rng(seed).permutation(len(x))[:max_samples]
    x = x[rows]
    adjacency = np.zeros((x.shape[1], x.shape[1]), dtype=np.int64)
    p_values: dict[str, list[float]] = {}
    for i, j in itertools.combinations(range(x.shape[1]), 2) if pairs is None else pairs:
        with warnings.catch_warnings():  # the GP's kernel bounds, hit on near-constant columns
            warnings.simplefilter("ignore", ConvergenceWarning)
            forward, backward = ANM().cause_or_effect(x[:, [i]], x[:, [j]])
        p_values[f"{i}:{j}"] = [float(forward), float(backward)]
        if forward >= level > backward:
            adjacency[i, j] = 1
        elif backward >= level > forward:
            adjacency[j, i] = 1
    return adjacency, p_values


def pc_adjacency(x: Any, level: float = 0.05) -> np.ndarray:
    """PC with Fisher-z tests at ``level`` on ``x: [N, M]`` (causal-learn's ``pc``, stable,
    default orientation rules). causal-learn's graph codes ``G[j, i] = 1, G[i, j] = -1`` for
    i → j; any other non-zero pair (undirected −1/−1, bidirected 1/1) becomes an adjacency
    without a direction."""
    from causallearn.search.ConstraintBased.PC import pc

    x = _check_table(x)
    graph = np.asarray(pc(x, alpha=level, indep_test="fisherz", show_progress=False).G.graph)
    m = x.shape[1]
    adjacency = np.zeros((m, m), dtype=np.int64)
    for i, j in itertools.combinations(range(m), 2):
        if graph[j, i] == 1 and graph[i, j] == -1:
            adjacency[i, j] = 1
        elif graph[i, j] == 1 and graph[j, i] == -1:
            adjacency[j, i] = 1
        elif graph[i, j] != 0 or graph[j, i] != 0:
            adjacency[i, j] = adjacency[j, i] = 1
    return adjacency


def inferred_direction(adjacency: Any, i: int, j: int) -> str:
    """``"c->e"`` (i → j), ``"e->c"``, ``"undirected"`` (both entries set) or ``"none"``."""
    a = np.asarray(adjacency)
    forward, backward = bool(a[i, j]), bool(a[j, i])
    if forward and backward:
        return "undirected"
    if forward:
        return "c->e"
    return "e->c" if backward else "none"


def pair_rows(
    adjacency: Any,
    attributes: Sequence[str],
    dag: Any,
    reliable: Mapping[tuple[str, str], bool] | None = None,
) -> list[dict[str, Any]]:
    """One row per unordered pair of ``attributes`` (the adjacency's order): cause, effect, the
    DAG's relation (:func:`causalscene.cage.dag_relation`), its kind, what the adjacency infers
    and ``reliable`` (``reliable[(c, e)]``, default True)."""
    from causalscene.cage import dag_relation, pair_kind

    a = np.asarray(adjacency)
    if a.shape != (len(attributes), len(attributes)):
        raise ValueError(f"adjacency is {a.shape} for {len(attributes)} attributes")
    rows = []
    for i, j in itertools.combinations(range(len(attributes)), 2):
        c, e = attributes[i], attributes[j]
        relation = dag_relation(dag, c, e)
        rows.append(
            {
                "cause": c,
                "effect": e,
                "relation": relation,
                "kind": pair_kind(relation),
                "inferred": inferred_direction(a, i, j),
                "reliable": True if reliable is None else bool(reliable[(c, e)]),
            }
        )
    return rows
