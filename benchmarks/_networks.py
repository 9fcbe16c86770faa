"""The bnlearn sweep of bench_queries.py: random exact queries on the networks bundled with pgmpy,
ours (cold and warm plan cache) vs pgmpy's VariableElimination and pyAgrum's LazyPropagation."""

from __future__ import annotations

import csv
import statistics
import time
from pathlib import Path

import numpy as np

from causalscene import elimination, queries
from causalscene.dag import CausalDAG


def load(name: str) -> CausalDAG:
    import pgmpy

    return CausalDAG.from_bif(
        Path(pgmpy.__file__).parent / "utils/example_models" / f"{name}.bif.gz"
    )


def random_queries(dag: CausalDAG, count: int, seed: int) -> list[dict]:
    """``count`` condition and ``count`` do queries with evidence of positive probability."""
    rng = np.random.default_rng(seed)
    nodes = dag.nodes
    out = []
    for _ in range(count):
        target, e1, e2, d = (nodes[i] for i in rng.choice(len(nodes), 4, replace=False))
        draw = dag._forward(1, rng)
        out.append({"kind": "condition", "target": target, "do": {},
                    "evidence": {e1: int(draw[e1][0]), e2: int(draw[e2][0])}})  # fmt: skip
        do = {d: int(rng.integers(dag.cardinality(d)))}
        draw = dag.mutilate(do)._forward(1, rng)
        out.append({"kind": "do", "target": target, "do": do, "evidence": {e1: int(draw[e1][0])}})
    return out


def ours(dag: CausalDAG, q: dict, cold: bool) -> np.ndarray:
    if cold:
        elimination.compile_dag(dag).plans.clear()
    if q["do"]:
        return queries.intervene(dag, [q["target"]], q["do"], q["evidence"]).probs
    return queries.condition(dag, [q["target"]], q["evidence"]).probs


def to_pyagrum(dag: CausalDAG, do: dict | None = None):
    """A pyAgrum BayesNet of ``dag`` (mutilated by ``do``: codes), states in our order."""
    import pyagrum as gum

    do = do or {}
    bn = gum.BayesNet(dag.name)
    for n in dag.nodes:
        bn.add(gum.LabelizedVariable(n, n, list(dag.states(n))))
    for p, n in dag.edges:
        if n not in do:
            bn.addArc(p, n)
    for n in dag.nodes:
        scope = [n] if n in do else [*dag.parents(n), n]
        table = np.eye(dag.cardinality(n))[do[n]] if n in do else dag.cpt(n)
        axes = [scope.index(v) for v in reversed(bn.cpt(n).names)]
        bn.cpt(n).fillWith(np.transpose(table, axes).ravel().tolist())
    return bn


def pyagrum_query(bn, dag: CausalDAG, q: dict) -> np.ndarray:
    import pyagrum as gum

    inference = gum.LazyPropagation(bn)
    inference.setEvidence({k: dag.states(k)[v] for k, v in q["evidence"].items()})
    inference.addTarget(q["target"])
    inference.makeInference()
    return np.asarray(inference.posterior(q["target"]).toarray())


def pgmpy_query(engine, dag: CausalDAG, q: dict) -> np.ndarray:
    evidence = {k: dag.states(k)[v] for k, v in q["evidence"].items()}
    factor = engine.query([q["target"]], evidence=evidence, joint=True, show_progress=False)
    names = [str(s) for s in factor.state_names[q["target"]]]
    return np.asarray(factor.values)[[names.index(s) for s in dag.states(q["target"])]]


def timed(fn) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    answer = fn()
    return time.perf_counter() - start, answer


def measure(dag: CausalDAG, qs: list[dict], args) -> dict:
    """Per query, every engine in turn, ``--repeats`` rounds (the fastest round kept), so that a
    busy machine slows all engines alike; pgmpy on the first ``--pgmpy-queries`` of each kind."""
    from pgmpy.inference import VariableElimination

    try:
        import pyagrum  # noqa: F401
    except ImportError:
        have_agrum = False
    else:
        have_agrum = True
    out: dict = {"cold": {}, "warm": {}, "pgmpy": {}, "pyagrum": {}}
    for i, q in enumerate(qs):
        runs = {"cold": lambda q=q: ours(dag, q, True), "warm": lambda q=q: ours(dag, q, False)}
        if have_agrum:
            bn = to_pyagrum(dag, q["do"])
            runs["pyagrum"] = lambda q=q, bn=bn: pyagrum_query(bn, dag, q)
        if i // 2 < args.pgmpy_queries:
            model = dag.mutilate(q["do"]).to_pgmpy() if q["do"] else dag.to_pgmpy()
            engine = VariableElimination(model)
            runs["pgmpy"] = lambda q=q, engine=engine: pgmpy_query(engine, dag, q)
        for _ in range(args.repeats):
            for key, fn in runs.items():
                seconds, answer = timed(fn)
                if i not in out[key] or seconds < out[key][i][0]:
                    out[key][i] = (seconds, answer)
    return out


