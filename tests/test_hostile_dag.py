"""Hostile DAG files: every malformed YAML or BIF file gives one clean one-line ``DAGError``
(the CLI: exit 2, one stderr line) or loads the DAG the file means; nothing hangs or crashes.

The fuzzer writes files from the shipped YAML DAGs and small BIF networks of pgmpy through
emitters of our own, in three kinds: *planted* faults (must be refused: a load is a silently
accepted corruption), *meaning-preserving* rewrites (must load the same DAG) and *random* edits
of the text (either outcome; a DAG that loads must be valid and round-trip)."""

from __future__ import annotations

import gzip
import json
import random
import signal
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pgmpy
import pytest

from causalscene import queries
from causalscene.cli import main
from causalscene.dag import CausalDAG, DAGError

PGMPY_MODELS = Path(pgmpy.__file__).parent / "utils" / "example_models"
SMALL_BIF = ["asia", "cancer", "earthquake", "survey", "sachs"]
SHIPPED = ["faces", "rpg_fight", "mog", "morpho"]
PARSE_SECONDS = 2.0


def bif_source(name: str) -> str:
    return gzip.decompress((PGMPY_MODELS / f"{name}.bif.gz").read_bytes()).decode()


# ------------------------------------------------------------------------- YAML emitter
class M(list):
    """A YAML mapping as (key, value) pairs, so that a key can be planted twice."""


class Raw(str):
    """A value written as it is (YAML text)."""


def pairs(obj):
    return M((k, pairs(v)) for k, v in obj.items()) if isinstance(obj, dict) else obj


def leaf(v) -> str:
    if isinstance(v, Raw):
        return str(v)
    if isinstance(v, list):
        return "[" + ", ".join(leaf(x) for x in v) + "]"
    return json.dumps(v)


def emit(m: M, indent: int = 0) -> list[str]:
    lines = []
    for k, v in m:
        key = " " * indent + json.dumps(str(k)) + ":"
        if isinstance(v, M) and v:
            lines += [key, *emit(v, indent + 2)]
        else:
            lines.append(f"{key} {'{}' if isinstance(v, M) else leaf(v)}")
    return lines


def get(m: M, key):
    return next(v for k, v in m if k == key)


def child_rows(data: M, rng: random.Random):
    """(node name, its CPT pairs) of a random node with parents."""
    cpts = get(data, "cpts")
    return rng.choice([(k, v) for k, v in cpts if isinstance(v, M)])


def set_entry(data: M, rng: random.Random, value) -> None:
    _, rows = child_rows(data, rng)
    i = rng.randrange(len(rows))
    key, row = rows[i]
    row = list(row)
    row[rng.randrange(len(row))] = value
    rows[i] = (key, row)


