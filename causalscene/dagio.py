"""Strict, bounded readers of DAG files: YAML and BIF (behind :meth:`CausalDAG.load`).

A DAG file may come from anyone, so reading one is bounded in every direction before anything
is allocated, and every fault is one :class:`~causalscene.dag.DAGError` naming the file, the
line and the fault (the CLI prints it and exits with status 2):

- files: at most :data:`MAX_FILE_BYTES` (after ``.gz`` decompression, read in bounded pieces);
- YAML (:class:`StrictYAMLLoader`, a ``yaml.SafeLoader``): no aliases or anchors (the "billion
  laughs" bomb), no merge keys, no duplicate keys at any level (PyYAML keeps the last silently),
  nesting at most :data:`MAX_YAML_DEPTH` deep, at most :data:`MAX_YAML_VALUES` values;
- CPTs: at most :data:`MAX_TABLE_ENTRIES` entries each, checked from the parents' state counts
  before a row is read;
- BIF (:func:`read_bif`): our own tokenizer and parser. Declared cardinality vs listed states
  vs row lengths, duplicate variables / blocks / rows, unknown variables and states, missing
  rows, ``table`` lengths are all checked. pgmpy's ``BIFReader`` builds the same network (checked
  on every BIF file shipped with pgmpy in the tests) but is lenient and slow (seconds per file).

BIF semantics follow pgmpy: ``(s1, s2) p...;`` is the row for parent states ``s1, s2``;
``table p...;`` lists all values with the child's state slowest and the last parent fastest;
``default p...;`` is the row of every parent combination not listed.
"""

from __future__ import annotations

import gzip
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from causalscene.dag import DAGError, Node, _as_name, _check_states, _DagLoader

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_TABLE_ENTRIES",
    "MAX_YAML_DEPTH",
    "MAX_YAML_VALUES",
    "StrictYAMLLoader",
    "load_yaml",
    "read_bif",
    "read_text",
    "check_table_entries",
]

#: largest DAG file read (bytes; for ``.gz`` files, after decompression)
MAX_FILE_BYTES = 32 * 2**20
#: largest CPT (entries: the product of the parents' and the node's state counts)
MAX_TABLE_ENTRIES = 10**7
#: deepest nesting of YAML collections (a DAG file needs 4)
MAX_YAML_DEPTH = 16
#: most YAML values (scalars and collections) in one file
MAX_YAML_VALUES = 500_000


def read_text(path: Path) -> str:
    """The file's text (UTF-8; ``.gz`` decompressed), at most :data:`MAX_FILE_BYTES`."""
    source = str(path)
    limit = f"over the limit of {MAX_FILE_BYTES:,} bytes"
    try:
        if path.suffix.lower() == ".gz":
            with gzip.open(path, "rb") as stream:
                raw = stream.read(MAX_FILE_BYTES + 1)
            limit += " once decompressed"
        else:
            if path.stat().st_size > MAX_FILE_BYTES:
                raise DAGError(f"file is {path.stat().st_size:,} bytes, {limit}", source=source)
            raw = path.read_bytes()
        if len(raw) > MAX_FILE_BYTES:
            raise DAGError(f"file is {limit}", source=source)
        return raw.decode("utf-8")
    except FileNotFoundError:
        raise DAGError("file not found", source=source) from None
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DAGError(f"cannot read file ({exc})".replace("\n", " "), source=source) from None


def check_table_entries(node: str, cards: list[int], source: str | None, line: int | None = None):
    """Refuse a CPT of more than :data:`MAX_TABLE_ENTRIES` entries (``cards``: parents', own)."""
    entries = math.prod(cards)
    if entries > MAX_TABLE_ENTRIES:
        raise DAGError(
            f"CPT would have {entries:,} entries (state counts {' x '.join(map(str, cards))}), "
            f"over the limit of {MAX_TABLE_ENTRIES:,}",
            source=source,
            node=node,
            line=line,
        )


