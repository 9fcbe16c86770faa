"""Causal DAGs over discrete scene variables, stored as data (``dags/*.yaml``).

The shipped DAG files are the package data ``causalscene.dags`` (the repository's ``dags/``
folder), found by name through ``importlib.resources``: :meth:`CausalDAG.load` takes a file or a
shipped name (``faces``, ``rpg_fight``, or its alias ``rpg``).

A :class:`CausalDAG` holds, for every node, its states, its parents and its conditional
probability table (CPT). It is immutable in spirit: :meth:`CausalDAG.mutilate` and friends
return copies. Files are validated on load; every fault raises :class:`DAGError`, whose
message names the file, the node and the fault.

File format (see DESIGN.md)::

    name: rpg_fight
    nodes:
      actor:      {states: [satyr, golem], rendered: true}
      actor_type: {states: [type1, type2, type3], parents: [actor], rendered: true}
    cpts:
      actor: [0.5, 0.5]
      actor_type:
        satyr: [0.33, 0.34, 0.33]
        golem: [0.33, 0.34, 0.33]

CPT arrays returned by :meth:`CausalDAG.cpt` have the parents' axes first, in the order of
``parents``, and the child's states last: ``cpt[i_p1, i_p2, ..., :]`` is one row.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import yaml

from causalscene.elimination import probability_of_evidence

__all__ = [
    "CausalDAG",
    "DAGError",
    "Node",
    "StateValue",
    "Assignment",
    "DAG_ALIASES",
    "shipped_dag_names",
    "shipped_dag_path",
    "is_shipped_name",
]

#: A state given by name (``"golem"``) or by index (``1``).
StateValue = str | int
#: A partial assignment of nodes to states, as used for ``evidence`` and ``do``.
Assignment = Mapping[str, StateValue]

TOLERANCE = 1e-6
#: most samples one call draws (``sample``, ``--num-samples``): arrays [n, states] must fit
MAX_SAMPLES = 10_000_000
#: most cells (samples x the largest state count) one sampling call holds at once
MAX_SAMPLE_CELLS = 10**8
#: most forward draws rejection sampling may need on average (n / P(evidence))
MAX_REJECTION_DRAWS = 10**9


class DAGError(ValueError):
    """A DAG file, a node or a query argument is malformed; the message says where and why."""

    def __init__(
        self,
        fault: str,
        *,
        source: str | None = None,
        node: str | None = None,
        line: int | None = None,
    ):
        self.source = source
        self.node = node
        self.fault = fault
        self.line = line
        where = []
        if source:
            where.append(f"{source}:{line}" if line else str(source))
        elif line:
            where.append(f"line {line}")
        if node is not None:
            where.append(f"node '{node}'")
        super().__init__(": ".join([*where, " ".join(fault.split())]))


@dataclass(frozen=True)
class Node:
    """One discrete variable of the DAG."""

    name: str
    states: tuple[str, ...]
    parents: tuple[str, ...] = ()
    rendered: bool = False
    hidden: bool = False

    @property
    def cardinality(self) -> int:
        return len(self.states)


class _DagLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that reads ``yes``/``no``/``on``/``off`` as strings (YAML 1.2 style).

    State names like ``no`` and ``yes`` are common in DAG files; YAML 1.1 would turn them into
    booleans. Only ``true``/``false`` stay booleans.
    """


