"""Exact variable elimination on a :class:`~causalscene.dag.CausalDAG` through pgmpy.

Both :mod:`causalscene.dag` (``sample(evidence=)`` needs P(evidence) to size its rejection
batches) and :mod:`causalscene.queries` (the three rungs) use it; it imports neither at run time,
so the two modules do not import each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from causalscene.dag import Assignment, CausalDAG

__all__ = ["eliminate", "probability_of_evidence"]


def eliminate(dag: CausalDAG, variables: tuple[str, ...], codes: Mapping[str, int]) -> np.ndarray:
    """P(variables | codes) by pgmpy variable elimination, axes in ``variables`` order."""
    from pgmpy.inference import VariableElimination

    model = dag.to_pgmpy()
    evidence = {k: dag.states(k)[i] for k, i in codes.items()}
    factor = VariableElimination(model).query(
        list(variables), evidence=evidence or None, joint=True, show_progress=False
    )
    values = np.asarray(factor.values, float)
    order = [factor.variables.index(v) for v in variables]
    values = np.transpose(values, order)
    # pgmpy keeps state-name order per variable; map to the DAG's order to be safe.
    for axis, v in enumerate(variables):
        names = [str(s) for s in factor.state_names[v]]
        perm = [names.index(s) for s in dag.states(v)]
        values = np.take(values, perm, axis=axis)
    total = values.sum()
    return values / total


def probability_of_evidence(dag: CausalDAG, evidence: Assignment) -> float:
    """P(evidence) (evidence by state name or index), exactly."""
    codes = dag.check_assignment(evidence)
    if not codes:
        return 1.0
    variables = tuple(codes)
    dag.check_table_size(variables, "evidence")
    table = eliminate(dag, variables, {})
    return float(table[tuple(codes[v] for v in variables)])
