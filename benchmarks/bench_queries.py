"""Median latency of exact queries, beside brute-force / sampling baselines measured in the same run.

- rpg_fight: condition, intervene, counterfactual (monotone twin network) vs brute-force
  enumeration of the joint (27,648 assignments; interval arithmetic for the counterfactual).
- alarm (37 nodes, bundled with pgmpy): condition and do vs forward (rejection) sampling with
  100,000 draws — the exact answer needs no sampling error budget.
- every bnlearn network bundled with pgmpy (``--networks``; each loaded once, outside the
  timings): the median time of ``--queries`` random queries of each kind (condition: one target,
  two evidence nodes read off a forward sample; do: one target, one do node, one evidence node
  read off a sample of the mutilated graph), ours with the plan cache cleared before every call
  (cold) and kept (warm), beside pgmpy's VariableElimination (its engine built once per model,
  outside the timings; ``--pgmpy-queries`` of each kind) and, when ``pyagrum`` is importable,
  pyAgrum's LazyPropagation (a fresh inference object per query; for do, on a mutilated copy
  built outside the timing). Answers are compared with both peers (max abs difference).

Run: python benchmarks/bench_queries.py [--repeats 7] [--networks asia,alarm] [--out DIR]
(``--out`` writes queries.json, queries.csv and queries.png: time vs nodes and vs induced width.)
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests._brute, the reference
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np

warnings.filterwarnings("ignore", category=FutureWarning)

import _networks  # noqa: E402  (benchmarks/_networks.py: the bnlearn sweep)

from causalscene import queries  # noqa: E402
from causalscene.cli import run_script  # noqa: E402
from causalscene.dag import CausalDAG  # noqa: E402


def bundled_networks() -> list[str]:
    import pgmpy

    folder = Path(pgmpy.__file__).parent / "utils" / "example_models"
    return sorted(f.name.split(".")[0] for f in folder.glob("*.bif.gz"))


def median_seconds(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def brute_joint(dag):
    """Vectorised full joint (one axis per node) — the baseline's work."""
    names = dag.nodes
    table = np.ones([dag.cardinality(n) for n in names])
    for n in names:
        axes = [names.index(p) for p in dag.parents(n)] + [names.index(n)]
        shape = [dag.cardinality(names[i]) if i in axes else 1 for i in range(len(names))]
        cpt = dag.cpt(n)
        order = np.argsort(axes)
        table = table * np.transpose(cpt, order).reshape(shape)
    return names, table


def brute_condition(dag, variables, evidence, do=None):
    source = dag.mutilate(do) if do else dag
    names, table = brute_joint(source)
    index = tuple(dag.state_index(n, evidence[n]) if n in evidence else slice(None) for n in names)
    sub = table[index]
    kept = [n for n in names if n not in evidence]
    axes = tuple(i for i, n in enumerate(kept) if n not in variables)
    out = sub.sum(axis=axes)
    return out / out.sum()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=None, help="write JSON, CSV and PNG here")
    parser.add_argument("--networks", default=",".join(bundled_networks()))
    parser.add_argument("--queries", type=int, default=50, help="random queries of each kind")
    parser.add_argument("--pgmpy-queries", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import pgmpy

    rows = []
    rpg = CausalDAG.shipped("rpg_fight")
    factual = {"actor": "satyr", "reactor": "satyr", "action": "attack", "reaction": "dying"}
    from tests._brute import brute_counterfactual

    cases = [
        (
            "rpg condition",
            lambda: queries.condition(rpg, ["actor_attack"], {"action": "attack"}),
            lambda: brute_condition(rpg, ["actor_attack"], {"action": "attack"}),
            "brute-force joint",
        ),
        (
            "rpg intervene",
            lambda: queries.intervene(rpg, ["actor_attack"], {"action": "attack"}),
            lambda: brute_condition(rpg, ["actor_attack"], {}, {"action": "attack"}),
            "brute-force joint",
        ),
        (
            "rpg counterfactual",
            lambda: queries.counterfactual(rpg, ["reaction"], factual, {"reactor": "golem"}),
            lambda: brute_counterfactual(
                rpg,
                ["reaction"],
                {k: rpg.state_index(k, v) for k, v in factual.items()},
                {"reactor": 1},
            ),
            "brute-force enumeration",
        ),
    ]
    alarm = CausalDAG.from_bif(Path(pgmpy.__file__).parent / "utils/example_models/alarm.bif.gz")
    ev = {"HRBP": "HIGH", "CVP": "LOW"}

    def sample_condition():
        draw = alarm._forward(100_000, np.random.default_rng(0))
        keep = np.ones(100_000, bool)
        for k, v in ev.items():
            keep &= draw[k] == alarm.state_index(k, v)
        return np.bincount(draw["HYPOVOLEMIA"][keep], minlength=2)

    def sample_do():
        draw = alarm.mutilate({"CVP": "LOW"})._forward(100_000, np.random.default_rng(0))
        return np.bincount(draw["LVFAILURE"], minlength=2)

    cases += [
        (
            "alarm condition",
            lambda: queries.condition(alarm, ["HYPOVOLEMIA"], ev),
            sample_condition,
            "100k forward samples",
        ),
        (
            "alarm intervene",
            lambda: queries.intervene(alarm, ["LVFAILURE"], {"CVP": "LOW"}),
            sample_do,
            "100k forward samples",
        ),
    ]
    device = (
        f"CPU ({platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores)"
    )
    print(f"device: {device}")
    print(f"{'query':22s} {'exact (ms)':>11s} {'baseline (ms)':>14s} {'speed-up':>9s}  baseline")
    for name, exact, baseline, what in cases:
        exact()  # warm caches (pgmpy model build)
        t_exact = median_seconds(exact, args.repeats)
        t_base = median_seconds(baseline, max(3, args.repeats // 2))
        rows.append(
            {
                "query": name,
                "exact_ms": 1e3 * t_exact,
                "baseline_ms": 1e3 * t_base,
                "ratio": t_base / t_exact,
                "baseline": what,
            }
        )
        print(
            f"{name:22s} {1e3 * t_exact:11.2f} {1e3 * t_base:14.2f} {t_base / t_exact:8.1f}x  {what}"
        )
    networks = _networks.run_all(args, device)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        result = {"device": device, "rows": rows, "networks": networks}
        (args.out / "queries.json").write_text(json.dumps(result, indent=2))
        _networks.write_csv(networks, args.out / "queries.csv")
        _networks.plot(networks, args.out / "queries.png", device)


if __name__ == "__main__":
    sys.exit(run_script(main))