# ------------------------------------------------------------------------------------ YAML
class StrictYAMLLoader(_DagLoader):
    """``_DagLoader`` (a ``yaml.SafeLoader``) without aliases, anchors, merge keys, duplicate
    keys or deep nesting; mapping keys become names (text), so ``1`` and ``true`` cannot meet."""

    def __init__(self, stream: str, source: str):
        super().__init__(stream)
        self.source = source
        self._depth = 0
        self._values = 0

    def _fault(self, mark: Any, fault: str) -> DAGError:
        return DAGError(fault, source=self.source, line=mark.line + 1 if mark else None)

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise self._fault(event.start_mark, f"YAML alias '*{event.anchor}' (not allowed)")
        if getattr(event, "anchor", None) is not None:
            raise self._fault(event.start_mark, f"YAML anchor '&{event.anchor}' (not allowed)")
        self._values += 1
        if self._values > MAX_YAML_VALUES:
            raise self._fault(event.start_mark, f"more than {MAX_YAML_VALUES:,} YAML values")
        if self._depth >= MAX_YAML_DEPTH:
            raise self._fault(event.start_mark, f"nesting deeper than {MAX_YAML_DEPTH} levels")
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        mapping: dict[Any, Any] = {}
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise self._fault(key_node.start_mark, "YAML merge key '<<' (not allowed)")
            if not isinstance(key_node, yaml.ScalarNode):
                raise self._fault(key_node.start_mark, "a mapping key must be a plain name")
            key = _as_name(self.construct_object(key_node))
            line = key_node.start_mark.line + 1
            if key in first_line:
                raise self._fault(
                    key_node.start_mark, f"duplicate key '{key}' (first on line {first_line[key]})"
                )
            first_line[key] = line
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping


def load_yaml(text: str, source: str) -> Any:
    """Parse a DAG file's YAML with :class:`StrictYAMLLoader` (one :class:`DAGError` per fault)."""
    loader = StrictYAMLLoader(text, source)
    try:
        return loader.get_single_data()
    except DAGError:
        raise
    except yaml.YAMLError as exc:
        raise DAGError(f"not valid YAML ({exc})".replace("\n", " "), source=source) from None
    except (ValueError, OverflowError) as exc:  # e.g. an integer of more than 4,300 digits
        raise DAGError(f"unreadable YAML value ({exc})".replace("\n", " "), source=source) from None
    finally:
        loader.dispose()


# ------------------------------------------------------------------------------------- BIF
_TOKEN = re.compile(
    r"""(?P<space>\s+)|(?P<comment>/\*.*?\*/|//[^\n]*)|(?P<string>"[^"\n]*")"""
    r"""|(?P<punct>[{}()\[\];,|])|(?P<word>(?:[^\s{}()\[\];,|"/]|/(?![/*]))+)""",
    re.S,
)
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER = re.compile(r"\d{1,9}")
# a run of numbers separated by spaces or single commas: each piece the same tokens as the
# tokenizer's (atomic groups: linear time, no backtracking on a hostile run)
_ONE = r"(?>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)"
_NUMBER_RUN = re.compile(rf"{_ONE}(?>(?>\s*,\s*|\s+){_ONE})*+\s*+", re.ASCII)