def network_row(name: str, args) -> dict:
    start = time.perf_counter()
    dag = load(name)
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    width = elimination.induced_width(dag)  # compiles the DAG and its min-fill order
    compile_s = time.perf_counter() - start
    qs = random_queries(dag, args.queries, args.seed)
    other = measure(dag, qs, args)
    cold, warm = other["cold"], other["warm"]
    row = {"network": name, "nodes": len(dag.nodes), "edges": len(dag.edges),
           "induced_width": width, "load_s": load_s, "compile_ms": 1e3 * compile_s}  # fmt: skip
    for kind in ("condition", "do"):
        idx = [i for i, q in enumerate(qs) if q["kind"] == kind]
        row[f"{kind}_query_width_median"] = statistics.median(
            elimination.query_plan(
                dag, [qs[i]["target"]], qs[i]["evidence"], qs[i]["do"]
            ).induced_width
            for i in idx
        )
        row[f"{kind}_ours_ms"] = 1e3 * statistics.median(cold[i][0] for i in idx)
        row[f"{kind}_ours_warm_ms"] = 1e3 * statistics.median(warm[i][0] for i in idx)
        for peer in ("pgmpy", "pyagrum"):
            done = [i for i in idx if i in other[peer]]
            if not done:
                row[f"{kind}_{peer}_ms"] = row[f"{kind}_{peer}_maxdiff"] = None
                continue
            row[f"{kind}_{peer}_ms"] = 1e3 * statistics.median(other[peer][i][0] for i in done)
            row[f"{kind}_{peer}_maxdiff"] = max(
                float(np.abs(other[peer][i][1] - cold[i][1]).max()) for i in done
            )
    return row


def run_all(args, device: str) -> list[dict]:
    rows = []
    print(f"\nbnlearn networks bundled with pgmpy, median ms per query ({device}); "
          "ours cold = plan cache cleared before every call")  # fmt: skip
    head = f"{'network':11s} {'nodes':>5s} {'w':>3s}"
    for kind in ("condition", "do"):
        head += f" | {kind[:4]:4s} ours   warm pyAgrum  pgmpy ours/pyA"
    print(head)
    for name in args.networks.split(","):
        row = network_row(name, args)
        rows.append(row)
        line = f"{name:11s} {row['nodes']:5d} {row['induced_width']:3d}"
        for kind in ("condition", "do"):
            agrum, pg = row[f"{kind}_pyagrum_ms"], row[f"{kind}_pgmpy_ms"]
            ratio = f"{row[f'{kind}_ours_ms'] / agrum:8.2f}" if agrum else f"{'-':>8s}"
            line += (f" | {row[f'{kind}_ours_ms']:9.2f} {row[f'{kind}_ours_warm_ms']:6.2f}"
                     f" {agrum or float('nan'):7.2f} {pg or float('nan'):6.1f} {ratio}")  # fmt: skip
        print(line, flush=True)
    return rows


def write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def plot(rows: list[dict], path: Path, device: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, key, label in (
        (axes[0], "nodes", "nodes"),
        (axes[1], "induced_width", "induced width"),
    ):
        for field, marker, name in (("ours", "o", "causalscene"), ("pyagrum", "s", "pyAgrum LazyPropagation"),
                                    ("pgmpy", "^", "pgmpy VariableElimination")):  # fmt: skip
            for kind, fill in (("condition", True), ("do", False)):
                pts = [(r[key], r[f"{kind}_{field}_ms"]) for r in rows if r[f"{kind}_{field}_ms"]]
                if pts:
                    x, y = zip(*pts)
                    color = f"C{['ours', 'pyagrum', 'pgmpy'].index(field)}"
                    ax.scatter(x, y, marker=marker, label=f"{name}, {kind}", edgecolors=color,
                               facecolors=color if fill else "none")  # fmt: skip
        ax.set_xlabel(label)
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].set_xscale("log")
    axes[0].set_ylabel("median ms per query")
    axes[1].legend(fontsize=7)
    fig.suptitle(f"Exact queries on the bnlearn networks bundled with pgmpy ({device})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