def _yaml_faults():
    def dup_node(d, r):
        nodes = get(d, "nodes")
        name, spec = r.choice(nodes)
        nodes.append(
            (name, M([*spec, ("rendered", True)][-1:] + [("states", get(spec, "states"))]))
        )

    def dup_cpt(d, r):
        name, table = r.choice(get(d, "cpts"))
        get(d, "cpts").append((name, table))

    def dup_row(d, r):
        _, rows = child_rows(d, r)
        key, row = r.choice(rows)
        rows.append((key, row[::-1]))

    def dup_field(d, r):
        _, spec = r.choice(get(d, "nodes"))
        spec.append(("states", get(spec, "states")))

    def bomb(d, r):
        depth, width = r.randint(3, 9), r.randint(2, 9)
        lines = ["a0: &a0 [lol]"] + [
            f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, depth)
        ]
        d.insert(0, ("x", Raw("1")))  # placeholder; the bomb is prepended as text below
        d.bomb = "\n".join(lines)

    def deep(d, r):
        n = r.choice([17, 50, 1000, 3000])
        nest = r.choice([("[" * n, "]" * n), ("{a: " * n, "}" * n)])
        set_entry(d, r, Raw(nest[0] + "0.5" + nest[1]))

    def anchor(d, r):
        set_entry(d, r, Raw("&x 0.5"))

    def bad_number(d, r):
        bad = ["true", "false", '"0.5"', ".nan", ".inf", "-.inf", "1.0e+400", "1" + "0" * 400]
        bad += ["9" * 5000, "null", "[0.5]", "{}", "-0.1", "2.0", "0x10"]
        set_entry(d, r, Raw(r.choice(bad)))

    def missing_row(d, r):
        _, rows = child_rows(d, r)
        rows.pop(r.randrange(len(rows)))

    def extra_row(d, r):
        _, rows = child_rows(d, r)
        key, row = r.choice(rows)
        rows.append((key.split(",")[0] + "_bogus" + key[len(key.split(",")[0]) :], row))

    def row_length(d, r):
        _, rows = child_rows(d, r)
        i = r.randrange(len(rows))
        rows[i] = (rows[i][0], rows[i][1] + [0.0] if r.random() < 0.5 else rows[i][1][:-1])

    def off_sum(d, r):
        _, rows = child_rows(d, r)
        i = r.randrange(len(rows))
        rows[i] = (rows[i][0], [x * 1.01 + 0.001 for x in rows[i][1]])

    def cycle(d, r):
        nodes = dict(get(d, "nodes"))
        child = r.choice([n for n, s in nodes.items() if any(k == "parents" for k, _ in s)])
        parent = get(nodes[child], "parents")[0]
        spec = nodes[parent]
        spec[:] = [(k, v) for k, v in spec if k != "parents"] + [("parents", [child])]

    def many_parents(d, r):
        k = r.randint(2, 30)
        nodes, cpts = get(d, "nodes"), get(d, "cpts")
        for i in range(k):
            nodes.append((f"p{i}", M([("states", ["a", "b"])])))
            cpts.append((f"p{i}", [0.5, 0.5]))
        name, spec = r.choice(nodes[:-k])
        spec[:] = [(a, b) for a, b in spec if a != "parents"] + [
            ("parents", [f"p{i}" for i in range(k)])
        ]
        states = get(spec, "states")
        row = [1.0] + [0.0] * (len(states) - 1)
        cpts[:] = [(a, b) for a, b in cpts if a != name] + [(name, M([(",".join("a" * k), row)]))]

    def bad_flag(d, r):
        _, spec = r.choice(get(d, "nodes"))
        spec[:] = [(k, v) for k, v in spec if k not in ("rendered", "hidden")]
        spec.append(r.choice([("rendered", "yes"), ("hidden", 1), ("colour", "red")]))

    def dup_state(d, r):
        _, spec = r.choice(get(d, "nodes"))
        states = get(spec, "states")
        spec[:] = [(k, v) for k, v in spec if k != "states"] + [("states", states + states[:1])]

    return [dup_node, dup_cpt, dup_row, dup_field, bomb, deep, anchor, bad_number, missing_row,
            extra_row, row_length, off_sum, cycle, many_parents, bad_flag, dup_state]  # fmt: skip


def yaml_text(data: M) -> str:
    return getattr(data, "bomb", "") + "\n" + "\n".join(emit(data)) + "\n"


def _yaml_preserving(data: M, r: random.Random) -> str:
    kind = r.randrange(4)
    if kind == 0:  # order of nodes, CPTs and rows
        for _, v in list(data):
            if isinstance(v, M):
                r.shuffle(v)
                for _, w in v:
                    if isinstance(w, M) and all(isinstance(x, list) for _, x in w):
                        r.shuffle(w)
        return yaml_text(data)
    if kind == 1:  # comments and blank lines
        lines = yaml_text(data).splitlines()
        return "\n".join(x + ("  # note" if r.random() < 0.3 else "") for x in lines) + "\n"
    if kind == 2:  # JSON is YAML
        return json.dumps(_plain(data), indent=r.choice([None, 1]))
    for _, table in get(data, "cpts"):  # numbers written in exponent form
        rows = table if isinstance(table, M) else [(None, table)]
        for i, (k, row) in enumerate(rows):
            written = [Raw(format(x, ".17e")) for x in row]
            if isinstance(table, M):
                table[i] = (k, written)
            else:
                table[:] = written
    return yaml_text(data)


def _plain(m):
    return {k: _plain(v) for k, v in m} if isinstance(m, M) else m


# -------------------------------------------------------------------------- BIF emitter
def bif_parts(dag: CausalDAG) -> tuple[list, list]:
    variables = [[n, len(dag.states(n)), list(dag.states(n))] for n in dag.nodes]
    probs = []
    for n in dag.nodes:
        table = dag.cpt(n).reshape(-1, dag.cardinality(n))
        labels = [x.split(",") for x in dag._row_labels(dag.node(n))]
        rows = [
            [lab if dag.parents(n) else None, list(map(float, row))]
            for lab, row in zip(labels, table)
        ]
        probs.append([n, list(dag.parents(n)), rows, None])
    return variables, probs