class _Tokens:
    """A token stream with one token of look-ahead; every token knows its line."""

    def __init__(self, text: str, source: str):
        self.source = source
        self.text = text
        self.line = 1
        self.peek: str | None = None
        self.peek_line = 1
        self.peek_start = 0  # where the look-ahead token starts in ``text``
        self._pos, self._pos_line = 0, 1  # where scanning resumes, and its line
        self._scan()

    def _scan(self) -> None:
        """Read the next token into ``peek`` (None at the end; its line stays the last's)."""
        text, pos, line = self.text, self._pos, self._pos_line
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if match is None:
                raise DAGError(f"unexpected character {text[pos]!r}", source=self.source, line=line)
            kind, end = match.lastgroup, match.end()
            if kind in ("word", "punct", "string"):
                # quoted text ("\0" first) is only allowed inside properties
                self.peek = match.group() if kind != "string" else "\0" + match.group()
                self.peek_line, self.peek_start = line, pos
                self._pos, self._pos_line = end, line + text.count("\n", pos, end)
                return
            line += text.count("\n", pos, end)
            pos = end
        self.peek, self.peek_start, self._pos, self._pos_line = None, pos, pos, line

    def number_run(self) -> tuple[str, int] | None:
        """The text from the look-ahead token up to the next ';' and that ';''s offset, when it
        is only numbers separated by spaces or single commas (else None; nothing is moved)."""
        if self.peek is None:
            return None
        end = self.text.find(";", self.peek_start)
        if end < 0 or not _NUMBER_RUN.fullmatch(self.text, self.peek_start, end):
            return None
        return self.text[self.peek_start : end], end

    def skip_to(self, offset: int, lines: int) -> None:
        """Move the look-ahead to the token at ``offset``, ``lines`` lines below the current."""
        self._pos, self._pos_line = offset, self.peek_line + lines
        self.line = self.peek_line
        self._scan()

    def advance(self) -> str | None:
        """Move on; returns the token moved past."""
        token, self.line = self.peek, self.peek_line
        self._scan()
        return token

    def fault(self, fault: str, line: int | None = None) -> DAGError:
        return DAGError(fault, source=self.source, line=line or self.peek_line)

    def expect(self, token: str) -> None:
        if self.peek != token:
            raise self.fault(f"expected '{token}', found {self.describe()}")
        self.advance()

    def name(self, what: str) -> str:
        token = self.peek
        if token is None or token[0] == "\0" or len(token) == 1 and token in "{}()[];,|":
            raise self.fault(f"expected {what}, found {self.describe()}")
        self.advance()
        return token

    def describe(self) -> str:
        return "the end of the file" if self.peek is None else f"'{self.peek.lstrip(chr(0))}'"

    def skip_property(self) -> None:
        """``property ... ;`` (its text is not used)."""
        self.expect("property")
        while self.peek not in (";", None):
            self.advance()
        self.expect(";")