_DagLoader.yaml_implicit_resolvers = {
    key: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_DagLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def _as_name(value: Any) -> str:
    """State names and CPT keys may be written unquoted as numbers or booleans; keep them as text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).strip()


class CausalDAG:
    """A discrete causal Bayesian network: nodes, states, parents and CPTs.

    Args:
        name: short name of the scene (``rpg_fight``).
        nodes: the nodes, in any order (a topological order is computed).
        cpts: ``{node: array}`` with shape ``[*parent cardinalities, cardinality]``.
        description: free text.
        source: where the DAG came from (a file path), used in error messages.
    """

    def __init__(
        self,
        name: str,
        nodes: Iterable[Node],
        cpts: Mapping[str, np.ndarray],
        description: str = "",
        source: str | None = None,
    ):
        self.name = name
        self.description = description
        self.source = source
        self._nodes: dict[str, Node] = {}
        for node in nodes:
            if node.name in self._nodes:
                raise DAGError("duplicate node", source=source, node=node.name)
            self._nodes[node.name] = node
        if not self._nodes:
            raise DAGError("the DAG has no nodes", source=source)
        self._validate_structure()
        self._cpts: dict[str, np.ndarray] = {}
        for node in self._nodes.values():
            if node.name not in cpts:
                raise DAGError("missing CPT", source=source, node=node.name)
            self._cpts[node.name] = self._validate_cpt(node, np.asarray(cpts[node.name], float))
        extra = sorted(set(cpts) - set(self._nodes))
        if extra:
            raise DAGError(
                f"CPT given for unknown node (known nodes: {', '.join(self._nodes)})",
                source=source,
                node=extra[0],
            )
        self._pgmpy = None

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_yaml(cls, path: str | Path) -> CausalDAG:
        """Load and validate a DAG file: a ``yaml.SafeLoader`` without aliases, duplicate keys
        or deep nesting, within the size limits of :mod:`causalscene.dagio`."""
        from causalscene import dagio

        path = Path(path)
        data = dagio.load_yaml(dagio.read_text(path), str(path))
        return cls.from_dict(data, source=str(path))

    @classmethod
    def shipped(cls, name: str) -> CausalDAG:
        """One of the DAGs shipped with the package (``rpg_fight`` or ``rpg``, ``faces``, ...)."""
        return cls.from_yaml(shipped_dag_path(name))

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> CausalDAG:
        """Build from the parsed form of a DAG file."""
        if not isinstance(data, Mapping):
            raise DAGError("top level must be a mapping with 'nodes' and 'cpts'", source=source)
        unknown = sorted(set(map(str, data)) - {"name", "description", "nodes", "cpts"})
        if unknown:
            raise DAGError(f"unknown top-level key '{unknown[0]}'", source=source)
        raw_nodes = data.get("nodes")
        if not isinstance(raw_nodes, Mapping) or not raw_nodes:
            raise DAGError("'nodes' must be a non-empty mapping", source=source)
        nodes = []
        for raw_name, spec in raw_nodes.items():
            nodes.append(_parse_node(_as_name(raw_name), spec, source))
        raw_cpts = data.get("cpts")
        if not isinstance(raw_cpts, Mapping):
            raise DAGError("'cpts' must be a mapping from node to table", source=source)
        by_name = {n.name: n for n in nodes}
        # structure first, so that an unknown parent is reported before CPT rows.
        cls._check_structure(by_name, source)
        cpts = {}
        for raw_name, table in raw_cpts.items():
            name = _as_name(raw_name)
            if name not in by_name:
                raise DAGError(
                    f"CPT given for unknown node (known nodes: {', '.join(by_name)})",
                    source=source,
                    node=name,
                )
            cpts[name] = _parse_cpt(by_name[name], by_name, table, source)
        for key in ("name", "description"):
            if isinstance(data.get(key), (Mapping, list)):
                raise DAGError(f"'{key}' must be text", source=source)
        return cls(
            name=str(data.get("name") or Path(source).stem),
            nodes=nodes,
            cpts=cpts,
            description=str(data.get("description") or ""),
            source=source,
        )

    @classmethod
    def from_bif(cls, path: str | Path) -> CausalDAG:
        """Load a BIF network (bnlearn repository format; ``.bif`` or ``.bif.gz``) with the
        strict reader of :mod:`causalscene.dagio` (the network pgmpy's ``BIFReader`` builds)."""
        from causalscene import dagio

        path = Path(path)
        source = str(path)
        nodes, cpts = dagio.read_bif(dagio.read_text(path), source)
        return cls(name=path.name.split(".")[0], nodes=nodes, cpts=cpts, source=source)

    @classmethod
    def load(cls, path: str | Path) -> CausalDAG:
        """Load a ``.yaml``/``.yml`` or ``.bif`` file, by extension, or a shipped DAG by name
        (``faces``, ``rpg_fight``, ``rpg``: a name has no extension and no folder; a file of that
        name in the working directory wins)."""
        if is_shipped_name(path) and not Path(path).is_file():
            return cls.shipped(str(path))
        suffixes = [x.lower() for x in Path(path).suffixes]
        suffix = suffixes[-1] if suffixes else ""
        if suffix == ".bif" or suffixes[-2:] == [".bif", ".gz"]:
            return cls.from_bif(path)
        if suffix in (".yaml", ".yml"):
            return cls.from_yaml(path)
        raise DAGError(
            "unknown DAG file type (expected .yaml, .yml, .bif or .bif.gz)", source=str(path)
        )

    @classmethod
    def from_pgmpy(cls, model: Any, name: str = "pgmpy", source: str | None = None) -> CausalDAG:
        """Convert a pgmpy ``DiscreteBayesianNetwork`` with tabular CPDs."""
        nodes, cpts = [], {}
        for variable in model.nodes():
            cpd = model.get_cpds(variable)
            if cpd is None:
                raise DAGError("no CPD in the pgmpy model", source=source, node=str(variable))
            parents = tuple(str(p) for p in cpd.variables[1:])
            states = tuple(_as_name(s) for s in cpd.state_names[variable])
            values = np.asarray(cpd.get_values(), float)  # [card, prod(parent cards)]
            parent_cards = [len(cpd.state_names[p]) for p in cpd.variables[1:]]
            table = values.T.reshape(*parent_cards, len(states))
            nodes.append(Node(str(variable), states, parents))
            cpts[str(variable)] = table
            # pgmpy lists parents' states per CPD; they must agree with the parents' own CPDs.
        dag = cls(name=name, nodes=nodes, cpts=cpts, source=source)
        for variable in model.nodes():
            cpd = model.get_cpds(variable)
            for parent in cpd.variables[1:]:
                theirs = tuple(_as_name(s) for s in cpd.state_names[parent])
                if theirs != dag.states(str(parent)):
                    raise DAGError(
                        f"states of parent '{parent}' differ from that node's own states",
                        source=source,
                        node=str(variable),
                    )
        return dag

    # -------------------------------------------------------------- validation
    @staticmethod
    def _check_structure(nodes: Mapping[str, Node], source: str | None) -> None:
        for node in nodes.values():
            for parent in node.parents:
                if parent not in nodes:
                    raise DAGError(f"unknown parent '{parent}'", source=source, node=node.name)
                if parent == node.name:
                    raise DAGError("node is its own parent (cycle)", source=source, node=node.name)
            if len(set(node.parents)) != len(node.parents):
                raise DAGError("a parent is listed twice", source=source, node=node.name)
        graph = nx.DiGraph()
        graph.add_nodes_from(nodes)
        graph.add_edges_from((p, n.name) for n in nodes.values() for p in n.parents)
        try:
            cycle = nx.find_cycle(graph)
        except nx.NetworkXNoCycle:
            return
        path = " -> ".join([edge[0] for edge in cycle] + [cycle[0][0]])
        raise DAGError(f"cycle {path}", source=source, node=cycle[0][0])

    def _validate_structure(self) -> None:
        self._check_structure(self._nodes, self.source)
        graph = nx.DiGraph()
        graph.add_nodes_from(self._nodes)
        graph.add_edges_from((p, n.name) for n in self._nodes.values() for p in n.parents)
        self._graph = graph
        # lexicographic tie-break keeps file order where the graph allows it.
        position = {name: i for i, name in enumerate(self._nodes)}
        self._order = list(nx.lexicographical_topological_sort(graph, key=position.__getitem__))

    def _validate_cpt(self, node: Node, table: np.ndarray) -> np.ndarray:
        expected = tuple(self._nodes[p].cardinality for p in node.parents) + (node.cardinality,)
        if table.shape != expected:
            raise DAGError(
                f"CPT has shape {table.shape}, expected {expected} (parents' states, then own)",
                source=self.source,
                node=node.name,
            )
        rows = _check_rows(node, table.reshape(-1, node.cardinality), self._row_label, self.source)
        table = rows.reshape(expected)
        table.setflags(write=False)
        return table

    def _row_label(self, node: Node, row: int) -> str:
        """The label of row ``row`` of ``node``'s CPT (parents' states joined by ',')."""
        if not node.parents:
            return "(root)"
        cards = [self._nodes[p].cardinality for p in node.parents]
        index = np.unravel_index(row, cards)
        return ",".join(self.states(p)[i] for p, i in zip(node.parents, index))

    def _row_labels(self, node: Node) -> list[str]:
        if not node.parents:
            return ["(root)"]
        return [",".join(c) for c in itertools.product(*(self.states(p) for p in node.parents))]

    # ------------------------------------------------------------------ access
    @property
    def nodes(self) -> list[str]:
        """Node names, in topological order (file order where the graph allows)."""
        return list(self._order)

    @property
    def topological_order(self) -> list[str]:
        return list(self._order)

    def node(self, name: str) -> Node:
        self.check_node(name)
        return self._nodes[name]

    def states(self, node: str) -> tuple[str, ...]:
        return self.node(node).states

    def cardinality(self, node: str) -> int:
        return self.node(node).cardinality

    def parents(self, node: str) -> tuple[str, ...]:
        return self.node(node).parents

    def children(self, node: str) -> list[str]:
        self.check_node(node)
        return [n for n in self._order if node in self._nodes[n].parents]

    def ancestors(self, node: str) -> set[str]:
        self.check_node(node)
        return set(nx.ancestors(self._graph, node))

    def descendants(self, node: str) -> set[str]:
        self.check_node(node)
        return set(nx.descendants(self._graph, node))

    def cpt(self, node: str) -> np.ndarray:
        """CPT array ``[*parent cards, card]`` (read-only)."""
        self.check_node(node)
        return self._cpts[node]

    @property
    def rendered_nodes(self) -> list[str]:
        return [n for n in self._order if self._nodes[n].rendered]

    @property
    def hidden_nodes(self) -> list[str]:
        return [n for n in self._order if self._nodes[n].hidden]

    @property
    def label_nodes(self) -> list[str]:
        """Nodes that appear in dataset labels (every node that is not hidden)."""
        return [n for n in self._order if not self._nodes[n].hidden]

    @property
    def edges(self) -> list[tuple[str, str]]:
        return [(p, n) for n in self._order for p in self._nodes[n].parents]

    def __contains__(self, node: object) -> bool:
        return node in self._nodes

    def __repr__(self) -> str:
        return f"CausalDAG(name={self.name!r}, nodes={len(self._nodes)}, edges={len(self.edges)})"

    # ---------------------------------------------------------- argument checks
    def check_node(self, node: str) -> None:
        if node not in self._nodes:
            raise DAGError(
                f"unknown variable '{node}' (known: {', '.join(self._order)})",
                source=self.source,
            )

    def state_index(self, node: str, state: StateValue) -> int:
        """Index of ``state`` (a name, or an index given as int or digit string) of ``node``."""
        states = self.states(node)
        if isinstance(state, (bool, np.bool_)):
            state = _as_name(state)
        if isinstance(state, (int, np.integer)):
            if 0 <= int(state) < len(states):
                return int(state)
        else:
            name = _as_name(state)
            if name in states:
                return states.index(name)
        raise DAGError(
            f"unknown state '{state}' (states: {', '.join(states)})", source=self.source, node=node
        )

    def check_assignment(
        self, assignment: Assignment | None, what: str = "evidence"
    ) -> dict[str, int]:
        """Validate ``{node: state}`` and return ``{node: state index}``."""
        out: dict[str, int] = {}
        for node, state in (assignment or {}).items():
            if node not in self._nodes:
                raise DAGError(
                    f"{what} names unknown variable '{node}' (known: {', '.join(self._order)})",
                    source=self.source,
                )
            out[node] = self.state_index(node, state)
        return out

    # ------------------------------------------------------------ conversions
    def mutilate(self, do: Assignment) -> CausalDAG:
        """The graph of ``do(node = state, ...)``: incoming edges cut, CPT a point mass. A copy."""
        fixed = self.check_assignment(do, "do")
        nodes, cpts = [], {}
        for name in self._order:
            node = self._nodes[name]
            if name in fixed:
                point = np.zeros(node.cardinality)
                point[fixed[name]] = 1.0
                nodes.append(Node(name, node.states, (), node.rendered, node.hidden))
                cpts[name] = point
            else:
                nodes.append(node)
                cpts[name] = self._cpts[name]
        return CausalDAG(self.name, nodes, cpts, self.description, self.source)

    def with_cpts(self, cpts: Mapping[str, np.ndarray]) -> CausalDAG:
        """A copy with some CPTs replaced (e.g. learned ones)."""
        merged = {**self._cpts, **{k: np.asarray(v, float) for k, v in cpts.items()}}
        return CausalDAG(self.name, self._nodes.values(), merged, self.description, self.source)

    def to_networkx(self) -> nx.DiGraph:
        graph = nx.DiGraph(name=self.name)
        for name in self._order:
            node = self._nodes[name]
            graph.add_node(
                name, states=list(node.states), rendered=node.rendered, hidden=node.hidden
            )
        graph.add_edges_from(self.edges)
        return graph

    def to_pgmpy(self):
        """A pgmpy ``DiscreteBayesianNetwork`` with tabular CPDs (cached; do not mutate it)."""
        if self._pgmpy is None:
            from pgmpy.factors.discrete import TabularCPD
            from pgmpy.models import DiscreteBayesianNetwork

            model = DiscreteBayesianNetwork()
            model.add_nodes_from(self._order)
            model.add_edges_from(self.edges)
            for name in self._order:
                node = self._nodes[name]
                table = self._cpts[name].reshape(-1, node.cardinality).T
                model.add_cpds(
                    TabularCPD(
                        name,
                        node.cardinality,
                        table,
                        evidence=list(node.parents) or None,
                        evidence_card=[self.cardinality(p) for p in node.parents] or None,
                        state_names={n: list(self.states(n)) for n in (name, *node.parents)},
                    )
                )
            model.check_model()
            self._pgmpy = model
        return self._pgmpy

    def to_dict(self) -> dict[str, Any]:
        """The DAG-file form (inverse of :meth:`from_dict`)."""
        nodes: dict[str, Any] = {}
        cpts: dict[str, Any] = {}
        for name in self._order:
            node = self._nodes[name]
            spec: dict[str, Any] = {"states": list(node.states)}
            if node.parents:
                spec["parents"] = list(node.parents)
            if node.rendered:
                spec["rendered"] = True
            if node.hidden:
                spec["hidden"] = True
            nodes[name] = spec
            table = self._cpts[name].reshape(-1, node.cardinality)
            if node.parents:
                cpts[name] = {
                    k: [float(v) for v in row] for k, row in zip(self._row_labels(node), table)
                }
            else:
                cpts[name] = [float(v) for v in table[0]]
        return {"name": self.name, "description": self.description, "nodes": nodes, "cpts": cpts}

    def digest(self) -> str:
        """SHA-256 of the canonical JSON form: equal for equal DAGs, whatever the file layout."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    # ---------------------------------------------------------------- sampling
    def joint_probability(self, codes: Mapping[str, np.ndarray]) -> np.ndarray:
        """P(x) for full assignments ``{node: int array [n]}`` (the product of CPT entries)."""
        prob = None
        for name in self._order:
            index = tuple(np.asarray(codes[p]) for p in self._nodes[name].parents)
            term = self._cpts[name][(*index, np.asarray(codes[name]))]
            prob = term if prob is None else prob * term
        return np.asarray(prob)

    def sample(
        self,
        n: int,
        do: Assignment | None = None,
        evidence: Assignment | None = None,
        seed: int | np.random.Generator | None = None,
    ) -> dict[str, np.ndarray]:
        """Ancestral sampling: ``{node: int64 state indices [n]}``, in topological order.

        ``do`` samples the mutilated graph; ``evidence`` samples the exact posterior given it
        (vectorised rejection sampling, exact in distribution; the acceptance probability is
        computed exactly first, so impossible evidence raises instead of looping).
        """
        self.check_sample_count(n, "n", minimum=0)
        dag = self.mutilate(do) if do else self
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        fixed = dag.check_assignment(evidence, "evidence")
        if not fixed:
            return dag._forward(n, rng)
        p_evidence = probability_of_evidence(dag, fixed)
        if p_evidence <= 0:
            raise DAGError(f"evidence {dict(evidence or {})} has probability 0", source=self.source)
        if n / p_evidence > MAX_REJECTION_DRAWS:
            raise DAGError(
                f"evidence {dict(evidence or {})} has probability {p_evidence:.3g}: rejection "
                f"sampling would need about {n / p_evidence:.3g} draws (limit {MAX_REJECTION_DRAWS:.0e})",
                source=self.source,
            )
        chunks: list[dict[str, np.ndarray]] = []
        have = 0
        while have < n:
            batch = int(min(4_000_000, max(1024, 1.2 * (n - have) / p_evidence)))
            draw = dag._forward(batch, rng)
            keep = np.ones(batch, bool)
            for node, index in fixed.items():
                keep &= draw[node] == index
            chunks.append({k: v[keep] for k, v in draw.items()})
            have += int(keep.sum())
        return {k: np.concatenate([c[k] for c in chunks])[:n] for k in dag._order}

    def check_sample_count(self, n: Any, what: str = "num_samples", minimum: int = 1) -> None:
        """Refuse a sample count that is not an integer in [minimum, :data:`MAX_SAMPLES`], or
        whose arrays (n x the largest state count) exceed :data:`MAX_SAMPLE_CELLS`."""
        if (
            not isinstance(n, (int, np.integer))
            or isinstance(n, bool)
            or not minimum <= n <= MAX_SAMPLES
        ):
            raise DAGError(
                f"{what} must be an integer from {minimum} to {MAX_SAMPLES:,}, got {n!r}",
                source=self.source,
            )
        widest = max(node.cardinality for node in self._nodes.values())
        if n * widest > MAX_SAMPLE_CELLS:
            raise DAGError(
                f"{what} = {n:,} samples of up to {widest} states exceed {MAX_SAMPLE_CELLS:.0e} cells",
                source=self.source,
            )

    def check_table_size(self, variables: Iterable[str], what: str = "query") -> None:
        """Refuse a joint table over ``variables`` of more than ``MAX_TABLE_ENTRIES`` entries."""
        from causalscene.dagio import MAX_TABLE_ENTRIES

        variables = list(variables)
        entries = math.prod(self.cardinality(v) for v in variables)
        if entries > MAX_TABLE_ENTRIES:
            raise DAGError(
                f"the {what}'s joint table over {len(variables)} variables would have "
                f"{entries:,} entries, over the limit of {MAX_TABLE_ENTRIES:,}",
                source=self.source,
            )

    def cpt_rows(self, node: str, codes: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        """The CPT rows ``[n, K]`` of ``node`` selected by its parents' ``codes`` (``{parent: [n]}``)."""
        table = self.cpt(node)
        parents = self.parents(node)
        if not parents:
            return np.broadcast_to(table, (n, table.shape[-1]))
        return table[tuple(codes[p] for p in parents)]

    def _forward(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for name in self._order:
            node = self._nodes[name]
            rows = self.cpt_rows(name, out, n)
            cumulative = np.cumsum(rows, axis=-1)
            u = rng.random(n)[:, None]
            codes = (u >= cumulative[..., :-1]).sum(-1) if node.cardinality > 1 else np.zeros(n)
            out[name] = np.broadcast_to(codes, (n,)).astype(np.int64)
        return out

    def decode(self, codes: Mapping[str, np.ndarray]) -> dict[str, list[str]]:
        """State names for integer codes."""
        return {k: [self.states(k)[int(i)] for i in v] for k, v in codes.items()}


#: the package holding the shipped DAG files (the repository's ``dags/`` folder, mapped)
DAGS_PACKAGE = "causalscene.dags"
#: other names of shipped DAGs: the procgen generator's name for the DAG it samples from
DAG_ALIASES = {"rpg": "rpg_fight"}


def shipped_dag_names() -> list[str]:
    """The names of the shipped DAGs (file stems; aliases in :data:`DAG_ALIASES`)."""
    files = resources.files(DAGS_PACKAGE).iterdir()
    return sorted(f.name[: -len(".yaml")] for f in files if f.name.endswith(".yaml"))


def is_shipped_name(spec: str | Path) -> bool:
    """Whether ``spec`` reads as a DAG name (no extension, no folder) rather than a file path."""
    path = Path(spec)
    return bool(str(spec)) and len(path.parts) == 1 and not path.suffix


def shipped_dag_path(name: str) -> Path:
    """The file of the shipped DAG ``name`` (or an alias); a clear error lists the shipped ones.

    The package is installed on a file system (pip installs wheels so; editable installs map the
    repository's ``dags/``), so the resource is a real file whose path can be recorded in a run.
    """
    stem = DAG_ALIASES.get(name, name)
    resource = resources.files(DAGS_PACKAGE).joinpath(f"{stem}.yaml")
    if not is_shipped_name(stem) or not resource.is_file():
        known = ", ".join(shipped_dag_names()) or "none"
        aliases = ", ".join(f"{a} = {b}" for a, b in DAG_ALIASES.items())
        raise DAGError(
            f"no shipped DAG '{name}' (shipped: {known}; aliases: {aliases})",
            source=DAGS_PACKAGE,
        )
    return Path(str(resource))


# ---------------------------------------------------------------------- parsing
_NODE_KEYS = {"states", "parents", "rendered", "hidden", "description"}


def _check_states(
    name: str, states: Iterable[str], source: str | None, forbidden: str = ",="
) -> None:
    """Node and state names: non-empty, no ',' (CPT row keys join states by ','), no '=' in
    YAML files (BIF networks such as child.bif have states like '>=7.5')."""
    if not name or "," in name:
        raise DAGError("node names must be non-empty and contain no ','", source=source, node=name)
    seen: set[str] = set()
    for state in states:
        if not state or any(c in state for c in forbidden):
            raise DAGError(
                f"state '{state}' must be non-empty and contain no {' or '.join(forbidden)}",
                source=source,
                node=name,
            )
        if state in seen:
            raise DAGError(f"duplicate state '{state}'", source=source, node=name)
        seen.add(state)


def _parse_node(name: str, spec: Any, source: str) -> Node:
    if not isinstance(spec, Mapping):
        raise DAGError("node spec must be a mapping with 'states'", source=source, node=name)
    unknown = sorted(set(map(str, spec)) - _NODE_KEYS)
    if unknown:
        raise DAGError(f"unknown key '{unknown[0]}' in node spec", source=source, node=name)
    raw_states = spec.get("states")
    if not isinstance(raw_states, list) or len(raw_states) < 1:
        raise DAGError("'states' must be a non-empty list", source=source, node=name)
    if any(isinstance(s, (Mapping, list)) for s in raw_states):
        raise DAGError("'states' must be a list of names", source=source, node=name)
    states = tuple(_as_name(s) for s in raw_states)
    _check_states(name, states, source)
    raw_parents = spec.get("parents", []) or []
    if not isinstance(raw_parents, list) or any(
        isinstance(p, (Mapping, list)) for p in raw_parents
    ):
        raise DAGError("'parents' must be a list of node names", source=source, node=name)
    flags = {}
    for flag in ("rendered", "hidden"):
        value = spec.get(flag, False)
        if not isinstance(value, bool):
            raise DAGError(f"'{flag}' must be true or false", source=source, node=name)
        flags[flag] = value
    if flags["rendered"] and flags["hidden"]:
        raise DAGError("a node cannot be both rendered and hidden", source=source, node=name)
    return Node(name, states, tuple(_as_name(p) for p in raw_parents), **flags)


def _is_number(value: Any) -> bool:
    """A real number that is not a boolean (``true`` is no probability)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def _parse_row(value: Any, node: Node, label: str, source: str) -> np.ndarray:
    where: dict[str, Any] = {"source": source, "node": node.name}
    if not isinstance(value, list):
        raise DAGError(f"CPT row '{label}' must be a list of probabilities", **where)
    if len(value) != node.cardinality:
        raise DAGError(
            f"CPT row '{label}' has length {len(value)}, expected {node.cardinality} "
            f"(states: {', '.join(node.states)})",
            **where,
        )
    if not all(_is_number(v) for v in value):
        raise DAGError(f"CPT row '{label}' has a non-number", **where)
    try:
        row = np.array([float(v) for v in value], float)
    except OverflowError:
        raise DAGError(f"CPT row '{label}' has a number too large for a float", **where) from None
    if not np.all(np.isfinite(row)):
        raise DAGError(f"CPT row '{label}' is not finite", **where)
    return row


def _parse_cpt(node: Node, nodes: Mapping[str, Node], table: Any, source: str) -> np.ndarray:
    """A CPT from its file form; sizes are checked before anything is allocated."""
    from causalscene.dagio import check_table_entries

    where: dict[str, Any] = {"source": source, "node": node.name}
    parents = [nodes[p] for p in node.parents]
    cards = [p.cardinality for p in parents]
    check_table_entries(node.name, [*cards, node.cardinality], source)
    if not node.parents:
        if isinstance(table, Mapping):
            raise DAGError("a root's CPT is one row (a list), not a mapping", **where)
        return _parse_row(table, node, "(root)", source)
    if not isinstance(table, Mapping):
        raise DAGError(f"CPT must map parent states ({','.join(node.parents)}) to rows", **where)
    index = [{s: i for i, s in enumerate(p.states)} for p in parents]
    rows: dict[int, np.ndarray] = {}
    for raw_key, value in table.items():
        parts = [part.strip() for part in _as_name(raw_key).split(",")]
        key = ",".join(parts)
        if len(parts) != len(parents) or any(s not in i for s, i in zip(parts, index)):
            raise DAGError(
                f"extra CPT row '{key}' (rows are states of {','.join(node.parents)} joined by ',')",
                **where,
            )
        flat = int(np.ravel_multi_index([i[s] for s, i in zip(parts, index)], cards))
        if flat in rows:
            raise DAGError(f"CPT row '{key}' given twice", **where)
        rows[flat] = _parse_row(value, node, key, source)
    n_rows = math.prod(cards)
    if len(rows) < n_rows:
        filled = np.zeros(n_rows, bool)
        filled[list(rows)] = True
        first = np.unravel_index(int(np.argmin(filled)), cards)
        label = ",".join(p.states[i] for p, i in zip(parents, first))
        raise DAGError(f"missing CPT row '{label}'", **where)
    return np.stack([rows[i] for i in range(n_rows)]).reshape(*cards, node.cardinality)


def _check_rows(
    node: Node, rows: np.ndarray, label: Callable[[Node, int], str], source: str | None
) -> np.ndarray:
    """Check CPT rows ``[R, K]`` (finite, >= 0, sum 1 within :data:`TOLERANCE`); return them
    renormalised, so that a file's rounding (sachs.bif: 1 ± 1e-7) does not reach the answers.

    Rows already within ``4 K`` float epsilons of 1 are kept as they are, which makes loading
    idempotent (a saved and reloaded DAG has the same digest)."""
    where: dict[str, Any] = {"source": source, "node": node.name}
    bad = ~np.isfinite(rows).all(axis=1)
    if bad.any():
        raise DAGError(f"CPT row '{label(node, int(np.argmax(bad)))}' is not finite", **where)
    bad = (rows < 0).any(axis=1)
    if bad.any():
        first = label(node, int(np.argmax(bad)))
        raise DAGError(f"CPT row '{first}' has a negative probability", **where)
    totals = rows.sum(axis=1)
    off = np.abs(totals - 1.0)
    if (off > TOLERANCE).any():
        i = int(np.argmax(off > TOLERANCE))
        raise DAGError(
            f"CPT row '{label(node, i)}' sums to {totals[i]:.9g}, not 1 (tolerance {TOLERANCE:g})",
            **where,
        )
    rounding = 4 * rows.shape[1] * np.finfo(float).eps
    return np.where((off > rounding)[:, None], rows / totals[:, None], rows)
