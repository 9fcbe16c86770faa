"""Exact variable elimination over numpy factors, compiled once per :class:`~causalscene.dag.CausalDAG`.

pgmpy stays the model and file layer; the inference is our own, because building pgmpy's engine
for every query cost far more than answering it (tens of ms on munin). What is done once:

- per DAG (:func:`compile_dag`, cached on the DAG object through a weak reference): node indices,
  parents, CPTs as float64 arrays, which CPTs hold a zero;
- per query *shape* (query variables, evidence variables, do variables — not their values; an LRU
  cache of :data:`PLAN_CACHE_SIZE` plans per DAG): the pruned model and its elimination schedule.

Pruning (both exact): *barren nodes* — only ancestors of the query, evidence and do variables in
the mutilated graph matter; *d-separation* — after the evidence is sliced in, factors fall apart
into connected components, and a component that holds no query variable only scales the answer
(it is kept only when one of its CPTs holds a zero, so that impossible evidence is still found,
or when P(evidence) itself is asked for).

``do(X = x)`` needs no mutilated copy: X loses its incoming edges (its ancestors are not
followed), its own CPT drops out, and its children read X at x.

The elimination order is greedy weighted min-fill (Kjærulff 1990: fill edges weighted by the
product of their end cardinalities), ties broken by the clique's size and then by the node's
position in ``dag.nodes`` — deterministic, so time and memory do not depend on the hash seed.
Before anything is allocated, every factor the schedule would build is sized; a query whose
largest factor exceeds ``max_entries`` (default :data:`MAX_FACTOR_ENTRIES` = 2**27 float64 =
1 GiB) raises :class:`FactorTooLarge`, a ``ValueError``.

Both :mod:`causalscene.dag` (``sample(evidence=)`` needs P(evidence)) and
:mod:`causalscene.queries` use this module; it imports neither at run time.
"""

from __future__ import annotations

import heapq
import math
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from causalscene.dag import Assignment, CausalDAG

__all__ = [
    "MAX_FACTOR_ENTRIES",
    "PLAN_CACHE_SIZE",
    "FactorTooLarge",
    "Plan",
    "compile_dag",
    "eliminate",
    "elimination_order",
    "induced_width",
    "probability_of_evidence",
    "query_plan",
    "solve",
]

#: the largest intermediate factor a query may build (entries; 2**27 float64 = 1 GiB)
MAX_FACTOR_ENTRIES = 2**27
#: plans (pruned model + schedule) kept per DAG, least recently used dropped first
PLAN_CACHE_SIZE = 512
#: a plan whose schedule multiplies more entries than this many times the cost of a min-fill
#: search on its pruned graph (estimated as the sum of squared degrees) tries an order of its own
REORDER_RATIO = 1000
_EINSUM_LABELS = 52  # np.einsum's sublist form names axes 0..51


class FactorTooLarge(ValueError):
    """A query would build a factor above the memory bound; raised before allocating it."""


class _Step(NamedTuple):  # a tuple: a plan builds one per eliminated variable, cheaply
    """One bucket: multiply ``inputs`` (slot ids) and keep the axes ``output`` (variable ids)."""

    inputs: tuple[int, ...]
    output: tuple[int, ...]
    union: tuple[int, ...]  # every variable the product of the inputs holds
    entries: int  # size of that product


@dataclass(frozen=True)
class Plan:
    """A compiled query shape: which CPTs take part, how they are sliced, and the schedule.

    ``factors[i] = (node, scope)``: node ``node``'s CPT (axes: parents then node) with the
    clamped axes indexed away, leaving ``scope``; ``point`` nodes (queried and intervened on)
    are one-hot factors instead. Slots ``0..len(factors)-1`` hold those, then one per step.
    """

    query: tuple[int, ...]
    clamped: frozenset[int]
    factors: tuple[tuple[int, tuple[int, ...]], ...]
    point: frozenset[int]
    order: tuple[int, ...]
    steps: tuple[_Step, ...]
    scopes: tuple[tuple[int, ...], ...]  # scope of every slot

    @property
    def max_entries(self) -> int:
        return max((s.entries for s in self.steps), default=1)

    @property
    def induced_width(self) -> int:
        """Largest clique of the schedule minus one (the order's induced width)."""
        return max((len(s.union) for s in self.steps), default=1) - 1