class _BIF:
    """What a BIF file declares, checked as it is read (one pass, declarations before use)."""

    def __init__(self, tokens: _Tokens):
        self.t = tokens
        self.nodes: dict[str, Node] = {}
        self.lines: dict[str, int] = {}
        self.parents: dict[str, tuple[str, ...]] = {}
        self.cpts: dict[str, np.ndarray] = {}
        self.cpt_lines: dict[str, int] = {}

    def read(self) -> None:
        seen_network = False
        while self.t.peek is not None:
            keyword = self.t.peek
            if keyword == "network" and not seen_network:
                seen_network = True
                self.network()
            elif keyword == "variable":
                self.variable()
            elif keyword == "probability":
                self.probability()
            else:
                raise self.t.fault(
                    f"expected 'variable' or 'probability', found {self.t.describe()}"
                )
        if not self.nodes:
            raise self.t.fault("no variables")
        missing = [n for n in self.nodes if n not in self.cpts]
        if missing:
            raise DAGError("no probability block", source=self.t.source, node=missing[0])

    def network(self) -> None:
        self.t.advance()
        if self.t.peek != "{":
            self.t.name("the network's name")
        self.block_of_properties()

    def block_of_properties(self) -> None:
        self.t.expect("{")
        while self.t.peek == "property":
            self.t.skip_property()
        self.t.expect("}")

    def variable(self) -> None:
        self.t.advance()
        line = self.t.peek_line
        name = self.t.name("a variable name")
        if name in self.nodes:
            raise self.t.fault(
                f"variable '{name}' declared twice (first on line {self.lines[name]})", line
            )
        self.t.expect("{")
        states = None
        while self.t.peek != "}":
            if self.t.peek == "property":
                self.t.skip_property()
            elif self.t.peek == "type" and states is None:
                states = self.states(name)
            else:
                raise self.t.fault(
                    f"expected 'type', 'property' or '}}', found {self.t.describe()}"
                )
        self.t.expect("}")
        if states is None:
            raise self.t.fault(f"variable '{name}' has no 'type discrete [ N ] {{ ... }};'", line)
        self.nodes[name] = Node(name, states)
        self.lines[name] = line

    def states(self, name: str) -> tuple[str, ...]:
        self.t.expect("type")
        self.t.expect("discrete")
        self.t.expect("[")
        line = self.t.peek_line
        count = self.t.name("the number of states")
        if not _INTEGER.fullmatch(count) or int(count) < 1:
            raise self.t.fault(
                f"the number of states of '{name}' must be a positive integer, not '{count}'"
            )
        self.t.expect("]")
        self.t.expect("{")
        states = [self.t.name("a state name")]
        while self.t.peek != "}":
            if self.t.peek == ",":
                self.t.advance()
            if len(states) >= int(count):
                raise self.t.fault(
                    f"variable '{name}' declares {count} states but lists more", line
                )
            states.append(self.t.name("a state name"))
        self.t.expect("}")
        self.t.expect(";")
        if len(states) != int(count):
            raise self.t.fault(
                f"variable '{name}' declares {count} states but lists {len(states)}", line
            )
        _check_states(name, states, self.t.source, forbidden=",")
        return tuple(states)

    def declared(self, name: str, line: int) -> Node:
        if name not in self.nodes:
            raise self.t.fault(
                f"unknown variable '{name}' (variables are declared before their probabilities)",
                line,
            )
        return self.nodes[name]

    def probability(self) -> None:
        self.t.advance()
        line = self.t.peek_line
        self.t.expect("(")
        node = self.declared(self.t.name("a variable name"), line)
        parents: list[str] = []
        if self.t.peek == "|":
            self.t.advance()
            parents.append(self.t.name("a parent's name"))
            while self.t.peek == ",":
                self.t.advance()
                parents.append(self.t.name("a parent's name"))
        self.t.expect(")")
        if node.name in self.cpts:
            first = self.cpt_lines[node.name]
            raise self.t.fault(
                f"second probability block for '{node.name}' (first on line {first})", line
            )
        parent_nodes = [self.declared(p, line) for p in parents]
        cards = [p.cardinality for p in parent_nodes]
        check_table_entries(node.name, [*cards, node.cardinality], self.t.source, line)
        self.cpts[node.name] = _BIFTable(self, node, parent_nodes).read()
        self.cpt_lines[node.name] = line
        self.nodes[node.name] = Node(node.name, node.states, tuple(parents))