def bif_text(variables, probs, sep=", ", extra="") -> str:
    out = ["network unknown {", "}"]
    for name, count, states in variables:
        out += [
            f"variable {name} {{",
            f"  type discrete [ {count} ] {{ {', '.join(states)} }};",
            extra + "}",
        ]
    for name, parents, rows, table in probs:
        head = f"probability ( {name}{' | ' + ', '.join(parents) if parents else ''} ) {{"
        body = [f"  table {sep.join(map(repr, table))};"] if table is not None else []
        for lab, vals in rows:
            key = f"({', '.join(lab)}) " if lab is not None else "table "
            body.append(f"  {key}{sep.join(map(repr, vals))};")
        out += [head, *body, "}"]
    return "\n".join(out) + "\n"


def _bif_faults():
    def child(p, r):
        return r.choice([x for x in p if x[1]])

    def cardinality(v, p, r):
        entry = r.choice(v)
        entry[1] = r.choice([entry[1] + 1, entry[1] - 1, 10**12, 0, -1, "x"])

    def conflicting_row(v, p, r):
        _, _, rows, _ = child(p, r)
        lab, vals = r.choice(rows)
        rows.append([lab, vals[::-1] if vals[::-1] != vals else vals])

    def dup_block(v, p, r):
        p.append(list(r.choice(p)))

    def dup_variable(v, p, r):
        v.append(list(r.choice(v)))

    def unknown_variable(v, p, r):
        entry = r.choice(p)
        if r.random() < 0.5 or not entry[1]:
            entry[0] = entry[0] + "_x"
        else:
            entry[1] = [entry[1][0] + "_x", *entry[1][1:]]

    def unknown_state(v, p, r):
        _, _, rows, _ = child(p, r)
        rows[0] = [[rows[0][0][0] + "_x", *rows[0][0][1:]], rows[0][1]]

    def row_states(v, p, r):
        _, _, rows, _ = child(p, r)
        lab = rows[0][0]
        rows[0] = [lab[:-1] if r.random() < 0.5 else lab + lab[:1], rows[0][1]]

    def row_values(v, p, r):
        _, _, rows, _ = r.choice(p)
        vals = rows[0][1]
        rows[0] = [rows[0][0], vals + [0.0] if r.random() < 0.5 else vals[:-1]]

    def missing_row(v, p, r):
        _, _, rows, _ = child(p, r)
        rows.pop(r.randrange(len(rows)))

    def missing_block(v, p, r):
        p.pop(r.randrange(len(p)))

    def bad_number(v, p, r):
        _, _, rows, _ = r.choice(p)
        vals = list(rows[0][1])
        vals[0] = Raw(
            r.choice(["nan", "inf", "-inf", "1e999", "abc", "0x1p-1", "1_0", "--1", "1e"])
        )
        rows[0] = [rows[0][0], vals]

    def off_sum(v, p, r):
        _, _, rows, _ = r.choice(p)
        rows[0] = [rows[0][0], [x * 1.01 + 0.001 for x in rows[0][1]]]

    def bad_table(v, p, r):
        entry = r.choice(p)
        flat = np.array([x[1] for x in entry[2]]).T.ravel().tolist()
        entry[3] = flat[:-1] if r.random() < 0.5 else flat
        entry[2] = [] if entry[3] is flat[:-1] else entry[2]

    def many_parents(v, p, r):
        k = r.randint(2, 30)
        v += [[f"p{i}", 2, ["a", "b"]] for i in range(k)]
        p += [[f"p{i}", [], [[None, [0.5, 0.5]]], None] for i in range(k)]
        entry = r.choice(p[:-k])
        card = len(entry[2][0][1])
        entry[1], entry[2] = [f"p{i}" for i in range(k)], [[["a"] * k, [1.0] + [0.0] * (card - 1)]]

    return [cardinality, conflicting_row, dup_block, dup_variable, unknown_variable, unknown_state,
            row_states, row_values, missing_row, missing_block, bad_number, off_sum, bad_table,
            many_parents]  # fmt: skip