class _Compiled:
    """What every query on one DAG shares: indices, parents, CPTs and a plan cache."""

    def __init__(self, dag: CausalDAG):
        self.names = dag.nodes
        self.index = {n: i for i, n in enumerate(self.names)}
        self.cards = [dag.cardinality(n) for n in self.names]
        self.parents = [tuple(self.index[p] for p in dag.parents(n)) for n in self.names]
        self.cpts = [np.ascontiguousarray(dag.cpt(n), dtype=float) for n in self.names]
        self.has_zero = [bool((t == 0).any()) for t in self.cpts]
        self.source = dag.source
        self.plans: OrderedDict[tuple, Plan] = OrderedDict()
        self._rank: list[int] | None = None
        self._ancestors: list[int] | None = None

    @property
    def rank(self) -> list[int]:
        """Every node's position in one min-fill order of the whole moral graph (built once)."""
        if self._rank is None:
            scopes = [(*parents, node) for node, parents in enumerate(self.parents)]
            order = _min_fill_order(_interaction_graph(scopes), self.cards, set())
            self._rank = [0] * len(order)
            for position, node in enumerate(order):
                self._rank[node] = position
        return self._rank

    @property
    def ancestors(self) -> list[int]:
        """Every node's ancestors, itself included, as a bit mask over node indices (built once;
        ``dag.nodes`` is in topological order)."""
        if self._ancestors is None:
            masks: list[int] = []
            for node, parents in enumerate(self.parents):
                mask = 1 << node
                for p in parents:
                    mask |= masks[p]
                masks.append(mask)
            self._ancestors = masks
        return self._ancestors


_COMPILED: weakref.WeakKeyDictionary[CausalDAG, _Compiled] = weakref.WeakKeyDictionary()


def compile_dag(dag: CausalDAG) -> _Compiled:
    """The compiled form of ``dag``, built on first use and kept while the DAG lives."""
    compiled = _COMPILED.get(dag)
    if compiled is None:
        compiled = _COMPILED[dag] = _Compiled(dag)
    return compiled


# ------------------------------------------------------------------------ plans
def _plan(c: _Compiled, query: tuple[int, ...], evidence: frozenset, do: frozenset) -> Plan:
    key = (query, evidence, do)
    plan = c.plans.get(key)
    if plan is None:
        plan = _build_plan(c, query, evidence, do)
        c.plans[key] = plan
        if len(c.plans) > PLAN_CACHE_SIZE:
            c.plans.popitem(last=False)
    else:
        c.plans.move_to_end(key)
    return plan


def _relevant(c: _Compiled, seeds: Iterable[int], do: frozenset) -> list[int]:
    """Ancestors of ``seeds`` (themselves included) in the graph where ``do`` nodes lost their
    parents, in topological order (barren nodes pruned)."""
    ancestors = c.ancestors
    mask = 0
    for node in seeds:
        if node not in do:
            mask |= ancestors[node]
    if not any(mask >> node & 1 and c.parents[node] for node in do):  # no edge to cut
        for node in do:
            mask |= 1 << node
        found = []
        while mask:
            low = mask & -mask
            found.append(low.bit_length() - 1)
            mask ^= low
        return found
    seen: set[int] = set()
    stack = list(seeds)
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if node not in do:
            stack.extend(p for p in c.parents[node] if p not in seen)
    return sorted(seen)


