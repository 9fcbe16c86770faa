"""CAGE permutation nulls: one batched torch problem vs the obvious sklearn loop, same run.

Workload (issue 5): every pair of the faces DAG's 9 binary attributes (36 pairs), both directions,
200 permutations, 10,000 prior latents. The encoded training set is synthetic by default: labels
sampled from the shipped ``faces`` DAG and latents ``z = A · onehot(labels) + noise`` in ``--latent-dim``
dimensions (so the probes have real structure); ``--run DIR`` uses a trained generator instead.

* batched: :func:`causalscene.cage.permutation_null` — all 9 × 200 refits in one damped-Newton
  solve on a ``[1800, D + 1]`` parameter tensor, then the 72 directed null GATEs (closed form).
* baseline: for each attribute and permutation, ``sklearn.linear_model.LogisticRegression`` on
  the shuffled labels (1,800 fits — refits are shared across pairs, as in the batched path), then
  the same GATE formula in numpy. ``--baseline-permutations K`` times only K of the 200 per
  attribute and scales the time linearly (reported as extrapolated).

Prints the device, both absolute times, the ratio, and the largest difference between the two
routes' null GATEs on the permutations both computed. Run, e.g.::

    python benchmarks/bench_cage.py --device cuda            # GPU (the lead runs this)
    python benchmarks/bench_cage.py --device cpu --baseline-permutations 20
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from causalscene.cli import run_script


def synthetic_latents(n: int, k: int, d: int, seed: int):
    from causalscene.dag import CausalDAG

    dag = CausalDAG.shipped("faces")
    rng = np.random.default_rng(seed)
    labels = dag.sample(n, seed=seed)
    attributes = [a for a in dag.label_nodes if dag.cardinality(a) == 2]
    onehot = np.stack([labels[a] for a in attributes], 1).astype(np.float32)
    mixing = rng.standard_normal((len(attributes), d)).astype(np.float32)
    z = onehot @ mixing + rng.standard_normal((n, d)).astype(np.float32)
    z = (z - z.mean(0)) / z.std(0)
    latents = rng.standard_normal((k, d)).astype(np.float32)
    return z, {a: labels[a] for a in attributes}, latents


def run_latents(run_dir: str, k: int, seed: int, device: str):
    from causalscene.cage_pipeline import binary_attributes, encode_images
    from causalscene.generators import load_generator
    from causalscene.train import load_dataset

    generator, config = load_generator(run_dir, device=device)
    images, labels = load_dataset(config.data)
    z = encode_images(generator, images).numpy()
    attributes = binary_attributes(labels)
    latents = generator.sample_latents(k, seed=seed).cpu().numpy()
    return z, {a: labels[a] for a in attributes}, latents


def sklearn_null(z, labels, latents, probe, pairs, permutations, seed, l2):
    """The obvious loop: one LogisticRegression per (attribute, permutation), then the GATEs."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    directed = sorted({p for c, e in pairs for p in ((c, e), (e, c))})
    treatments = sorted({c for c, _ in directed})
    refits = {}
    for m in treatments:
        codes = labels[m]
        ws, bs = [], []
        for _ in range(permutations):
            shuffled = codes[rng.permutation(len(codes))]
            model = LogisticRegression(C=1.0 / (l2 * len(codes)), max_iter=1000)
            model.fit(z, shuffled)
            ws.append(model.coef_[0])
            bs.append(model.intercept_[0])
        refits[m] = (np.array(ws), np.array(bs))
    sig = lambda u: 1 / (1 + np.exp(-u))  # noqa: E731
    gates = {}
    for c, e in directed:
        w_t, b_t = refits[c]
        w_e, b_e = (t.double().cpu().numpy() for t in probe.params(e))
        values = []
        for w, b in zip(w_t, b_t):
            h = w / np.linalg.norm(w)
            m = (latents @ w + b) > 0
            base = latents @ w_e + b_e
            slope = h @ w_e
            y1 = np.where(m, sig(base), sig(base + slope))
            y0 = np.where(m, sig(base - slope), sig(base))
            values.append(float((y1 - y0).mean()))
        gates[(c, e)] = np.array(values)
    return gates


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--permutations", type=int, default=200)
    parser.add_argument("--num-latents", type=int, default=10_000)
    parser.add_argument("--num-train", type=int, default=10_000, help="encoded (labelled) points")
    parser.add_argument("--latent-dim", type=int, default=64)
    parser.add_argument("--baseline-permutations", type=int, default=None)
    parser.add_argument(
        "--run", default=None, help="trained run folder instead of synthetic latents"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    return parser


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_batched(z, labels, latents, probe, pairs, args, device):
    """Seconds of one batched null (after a warm-up), and the null itself."""
    from causalscene.cage import permutation_null

    z_dev = torch.as_tensor(z, device=device)
    latents_dev = torch.as_tensor(latents, device=device)

    def batched():
        out = permutation_null(
            z_dev, labels, latents_dev, probe, pairs, args.permutations, seed=args.seed
        )
        _synchronize(device)
        return out

    batched()  # warm-up (CUDA context, kernels)
    start = time.perf_counter()
    null = batched()
    return time.perf_counter() - start, null


def time_table(z, labels, latents, pairs, args, device):
    """Seconds of the whole CAGE table (after a warm-up), and the table."""
    from causalscene.cage import CageConfig, run_cage

    config = CageConfig(
        permutations=args.permutations, num_latents=len(latents), seed=args.seed, device=args.device
    )
    run_cage(z, labels, pairs, config, latents=latents)  # warm-up
    start = time.perf_counter()
    table = run_cage(z, labels, pairs, config, latents=latents)
    _synchronize(device)
    return time.perf_counter() - start, table


def main() -> None:
    args = _parser().parse_args()

    from causalscene.cage import all_pairs
    from causalscene.probes import LatentProbe

    device = torch.device(args.device)
    if args.run:
        z, labels, latents = run_latents(args.run, args.num_latents, args.seed, args.device)
    else:
        z, labels, latents = synthetic_latents(
            args.num_train, args.num_latents, args.latent_dim, args.seed
        )
    pairs = all_pairs(list(labels))
    probe = LatentProbe(device=device).fit(z, labels, holdout=0)
    t_batched, null = time_batched(z, labels, latents, probe, pairs, args, device)
    t_table, table = time_table(z, labels, latents, pairs, args, device)

    k = args.baseline_permutations or args.permutations
    start = time.perf_counter()
    reference = sklearn_null(z, labels, latents, probe, pairs, k, args.seed, probe.l2)
    t_baseline = (time.perf_counter() - start) * args.permutations / k
    # The sklearn loop draws the same shuffles only when it runs all permutations of each
    # attribute in order; with fewer, compare the first attribute's first k permutations.
    first = sorted(labels)[0]
    keys = [key for key in reference if key[0] == first]
    diff = max(float(np.max(np.abs(null.gates[key][:k] - reference[key]))) for key in keys)

    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({torch.get_num_threads()} threads)"
    )
    result = {
        "device": name,
        "pairs": len(pairs),
        "directed_pairs": 2 * len(pairs),
        "attributes": len(labels),
        "permutations": args.permutations,
        "num_latents": int(len(latents)),
        "num_train": int(len(z)),
        "latent_dim": int(z.shape[1]),
        "batched_seconds": t_batched,
        "whole_table_seconds": t_table,
        "pairs_inferred": sum(p.inferred != "none" for p in table.pairs),
        "sklearn_seconds": t_baseline,
        "sklearn_extrapolated": k != args.permutations,
        "sklearn_permutations_timed": k,
        "speedup": t_baseline / t_batched,
        "max_abs_null_gate_difference": diff,
    }
    print(json.dumps(result) if args.json else _text(result))


def _text(r: dict) -> str:
    extra = (
        f" (extrapolated from {r['sklearn_permutations_timed']} permutations per attribute)"
        if r["sklearn_extrapolated"]
        else ""
    )
    return "\n".join(
        [
            f"device: {r['device']}",
            f"workload: {r['attributes']} attributes, {r['pairs']} pairs x 2 directions, "
            f"{r['permutations']} permutations, {r['num_latents']} latents, "
            f"{r['num_train']} x {r['latent_dim']} training latents",
            f"batched torch null: {r['batched_seconds']:.3f} s",
            "whole CAGE table (probes + GATEs + nulls + MMD, run_cage): "
            f"{r['whole_table_seconds']:.3f} s",
            f"sklearn loop null:  {r['sklearn_seconds']:.3f} s{extra}",
            f"speedup: {r['speedup']:.1f}x",
            f"max |null GATE difference| (batched vs sklearn): "
            f"{r['max_abs_null_gate_difference']:.2e}",
        ]
    )


if __name__ == "__main__":
    sys.exit(run_script(main))