def _bif_preserving(v, p, r: random.Random) -> str:
    kind = r.randrange(4)
    if kind == 0:
        for entry in p:
            r.shuffle(entry[2])
        r.shuffle(p)
        return bif_text(v, p)
    if kind == 1:
        text = bif_text(v, p, extra='  property "a } b" ;\n')
        return "\n".join(
            x + (" /* c */ // d" if r.random() < 0.3 else "") for x in text.splitlines()
        )
    if kind == 2:
        return bif_text(v, p, sep=r.choice(["  ", " ,\t", ",\n"]))
    for entry in p:  # rows as one table: child's state slowest
        if entry[1] and r.random() < 0.7:
            entry[3] = np.array([x[1] for x in entry[2]]).T.ravel().tolist()
            entry[2] = []
    return bif_text(v, p)


# ---------------------------------------------------------------------------- harness
class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang


def outcome(path: Path):
    """('error', message) | ('dag', CausalDAG) | ('hang' | 'crash', text), parsed under a timer."""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, PARSE_SECONDS)
    try:
        return "dag", CausalDAG.load(path)
    except DAGError as exc:
        return "error", str(exc)
    except Hang:
        return "hang", str(path)
    except Exception as exc:  # any other kind is a defect the test counts
        return "crash", f"{type(exc).__name__}: {exc}"[:300]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def same_dag(a: CausalDAG, b: CausalDAG) -> bool:
    if set(a.nodes) != set(b.nodes):
        return False
    for n in a.nodes:
        x, y = a.node(n), b.node(n)
        if (x.states, x.parents, x.rendered, x.hidden) != (
            y.states,
            y.parents,
            y.rendered,
            y.hidden,
        ):
            return False
        if not np.allclose(a.cpt(n), b.cpt(n), rtol=0, atol=1e-12):
            return False
    return True


def valid(dag: CausalDAG) -> bool:
    rows_ok = all(np.abs(dag.cpt(n).sum(-1) - 1).max() < 1e-12 for n in dag.nodes)
    again = CausalDAG.from_dict(dag.to_dict(), source="again")
    return rows_ok and again.digest() == dag.digest()


def random_edit(text: str, r: random.Random) -> str:
    for _ in range(r.randint(1, 3)):
        lines = text.splitlines(keepends=True)
        op, i = r.randrange(6), r.randrange(max(len(text), 1))
        if op == 0:
            text = text[:i] + text[i + 1 :]
        elif op == 1:
            text = text[:i] + r.choice(':[]{},&*!|>-#"\n ()/;.0123456789eaz') + text[i:]
        elif op in (2, 3) and lines:
            j = r.randrange(len(lines))
            lines.insert(j, lines[j]) if op == 2 else lines.pop(j)
            text = "".join(lines)
        elif len(lines) > 1:
            j = r.randrange(len(lines) - 1)
            lines[j], lines[j + 1] = lines[j + 1], lines[j]
            text = "".join(lines)
    return text


def _cases(tmp: Path):
    """(kind, path, reference DAG or None) for every fuzzed file."""
    r = random.Random(0)
    cases = []

    def write(text: str, suffix: str) -> Path:
        path = tmp / f"f{len(cases)}{suffix}"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        return path

    for name in SHIPPED:
        dag = CausalDAG.shipped(name)
        base = CausalDAG.from_dict(dag.to_dict(), source="base")
        for fault in _yaml_faults():
            for _ in range(9):
                data = pairs(dag.to_dict())
                fault(data, r)
                cases.append(("planted", write(yaml_text(data), ".yaml"), fault.__name__))
        for _ in range(25):
            cases.append(("same", write(_yaml_preserving(pairs(dag.to_dict()), r), ".yaml"), base))
        for _ in range(40):
            cases.append(
                ("random", write(random_edit(yaml_text(pairs(dag.to_dict())), r), ".yaml"), None)
            )
    for name in SMALL_BIF:
        dag = CausalDAG.from_bif(PGMPY_MODELS / f"{name}.bif.gz")
        for fault in _bif_faults():
            for _ in range(7):
                v, p = json.loads(json.dumps(bif_parts(dag)))
                fault(v, p, r)
                cases.append(("planted", write(bif_text(v, p), ".bif"), fault.__name__))
        for _ in range(25):
            v, p = json.loads(json.dumps(bif_parts(dag)))
            cases.append(("same", write(_bif_preserving(v, p, r), ".bif"), dag))
        for _ in range(40):
            cases.append(("random", write(random_edit(bif_source(name), r), ".bif"), None))
    return cases


