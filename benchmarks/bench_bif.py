"""BIF loading time: our strict reader (``CausalDAG.from_bif``) vs pgmpy's ``BIFReader`` on the
networks shipped with pgmpy, measured in the same run (best of ``--repeats``; warm imports).

    python benchmarks/bench_bif.py [--networks asia sachs alarm] [--repeats 3] [--json]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
import warnings
from pathlib import Path

from causalscene.cli import run_script


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench(networks: list[str], repeats: int) -> list[dict]:
    import pgmpy
    from pgmpy.readwrite import BIFReader

    from causalscene.dag import CausalDAG

    folder = Path(pgmpy.__file__).parent / "utils" / "example_models"
    rows = []
    for name in networks:
        path = folder / f"{name}.bif.gz"
        text = gzip.decompress(path.read_bytes()).decode()
        ours = _best(lambda p=path: CausalDAG.from_bif(p), repeats)
        theirs = _best(lambda s=text: BIFReader(string=s).get_model(), repeats)
        nodes = len(CausalDAG.from_bif(path).nodes)
        rows.append({"network": name, "nodes": nodes, "ours_s": ours, "pgmpy_s": theirs,
                     "speedup": theirs / ours})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", default=["asia", "sachs", "alarm"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)
    rows = bench(args.networks, args.repeats)
    device = f"cpu ({os.cpu_count()} cores)"
    if args.json:
        print(json.dumps({"device": device, "networks": rows}))
        return
    print(f"device: {device}")
    for r in rows:
        print(f"{r['network']:>10} {r['nodes']:4d} nodes: ours {r['ours_s'] * 1e3:8.1f} ms, "
              f"pgmpy {r['pgmpy_s'] * 1e3:8.1f} ms, ratio {r['speedup']:6.0f}x")  # fmt: skip


if __name__ == "__main__":
    sys.exit(run_script(main))
