"""Independent references for the query tests: brute-force enumeration of the joint.

Nothing here uses pgmpy or causalscene.queries: joints are enumerated state by state and
summed, interventions use the truncated factorisation (g-formula), and monotone-noise
counterfactuals integrate the exogenous U over intervals directly.
"""

from __future__ import annotations

import itertools

import numpy as np

from causalscene.dag import CausalDAG, Node


def joint_table(dag: CausalDAG, drop: frozenset = frozenset()) -> tuple[list[str], np.ndarray]:
    """Full joint P(v) as an array with one axis per node (dag.nodes order).

    Factors of nodes in ``drop`` are left out (truncated factorisation for do()).
    """
    names = dag.nodes
    shape = [dag.cardinality(n) for n in names]
    table = np.zeros(shape)
    for combo in itertools.product(*(range(s) for s in shape)):
        value = dict(zip(names, combo))
        p = 1.0
        for n in names:
            if n in drop:
                continue
            p *= dag.cpt(n)[tuple(value[q] for q in dag.parents(n)) + (value[n],)]
        table[combo] = p
    return names, table


def brute_query(dag, variables, evidence=None, do=None):
    """P(variables | do, evidence) by enumeration (codes in, array out)."""
    do = do or {}
    evidence = evidence or {}
    names, table = joint_table(dag, frozenset(do))
    for node, code in {**do, **evidence}.items():
        mask = np.zeros(dag.cardinality(node))
        mask[code] = 1.0
        axis = names.index(node)
        table = table * mask.reshape([-1 if i == axis else 1 for i in range(table.ndim)])
    keep = [names.index(v) for v in variables]
    drop_axes = tuple(i for i in range(len(names)) if i not in keep)
    marginal = table.sum(axis=drop_axes)
    # axes of marginal are in names order; permute to the requested order
    kept_sorted = sorted(keep)
    marginal = np.transpose(marginal, [kept_sorted.index(names.index(v)) for v in variables])
    return marginal / marginal.sum()


def brute_counterfactual(dag, variables, factual, do):
    """Monotone inverse-CDF counterfactual by enumeration and interval arithmetic.

    Given a full factual assignment v, the noises are independent with U_X | v ~ Uniform on
    [F(x-1 | pa), F(x | pa)). The counterfactual world is then a product, in topological order,
    of P(X* = k | pa*, U_X interval) = |interval ∩ [F(k-1 | pa*), F(k | pa*))| / |interval|.
    """
    names = dag.nodes
    out = np.zeros([dag.cardinality(v) for v in variables])
    for combo in itertools.product(*(range(dag.cardinality(n)) for n in names)):
        v = dict(zip(names, combo))
        if any(v[k] != c for k, c in factual.items()):
            continue
        weight = 1.0
        intervals = {}
        for n in names:
            row = dag.cpt(n)[tuple(v[q] for q in dag.parents(n))]
            weight *= row[v[n]]
            lo = float(np.sum(row[: v[n]]))
            intervals[n] = (lo, lo + float(row[v[n]]))
        if weight == 0:
            continue
        # enumerate counterfactual worlds with their probabilities
        worlds = [({}, 1.0)]
        for n in names:
            new = []
            lo, hi = intervals[n]
            for world, p in worlds:
                if n in do:
                    new.append(({**world, n: do[n]}, p))
                    continue
                row = dag.cpt(n)[tuple(world[q] for q in dag.parents(n))]
                edges = np.concatenate([[0.0], np.cumsum(row)])
                for k in range(len(row)):
                    overlap = max(0.0, min(hi, edges[k + 1]) - max(lo, edges[k]))
                    if overlap > 0:
                        new.append(({**world, n: k}, p * overlap / (hi - lo)))
            worlds = new
        for world, p in worlds:
            out[tuple(world[x] for x in variables)] += weight * p
    return out / out.sum()


def random_dag(seed: int, num_nodes: int, max_parents: int = 3, max_states: int = 4) -> CausalDAG:
    """A seeded random DAG with Dirichlet CPTs (some entries exactly zero)."""
    rng = np.random.default_rng(seed)
    nodes, cpts = [], {}
    for i in range(num_nodes):
        card = int(rng.integers(2, max_states + 1))
        k = int(rng.integers(0, min(i, max_parents) + 1))
        parents = tuple(f"v{j}" for j in sorted(rng.choice(i, size=k, replace=False))) if k else ()
        node = Node(f"v{i}", tuple(f"s{j}" for j in range(card)), parents)
        shape = [next(n.cardinality for n in nodes if n.name == p) for p in parents] + [card]
        table = rng.dirichlet(np.ones(card) * 0.7, size=int(np.prod(shape[:-1]))).reshape(shape)
        if rng.random() < 0.3:  # zero some entries, keep rows normalised
            flat = table.reshape(-1, card)
            flat[rng.random(flat.shape) < 0.2] = 0.0
            flat[flat.sum(1) == 0, 0] = 1.0
            table = (flat / flat.sum(1, keepdims=True)).reshape(shape)
        nodes.append(node)
        cpts[node.name] = table
    # shuffle declaration order so the topological sort is exercised
    order = rng.permutation(num_nodes)
    return CausalDAG(f"random{seed}", [nodes[i] for i in order], cpts)