def test_fuzzed_dag_files_give_clean_errors_or_the_meant_dag(tmp_path, capsys):
    cases = _cases(tmp_path)
    counts: Counter = Counter()
    problems = []
    for i, (kind, path, ref) in enumerate(cases):
        result, value = outcome(path)
        counts[kind, result] += 1
        if result in ("hang", "crash"):
            problems.append((result, path.name, value))
        elif result == "error" and ("\n" in value or not value.startswith(str(path))):
            problems.append(("message", path.name, value))
        elif kind == "planted" and result == "dag":
            problems.append(("accepted", path.name, ref))
        elif kind == "same" and (result != "dag" or not same_dag(value, ref)):
            problems.append(("changed", path.name, value if result == "error" else ""))
        elif kind == "random" and result == "dag" and not valid(value):
            problems.append(("invalid", path.name, ""))
        if result == "error" and i % 25 == 0:  # a sample through the CLI
            assert main(["dag", "check", str(path)]) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and "Traceback" not in err, err
    print(
        f"fuzzed {len(cases)} files: "
        + ", ".join(f"{k}/{o}={n}" for (k, o), n in sorted(counts.items()))
    )
    assert len(cases) >= 1000
    assert counts["planted", "error"] >= 500 and counts["same", "dag"] >= 150
    assert not problems, problems[:10]