def _build_plan(c: _Compiled, query: tuple[int, ...], evidence: frozenset, do: frozenset) -> Plan:
    point = do & set(query)  # queried and intervened on: a one-hot factor, not a clamped axis
    clamped = (evidence | do) - point
    factors = []
    for node in _relevant(c, (*query, *evidence, *do), do - point):
        if node in do and node not in point:
            continue  # do(X = x): X's CPT drops out
        scope = (node,) if node in point else (*c.parents[node], node)
        factors.append((node, tuple(v for v in scope if v not in clamped)))
    graph = _interaction_graph([scope for _, scope in factors])
    if query:  # P(evidence) itself (no query) needs every component
        factors, graph = _keep_relevant(c, factors, graph, query)
    order, (steps, scopes) = _choose_order(c, graph, [scope for _, scope in factors], query)
    return Plan(query, frozenset(clamped), tuple(factors), frozenset(point), order, steps, scopes)


def _choose_order(
    c: _Compiled,
    graph: dict[int, set[int]],
    scopes: list[tuple[int, ...]],
    query: tuple[int, ...],
) -> tuple:
    """The whole DAG's min-fill order restricted to this query's variables (its induced width is
    at most the whole graph's, as the pruned graph is a subgraph of the moral graph); when that
    schedule is costly, also a min-weight order of the pruned graph itself (``graph``, the
    scopes' interaction graph; cheap to find), and whichever multiplies fewer entries."""
    free = [v for v in graph if v not in query]
    order = tuple(sorted(free, key=c.rank.__getitem__))
    schedule = _schedule(scopes, order, query, c.cards)
    cost = sum(step.entries for step in schedule[0])
    if cost <= REORDER_RATIO * sum(len(nbrs) ** 2 for nbrs in graph.values()):
        return order, schedule
    own = _min_fill_order(graph, c.cards, set(query), fill=False)
    other = _schedule(scopes, own, query, c.cards)
    if sum(s.entries for s in other[0]) < sum(s.entries for s in schedule[0]):
        return own, other
    return order, schedule


def _keep_relevant(
    c: _Compiled, factors: list, graph: dict[int, set[int]], query: tuple[int, ...]
) -> tuple[list, dict[int, set[int]]]:
    """Drop the components of ``graph`` (after slicing) that hold no query variable and no zero:
    they only scale the answer by a positive constant (d-separated from the query given the
    evidence). Returns the kept factors and their interaction graph (the kept components)."""
    seeds = [*query, *(scope[0] for node, scope in factors if scope and c.has_zero[node])]
    reached: set[int] = set()
    while seeds:
        v = seeds.pop()
        if v not in reached:
            reached.add(v)
            seeds.extend(graph[v] - reached)
    kept = [
        (node, scope)
        for node, scope in factors
        if (scope[0] in reached if scope else c.has_zero[node])  # no scope: a constant
    ]
    if len(reached) < len(graph):  # a component is closed: its neighbours stay inside
        graph = {v: graph[v] for v in reached}
    return kept, graph


def _interaction_graph(scopes: Iterable[tuple[int, ...]]) -> dict[int, set[int]]:
    graph: dict[int, set[int]] = {}
    for scope in scopes:
        for v in scope:
            graph.setdefault(v, set()).update(scope)
    for v, neighbours in graph.items():
        neighbours.discard(v)
    return graph


def _schedule(
    scopes: list[tuple[int, ...]], order: tuple[int, ...], query: tuple[int, ...], cards: list[int]
) -> tuple[tuple[_Step, ...], tuple[tuple[int, ...], ...]]:
    """Bucket elimination along ``order``; the last step keeps the query axes in their order.

    Every variable of ``scopes`` is in ``order`` or ``query``: a factor goes to the bucket of its
    earliest variable in ``order`` (the query's count as last: the final step)."""
    last = len(order)
    position = dict.fromkeys(query, last)
    position.update((v, i) for i, v in enumerate(order))
    at = position.__getitem__
    size = cards.__getitem__
    buckets: list[list[int]] = [[] for _ in range(last + 1)]
    slots = list(scopes)
    for slot, scope in enumerate(slots):
        buckets[min(map(at, scope), default=last)].append(slot)
    steps = []
    for i, var in enumerate(order):
        bucket = buckets[i]
        union = tuple(sorted(set().union(*[slots[j] for j in bucket])))
        cut = union.index(var)
        output = union[:cut] + union[cut + 1 :]
        steps.append(_Step(tuple(bucket), output, union, math.prod(map(size, union))))
        buckets[min(map(at, output), default=last)].append(len(slots))
        slots.append(output)
    steps.append(_Step(tuple(buckets[last]), query, query, math.prod(map(size, query))))
    slots.append(query)
    return tuple(steps), tuple(slots)