class _BIFTable:
    """The body ``{ ... }`` of one probability block: rows, ``table`` or ``default``."""

    def __init__(self, bif: _BIF, node: Node, parents: list[Node]):
        self.t = bif.t
        self.node = node
        self.parents = parents
        self.cards = [p.cardinality for p in parents]
        self.n_rows = math.prod(self.cards)
        self.index = [{s: i for i, s in enumerate(p.states)} for p in parents]
        self.rows: dict[int, tuple[np.ndarray, int]] = {}
        self.table: np.ndarray | None = None
        self.default: np.ndarray | None = None

    def read(self) -> np.ndarray:
        self.t.expect("{")
        while self.t.peek != "}":
            keyword, line = self.t.peek, self.t.peek_line
            if keyword == "property":
                self.t.skip_property()
            elif keyword == "(":
                self.row()
            elif keyword in ("table", "default"):
                self.t.advance()
                if getattr(self, keyword) is not None:
                    raise self.t.fault(f"'{keyword}' given twice for '{self.node.name}'", line)
                size = self.node.cardinality * (self.n_rows if keyword == "table" else 1)
                setattr(self, keyword, self.numbers(size, f"'{keyword}' of '{self.node.name}'"))
            else:
                raise self.t.fault(
                    f"expected '(', 'table', 'default' or '}}', found {self.t.describe()}"
                )
        self.t.expect("}")
        return self.assemble()

    def row(self) -> None:
        line = self.t.peek_line
        self.t.expect("(")
        states: list[str] = []
        while self.t.peek != ")":
            if states:
                self.t.expect(",")
            states.append(self.t.name("a parent's state"))
            if len(states) > len(self.parents):
                break
        label = f"({', '.join(states)})"
        if len(states) != len(self.parents):
            raise self.t.fault(
                f"row {label} of '{self.node.name}' names {len(states)} states, "
                f"expected {len(self.parents)} (one per parent)",
                line,
            )
        self.t.expect(")")
        flat = 0
        for parent, index, state in zip(self.parents, self.index, states):
            if state not in index:
                raise self.t.fault(
                    f"row {label} of '{self.node.name}': unknown state '{state}' of '{parent.name}'",
                    line,
                )
            flat = flat * parent.cardinality + index[state]
        if flat in self.rows:
            first = self.rows[flat][1]
            raise self.t.fault(
                f"row {label} of '{self.node.name}' given twice (first on line {first})", line
            )
        self.rows[flat] = (
            self.numbers(self.node.cardinality, f"row {label} of '{self.node.name}'"),
            line,
        )

    def numbers(self, count: int, what: str) -> np.ndarray:
        """``count`` numbers separated by ',' or spaces, then ';': read in one piece when they
        are well formed, finite and as many as expected, else token by token (which says why)."""
        run = self.t.number_run()
        if run is not None:
            pieces = run[0].replace(",", " ").split()
            if len(pieces) == count:
                values = np.array(pieces, dtype=float)
                if np.isfinite(values).all():
                    self.t.skip_to(run[1], run[0].count("\n"))
                    self.t.expect(";")
                    return values
        return self.numbers_one_by_one(count, what)

    def numbers_one_by_one(self, count: int, what: str) -> np.ndarray:
        line = self.t.peek_line
        values: list[float] = []
        while self.t.peek != ";":
            if values and self.t.peek == ",":
                self.t.advance()
            token = self.t.peek
            if token is None or not _NUMBER.fullmatch(token):
                raise self.t.fault(f"{what}: expected a number, found {self.t.describe()}")
            value = float(token)
            if not math.isfinite(value):
                raise self.t.fault(f"{what}: {token} is not a finite number")
            values.append(value)
            self.t.advance()
            if len(values) > count:
                break
        if len(values) != count:
            found = f"more than {count}" if len(values) > count else str(len(values))
            raise self.t.fault(f"{what} has {found} values, expected {count}", line)
        self.t.expect(";")
        return np.array(values)

    def assemble(self) -> np.ndarray:
        card = self.node.cardinality
        if self.table is not None:
            if self.rows or self.default is not None:
                raise self.t.fault(f"'{self.node.name}' has both 'table' and rows")
            return self.table.reshape(card, self.n_rows).T.reshape(*self.cards, card)
        out = np.empty((self.n_rows, card))
        filled = np.zeros(self.n_rows, bool)
        for flat, (values, _) in self.rows.items():
            out[flat] = values
            filled[flat] = True
        if not filled.all():
            if self.default is None:
                first = np.unravel_index(int(np.argmin(filled)), self.cards)
                label = ", ".join(p.states[i] for p, i in zip(self.parents, first))
                raise DAGError(f"missing row ({label})", source=self.t.source, node=self.node.name)
            out[~filled] = self.default
        return out.reshape(*self.cards, card)


def read_bif(text: str, source: str) -> tuple[list[Node], dict[str, np.ndarray]]:
    """The nodes (declaration order) and CPTs ``[*parent cards, card]`` of a BIF network."""
    bif = _BIF(_Tokens(text, source))
    bif.read()
    return list(bif.nodes.values()), bif.cpts