def test_cli_prints_one_line_for_a_bomb_in_a_fresh_process(tmp_path):
    import subprocess
    import sys

    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(_laughs(9, 9))
    done = subprocess.run(
        [sys.executable, "-m", "causalscene.cli", "dag", "check", str(bomb)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "YAML anchor" in done.stderr, done.stderr


# ------------------------------------------------------------------- named regressions
def _laughs(depth: int, width: int) -> str:
    lines = ["a0: &a0 [lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, depth)]
    body = "nodes:\n  x: {states: *a%d, parents: *a%d}\ncpts: {}\nname: *a%d\ndescription: *a%d\n"
    return "\n".join(lines) + "\n" + body % ((depth - 1,) * 4)


def test_alias_bomb_is_refused_in_well_under_a_second(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(_laughs(9, 9))
    start = time.perf_counter()
    with pytest.raises(DAGError, match=r"bomb\.yaml:1: YAML anchor '&a0' \(not allowed\)"):
        CausalDAG.load(path)
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize("opener,closer", [("[", "]"), ("{a: ", "}")])
def test_deep_nesting_is_refused(tmp_path, opener, closer):
    path = tmp_path / "deep.yaml"
    path.write_text("nodes: " + opener * 1000 + "1" + closer * 1000 + "\n")
    with pytest.raises(DAGError, match="nesting deeper than 16 levels"):
        CausalDAG.load(path)


TINY = """nodes:
  a: {states: [x, y], rendered: true}
  b: {states: [p, q], parents: [a]}
cpts:
  a: [0.5, 0.5]
  b:
    x: [0.1, 0.9]
    y: [0.7, 0.3]
"""


@pytest.mark.parametrize(
    "edit,message",
    [
        (
            ("  b: {", "  a: {states: [x, y], rendered: false}\n  b: {"),
            ":3: duplicate key 'a' (first on line 2)",
        ),
        (
            ("    y: [0.7", "    x: [0.2, 0.8]\n    y: [0.7"),
            ":8: duplicate key 'x' (first on line 7)",
        ),
        (("  b:\n", "  a: [0.4, 0.6]\n  b:\n"), ":6: duplicate key 'a' (first on line 5)"),
        (("rendered: true}", "rendered: true, rendered: false}"), ":2: duplicate key 'rendered'"),
        (("[0.1, 0.9]", "[true, false]"), "node 'b': CPT row 'x' has a non-number"),
        (("[0.1, 0.9]", "[1" + "0" * 400 + ", 0]"), "node 'b': CPT row 'x' has a number too large"),
        (("[0.1, 0.9]", "[1" + "0" * 5000 + ", 0]"), "unreadable YAML value"),
    ],
)
def test_yaml_faults_of_the_audit(tmp_path, edit, message):
    path = tmp_path / "tiny.yaml"
    assert edit[0] in TINY
    path.write_text(TINY.replace(edit[0], edit[1], 1))
    with pytest.raises(DAGError) as info:
        CausalDAG.load(path)
    assert str(info.value).startswith(str(path)) and message in str(info.value), str(info.value)


@pytest.mark.parametrize("k", [20, 24])
def test_many_parents_and_one_row_is_refused_before_allocation(tmp_path, k):
    parents = [f"p{i}" for i in range(k)]
    nodes = {p: {"states": ["a", "b"]} for p in parents} | {
        "c": {"states": ["u", "v"], "parents": parents}
    }
    cpts = {p: [0.5, 0.5] for p in parents} | {"c": {",".join("a" * k): [1.0, 0.0]}}
    path = tmp_path / "wide.yaml"
    path.write_text(json.dumps({"nodes": nodes, "cpts": cpts}))
    start = time.perf_counter()
    expected = "over the limit of 10,000,000" if 2 ** (k + 1) > 10**7 else "missing CPT row 'a,a,"
    with pytest.raises(DAGError, match=expected):
        CausalDAG.load(path)
    assert time.perf_counter() - start < 2.0


def _asia(tmp_path, old: str, new: str) -> Path:
    text = bif_source("asia")
    assert old in text
    path = tmp_path / "asia.bif"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(
    "old,new,message",
    [
        (
            "  (no) 0.01, 0.99;\n}",
            "  (no) 0.01, 0.99;\n  (no) 0.5, 0.5;\n}",
            "asia.bif:33: row (no) of 'tub' given twice (first on line 32)",
        ),
        (
            "[ 2 ] { yes, no };\n}\nvariable tub",
            "[ 3 ] { yes, no };\n}\nvariable tub",
            "variable 'asia' declares 3 states but lists 2",
        ),
        (
            "[ 2 ] { yes, no };\n}\nvariable tub",
            "[ 99999999999 ] { yes, no };\n}\nvariable tub",
            "must be a positive integer",
        ),
        (
            "probability ( asia ) {",
            "probability ( asia ) {\n  table 0.5, 0.5;\n}\nprobability ( asia ) {",
            "second probability block for 'asia'",
        ),
        (
            "(yes) 0.05, 0.95;",
            "(yes) 0.05, 0.95, 0.0;",
            "row (yes) of 'tub' has more than 2 values",
        ),
        ("( tub | asia )", "( tub | asai )", "unknown variable 'asai'"),
        ("(yes) 0.05, 0.95;", "(maybe) 0.05, 0.95;", "unknown state 'maybe' of 'asia'"),
        ("(yes) 0.05, 0.95;", "(yes) 0.05, 1e999;", "1e999 is not a finite number"),
        # the number runs read in one piece (dagio._NUMBER_RUN) fall back to token by token
        ("(yes) 0.05, 0.95;", "(yes) 0.05;", "asia.bif:31: row (yes) of 'tub' has 1 values, "),
        ("(yes) 0.05, 0.95;", "(yes) 0.05, 0.95,;", "expected a number, found ';'"),
        ("(yes) 0.05, 0.95;", "(yes) 0.05,, 0.95;", "expected a number, found ','"),
        ("(yes) 0.05, 0.95;", "(yes) 0.05 0.9.5;", "expected a number, found '0.9.5'"),
        (
            "(yes) 0.05, 0.95;",
            "(yes) 0.05,\n 0.95;\n  (no)\n 0.5, 0.5;",
            "asia.bif:35: row (no) of 'tub' given twice (first on line 33)",
        ),
    ],
)
def test_bif_faults_of_the_audit(tmp_path, old, new, message):
    path = _asia(tmp_path, old, new)
    with pytest.raises(DAGError) as info:
        CausalDAG.load(path)
    assert str(info.value).startswith(str(path)) and message in str(info.value), str(info.value)


def test_comments_and_line_breaks_inside_a_row_read_as_the_plain_row(tmp_path):
    plain = CausalDAG.from_bif(PGMPY_MODELS / "asia.bif.gz")
    new = "(yes) 0.05, /* a comment */ 0.95 // another\n;"
    other = CausalDAG.load(_asia(tmp_path, "(yes) 0.05, 0.95;", new))
    assert other.digest() == plain.digest()


def test_a_long_bad_number_run_is_refused_in_well_under_a_second(tmp_path):
    path = _asia(tmp_path, "(yes) 0.05, 0.95;", "(yes) " + "0.5, " * 10**6 + "x;")
    start = time.perf_counter()
    with pytest.raises(DAGError, match="row .yes. of 'tub' has more than 2 values"):
        CausalDAG.load(path)
    assert time.perf_counter() - start < 1.0


def test_asia_with_a_conflicting_duplicate_row_would_change_the_answer(tmp_path):
    """The planted row is not harmless: the file without the first (no) row answers 0.5."""
    dag = CausalDAG.from_bif(PGMPY_MODELS / "asia.bif.gz")
    exact = queries.condition(dag, ["tub"], {"asia": "no"}).probs
    np.testing.assert_allclose(exact, [0.01, 0.99])
    other = CausalDAG.load(_asia(tmp_path, "(no) 0.01, 0.99;", "(no) 0.5, 0.5;"))
    assert queries.condition(other, ["tub"], {"asia": "no"}).probs[0] == pytest.approx(0.5)


def test_sachs_rows_are_renormalised(tmp_path):
    raw = bif_source("sachs")
    block = raw.split("probability ( Akt | Erk, PKA )")[1]
    first = [float(x) for x in block.split("(HIGH, LOW)")[1].split(";")[0].split(",")]
    assert abs(sum(first) - 1) > 5e-8  # the file's rounding, which renormalisation removes
    dag = CausalDAG.from_bif(PGMPY_MODELS / "sachs.bif.gz")
    for node in dag.nodes:
        assert np.abs(dag.cpt(node).sum(-1) - 1).max() <= 1e-15, node
    np.testing.assert_allclose(
        dag.cpt("Akt")[2, 0], np.array(first) / sum(first), rtol=0, atol=1e-16
    )
    # loading is idempotent: saved and reloaded, the digest stays
    again = CausalDAG.from_dict(dag.to_dict(), source="again")
    assert again.digest() == dag.digest()


@pytest.mark.parametrize("name", ["asia", "sachs"])
def test_bif_reader_matches_pgmpy(name):
    _cross_check(name)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    sorted(
        p.name[: -len(".bif.gz")]
        for p in PGMPY_MODELS.glob("*.bif.gz")
        if p.name.split(".")[0] not in ("asia", "sachs")
    ),
)
def test_bif_reader_matches_pgmpy_on_every_shipped_network(name):
    _cross_check(name)


def _cross_check(name: str) -> None:
    """Same nodes, order, states, parents; CPTs equal to 1e-12 (pgmpy's renormalised the same)."""
    from pgmpy.readwrite import BIFReader

    ours = CausalDAG.from_bif(PGMPY_MODELS / f"{name}.bif.gz")
    model = BIFReader(string=bif_source(name)).get_model()
    for node in model.nodes():
        cpd = model.get_cpds(node)
        assert ours.parents(node) == tuple(cpd.variables[1:])
        assert ours.states(node) == tuple(cpd.state_names[node])
        values = np.asarray(cpd.get_values(), float)
        values = values / values.sum(0)
        expected = values.T.reshape(ours.cpt(node).shape)
        np.testing.assert_allclose(ours.cpt(node), expected, rtol=0, atol=1e-12)
    assert ours.nodes == [str(n) for n in model.nodes()] or set(ours.nodes) == set(model.nodes())


def test_sample_counts_are_bounded(capsys):
    dag = CausalDAG.shipped("rpg_fight")
    for n in (10**9, 0, -5, 2.5):
        with pytest.raises(DAGError, match="num_samples must be an integer from 1 to 10,000,000"):
            queries.counterfactual(
                dag,
                ["reaction"],
                {"action": "attack"},
                {"actor": "golem"},
                noise="gumbel",
                num_samples=n,
            )
    with pytest.raises(DAGError, match="n must be an integer from 0 to 10,000,000"):
        dag.sample(10**9)
    argv = [
        "query",
        "rpg",
        "--variables",
        "reaction",
        "--factual",
        "action=attack",
        "--do",
        "actor=golem",
    ]
    assert main([*argv, "--noise", "gumbel", "--num-samples", "1000000000"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--num-samples" in err and "10000000" in err.replace(",", "")


def test_improbable_evidence_and_huge_joint_tables_are_refused():
    path = PGMPY_MODELS / "alarm.bif.gz"
    dag = CausalDAG.from_bif(path)
    with pytest.raises(DAGError, match="over the limit of 10,000,000"):
        queries.condition(dag, dag.nodes[:20], {})
    codes = {
        n: dag.states(n)[int(np.argmin(queries.condition(dag, [n], {}).probs))]
        for n in dag.nodes[:6]
    }
    with pytest.raises(DAGError, match="rejection sampling would need|probability 0"):
        dag.sample(10**7, evidence=codes)