# ------------------------------------------------------------ elimination order
def _fill_cost(graph: dict[int, set[int]], v: int, cards: list[int]) -> tuple[int, int, int]:
    """(weighted fill, clique size, v): the greedy key of eliminating ``v`` next."""
    neighbours = graph[v]
    fill = 0
    for a in neighbours:
        missing = neighbours - graph[a]
        missing.discard(a)
        if missing:
            fill += cards[a] * sum(cards[b] for b in missing)
    return fill // 2, cards[v] * math.prod(cards[u] for u in neighbours), v


def _weight_cost(graph: dict[int, set[int]], v: int, cards: list[int]) -> tuple[int, int]:
    """(clique size, v): the greedy key of min-weight elimination."""
    return cards[v] * math.prod(cards[u] for u in graph[v]), v


def _min_fill_order(
    graph: dict[int, set[int]], cards: list[int], keep: set[int], fill: bool = True
) -> tuple:
    """Greedy weighted min-fill (``fill=False``: min-weight, cheaper) over ``graph`` (edited in
    place), never eliminating ``keep``.

    A heap of keys with lazy invalidation: eliminating ``v`` changes the keys of its neighbours
    (and, for min-fill, of their neighbours) only.
    """
    cost = _fill_cost if fill else _weight_cost
    version = dict.fromkeys(graph, 0)
    heap = [(*cost(graph, v, cards), 0) for v in graph if v not in keep]
    heapq.heapify(heap)
    order = []
    while heap:
        *_, v, stamp = heapq.heappop(heap)
        if stamp != version[v] or v not in graph:
            continue
        neighbours = graph.pop(v)
        for u in neighbours:
            graph[u].discard(v)
            graph[u] |= neighbours - {u}
        order.append(v)
        touched = set(neighbours).union(*(graph[u] for u in neighbours)) if fill else neighbours
        for u in touched - keep:
            version[u] += 1
            heapq.heappush(heap, (*cost(graph, u, cards), version[u]))
    return tuple(order)


# ------------------------------------------------------------------- execution
def _check_size(c: _Compiled, plan: Plan, max_entries: int | None) -> None:
    bound = MAX_FACTOR_ENTRIES if max_entries is None else max_entries
    for step in plan.steps:
        union = step.union
        if step.entries > bound or len(union) > _EINSUM_LABELS:
            shown = ", ".join(c.names[v] for v in union[:6]) + (", ..." if len(union) > 6 else "")
            where = f"{c.source}: " if c.source else ""
            raise FactorTooLarge(
                f"{where}the query needs a factor of {step.entries:,} entries over "
                f"{len(union)} variables ({shown}), above the bound of {bound:,} entries "
                "(max_entries)"
            )


def _slice(c: _Compiled, plan: Plan, codes: Mapping[int, int]) -> list[np.ndarray]:
    tables = []
    for node, _ in plan.factors:
        if node in plan.point:
            table = np.zeros(c.cards[node])
            table[codes[node]] = 1.0
        else:
            table = c.cpts[node]
            scope = (*c.parents[node], node)
            if plan.clamped.intersection(scope):
                index = tuple(codes[v] if v in plan.clamped else slice(None) for v in scope)
                table = table[index]
        tables.append(table)
    return tables


def _run(plan: Plan, tables: list[np.ndarray]) -> np.ndarray:
    slots = list(tables)
    for step in plan.steps:
        slots.append(_multiply_out(step, [(slots[i], plan.scopes[i]) for i in step.inputs]))
    return slots[-1]


def _multiply_out(step: _Step, factors: list[tuple[np.ndarray, tuple[int, ...]]]) -> np.ndarray:
    """The product of ``factors`` summed down to ``step.output``, as one ``np.einsum`` over the
    axes of ``step.union`` (labelled by their position there)."""
    if not factors:
        return np.ones(())
    label = step.union.index  # a handful of axes: cheaper than a dict
    operands: list = []
    for values, scope in factors:
        operands += (values, [label(v) for v in scope])
    return np.einsum(*operands, [label(v) for v in step.output])


def solve(
    dag: CausalDAG,
    variables: Iterable[str],
    evidence: Mapping[str, int] | None = None,
    do: Mapping[str, int] | None = None,
    max_entries: int | None = None,
) -> np.ndarray:
    """Unnormalised P(variables, evidence) in the graph mutilated by ``do`` (codes in; axes in
    ``variables`` order). Its sum is P(evidence | do) whenever ``variables`` is empty; otherwise
    a positive multiple of it that is zero exactly when P(evidence | do) is."""
    c = compile_dag(dag)
    query = tuple(c.index[v] for v in variables)
    codes = {c.index[k]: int(i) for k, i in {**(evidence or {}), **(do or {})}.items()}
    ev = frozenset(c.index[k] for k in evidence or {}) - {c.index[k] for k in do or {}}
    plan = _plan(c, query, ev, frozenset(c.index[k] for k in do or {}))
    _check_size(c, plan, max_entries)
    return _run(plan, _slice(c, plan, codes))


def query_plan(
    dag: CausalDAG,
    variables: Iterable[str],
    evidence: Iterable[str] = (),
    do: Iterable[str] = (),
) -> Plan:
    """The (cached) plan of a query shape: its order, schedule and largest factor."""
    c = compile_dag(dag)
    do_set = frozenset(c.index[v] for v in do)
    query = tuple(c.index[v] for v in variables)
    return _plan(c, query, frozenset(c.index[v] for v in evidence) - do_set, do_set)


def induced_width(dag: CausalDAG) -> int:
    """Induced width of the whole moral graph under the DAG's min-fill order (an upper bound on
    its treewidth, and on the induced width of every query's pruned schedule)."""
    c = compile_dag(dag)
    scopes = [(*parents, node) for node, parents in enumerate(c.parents)]
    order = tuple(sorted(range(len(c.names)), key=c.rank.__getitem__))
    steps, _ = _schedule(scopes, order, (), c.cards)
    return max(len(step.union) for step in steps) - 1


def elimination_order(
    dag: CausalDAG, variables: Iterable[str], evidence: Iterable[str] = (), do: Iterable[str] = ()
) -> list[str]:
    """The node names a query eliminates, in order (what :func:`query_plan` schedules)."""
    c = compile_dag(dag)
    return [c.names[v] for v in query_plan(dag, variables, evidence, do).order]


def eliminate(
    dag: CausalDAG,
    variables: tuple[str, ...],
    codes: Mapping[str, int],
    max_entries: int | None = None,
) -> np.ndarray:
    """P(variables | codes), axes in ``variables`` order (all zeros if the evidence is impossible)."""
    table = solve(dag, variables, codes, max_entries=max_entries)
    total = table.sum()
    return table / total if total > 0 else table


def probability_of_evidence(
    dag: CausalDAG, evidence: Assignment, max_entries: int | None = None
) -> float:
    """P(evidence) (evidence by state name or index), exactly."""
    codes = dag.check_assignment(evidence)
    if not codes:
        return 1.0
    return float(solve(dag, (), codes, max_entries=max_entries))
