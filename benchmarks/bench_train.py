"""Training-step speed: CausalVAE (Pyro TraceEnum_ELBO) vs a hand-written pure-PyTorch ELBO loop
with the *same* networks, in the same run.

Both loops compute the same objective — -ELBO per image (labels' log-probability with the hidden
DAG nodes summed out, + E_q[log p(x | z, labels)] - (log q(z) - log p(z)) at one reparameterised
sample) + the classifier's cross-entropy (+ with ``--consistency-weight`` training's
label-consistency term, the same code in both loops) — and take one Adam step (after the same
gradient-spike guard as training). The Pyro loop is exactly
:mod:`causalscene.train`'s step (``TraceEnum_ELBO().differentiable_loss``); the baseline writes the
ELBO by hand and sums the hidden nodes out by brute-force enumeration. A check before timing:
both give the same loss value for the same random draws.

Usage::

    python benchmarks/bench_train.py --device cpu --batch-size 64 --steps 20
    python benchmarks/bench_train.py --device cuda --batch-size 1024 --steps 200 [--bf16 --channels-last]
    python benchmarks/bench_train.py --device cuda --data /path/rpg64   # real data, resident on the GPU
    python benchmarks/bench_train.py --device cuda --batch-size 1024 --cuda-graph --bf16 --channels-last
    torchrun --nproc_per_node 2 benchmarks/bench_train.py --device cuda --batch-size 1024 --ddp
    torchrun --nproc_per_node 2 benchmarks/bench_train.py --device cuda --batch-size 1024 --ddp --cuda-graph

With ``--ddp --cuda-graph`` the eager loops use DistributedDataParallel and the captured ones, as
training does, each process's own graph with the gradients' all-reduce inside
(``GradientAllReduce``); images/s count all processes.

Prints one line per loop and a JSON summary: step time, images/s, ratio (Pyro / PyTorch step time;
goal <= 1.10 on CPU; on an H100 at batch 1024: Pyro throughput >= 0.8x PyTorch, >= 100k images/s).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import time
from pathlib import Path

import pyro
import torch

from causalscene.cli import run_script
from causalscene.dag import CausalDAG
from causalscene.model import CausalVAE
from causalscene.train import (
    GradientSpikeGuard,
    GraphedStep,
    TrainConfig,
    _Objective,
    consistency_term,
    to_channels_last,
)
from causalscene.train.distributed import GradientAllReduce, broadcast_from_rank0
from causalscene.train.graph import compile_networks

ROOT = Path(__file__).resolve().parent.parent


class TorchObjective(torch.nn.Module):
    """The same -ELBO (+ aux CE) written by hand in PyTorch, for the same CausalVAE's networks."""

    def __init__(self, vae: CausalVAE, config: TrainConfig):
        super().__init__()
        self.vae = vae
        self.aux_weight = config.aux_weight
        self.consistency_weight = config.consistency_weight
        self.consistency_fraction = config.consistency_fraction
        self.bf16 = config.bf16
        self.channels_last = config.channels_last
        dag = vae.dag
        hidden = dag.hidden_nodes
        combos = list(itertools.product(*(range(dag.cardinality(h)) for h in hidden)))
        self.hidden = hidden
        self.register_buffer(
            "combos", torch.tensor(combos, dtype=torch.long).reshape(len(combos), len(hidden))
        )

    def log_p_labels(self, labels):
        """log Σ_hidden Π_nodes CPT — brute-force enumeration of the hidden nodes: [B]."""
        dag, vae = self.vae.dag, self.vae
        values = {h: self.combos[:, i : i + 1] for i, h in enumerate(self.hidden)}  # [K, 1]
        values.update(labels)  # [B]
        total = 0.0
        for node in dag.nodes:
            cpt = vae._fixed_cpt(node)
            index = tuple(values[p] for p in dag.parents(node)) + (values[node],)
            total = total + torch.log(cpt[index])
        total = (
            total
            if torch.is_tensor(total) and total.ndim == 2
            else total.expand(len(self.combos), -1)
        )
        return torch.logsumexp(total, dim=0)

    def forward(self, images, labels):
        vae = self.vae
        x = images.float().div_(255.0)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            onehot = vae._onehot(labels, x.dtype)
            loc, scale = vae.encoder(x, onehot)
            loc, scale = loc.float(), scale.float()
            z = loc + scale * torch.randn_like(loc)
            px = vae.x_dist(z, onehot)
            log_px = px.log_prob(x)
            log_q = torch.distributions.Normal(loc, scale).log_prob(z).sum(-1)
            log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
            neg_elbo = -(self.log_p_labels(labels) + log_px + log_pz - log_q).mean()
            loss = neg_elbo
            if self.aux_weight:
                loss = loss + self.aux_weight * vae.aux_loss(x, labels)
            if self.consistency_weight:  # not part of the ELBO: the same code in both loops
                loss = loss + consistency_term(
                    vae,
                    x,
                    labels,
                    frozenset(),
                    self.consistency_weight,
                    self.consistency_fraction,
                )
        return loss, neg_elbo.detach()


def _data(args, dag, device):
    if args.data:
        from causalscene.datasets import load_arrays

        images, labels = load_arrays(args.data, dag)
        images = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().to(device)
        labels = {k: torch.from_numpy(v).to(device) for k, v in labels.items()}
        return images, labels, "real"
    n = max(args.batch_size * 4, 4096)
    codes = dag.sample(n, seed=0)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(
        0, 256, (n, 3, args.image_size, args.image_size), dtype=torch.uint8, generator=g
    )
    labels = {k: torch.from_numpy(codes[k]).to(device) for k in dag.label_nodes}
    return images.to(device), labels, "synthetic"


def _time(objective, params, images, labels, args, device, world, log_p_labels=None, graph=False):
    optimizer = torch.optim.Adam(params, lr=1e-4, capturable=graph)
    n = len(images)
    g = torch.Generator(device=device).manual_seed(1)
    batches = [
        torch.randint(0, n, (args.batch_size,), device=device, generator=g) for _ in range(8)
    ]
    guard = GradientSpikeGuard(params, 5.0, device)  # as causalscene.train.fit does
    # several processes: each captures its own step, the gradients' all-reduce inside (as fit)
    reduce = GradientAllReduce(params, world) if graph and args.ddp and world > 1 else None
    graphed = (
        GraphedStep(
            objective,
            optimizer,
            images,
            labels,
            log_p_labels,
            args.batch_size,
            before_step=guard,
            state=[guard.state],
            reduce=reduce,
        )
        if graph
        else None
    )

    def step(i):
        idx = batches[i % len(batches)]
        if graphed is not None:
            return graphed(idx)[0]
        extra = () if log_p_labels is None else (log_p_labels[idx],)
        loss, _ = objective(images[idx], {k: v[idx] for k, v in labels.items()}, *extra)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        guard()
        optimizer.step()
        return loss

    for i in range(args.warmup):
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    tic = time.perf_counter()
    for i in range(args.steps):
        loss = step(i)
    float(loss.detach())  # one host sync at the end
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - tic) / args.steps
    return {"step_ms": 1000 * seconds, "images_per_s": world * args.batch_size / seconds}


def _over(before: dict, now: dict) -> dict:
    """Each loop's images/s in ``now`` over its images/s in ``before`` (loops in both)."""
    tail = "_images_per_s"
    return {
        key[: -len(tail)]: now[key] / before[key]
        for key in now
        if key.endswith(tail) and key in before
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--latent-dim", type=int, default=16)
    p.add_argument("--base-channels", type=int, default=32)
    p.add_argument("--dag", default=str(ROOT / "dags" / "rpg_fight.yaml"))
    p.add_argument(
        "--data", default=None, help="dataset folder (real data, resident on the device)"
    )
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--ddp", action="store_true", help="under torchrun: DistributedDataParallel")
    p.add_argument(
        "--cudnn-benchmark",
        action="store_true",
        help="let cuDNN time its convolution algorithms and keep the fastest (both loops; the "
        "choice can differ between runs, so runs are no longer bit-reproducible)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="compile the networks (encoder, decoder, classifier) with torch.compile in every "
        "loop: their elementwise work fused around the convolutions; compile time not timed",
    )
    p.add_argument(
        "--cuda-graph",
        action="store_true",
        help="also time every loop captured as one CUDA graph per step (CUDA; with --ddp under "
        "torchrun each process captures its own step, the gradients' all-reduce inside)",
    )
    p.add_argument(
        "--consistency-weight",
        type=float,
        default=0.0,
        help="add training's label-consistency term to both loops (default 0: the ELBO step alone)",
    )
    p.add_argument(
        "--consistency-fraction",
        type=float,
        default=1.0,
        help="share of each batch the consistency term sees (as training's flag)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write the JSON summary here")
    p.add_argument(
        "--compare",
        default=None,
        help="an earlier run's JSON summary (e.g. one GPU): print and record each loop's "
        "images/s over that run's (the 2-GPU captured-step goal: pyro_graph >= 1.9)",
    )
    args = p.parse_args(argv)

    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    device = (
        torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if args.device == "auto"
        else torch.device(args.device)
    )
    if args.ddp and world > 1:
        import torch.distributed as dist

        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    pyro.enable_validation(False)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    torch.manual_seed(args.seed)
    dag = CausalDAG.load(args.dag)
    images, labels, kind = _data(args, dag, device)
    if images.shape[-1] != args.image_size:
        args.image_size = images.shape[-1]
    config = TrainConfig(
        bf16=args.bf16,
        channels_last=args.channels_last,
        consistency_weight=args.consistency_weight,
        consistency_fraction=args.consistency_fraction,
    )
    vae = CausalVAE(dag, args.image_size, args.latent_dim, base_channels=args.base_channels).to(
        device
    )
    if args.channels_last:
        to_channels_last(vae)
    pyro_obj = _Objective(vae, config, frozenset())
    torch_obj = TorchObjective(vae, config).to(device)

    # same objective: equal loss values for equal random draws
    idx = torch.arange(min(32, len(images)), device=device)
    lab = {k: v[idx] for k, v in labels.items()}
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(5)
        a = pyro_obj(images[idx], lab)[1]
        torch.manual_seed(5)
        b = torch_obj(images[idx], lab)[1]
    agree = float((a - b).abs() / b.abs().clamp_min(1.0))

    def wrap(m):
        return m

    if args.ddp and world > 1:
        from torch.nn.parallel import DistributedDataParallel

        def wrap(m):
            return DistributedDataParallel(
                m, device_ids=[device.index] if device.type == "cuda" else None
            )

    # each loop trains its own copy of the same initial networks (DDP hooks one model once)
    import copy

    def fresh(loop):
        """A loop's objective over its own copy of the initial networks."""
        net = copy.deepcopy(vae)
        if args.compile:  # as training's --compile
            compile_networks(net)
        if loop == "pytorch":
            return TorchObjective(net, config).to(device), net
        return _Objective(net, config, frozenset()), net

    torch_obj, torch_vae = fresh("pytorch")
    torch_obj = wrap(torch_obj)
    pyro_obj, pyro_vae = fresh("pyro")
    collapsed_obj, collapsed_vae = fresh("pyro")
    logp = collapsed_vae.log_p_labels(labels).to(device)
    loops = [
        ("pytorch", torch_obj, torch_vae, None, False),
        ("pyro", wrap(pyro_obj), pyro_vae, None, False),
        ("pyro_collapsed", wrap(collapsed_obj), collapsed_vae, logp, False),
        ("pytorch_again", torch_obj, torch_vae, None, False),
    ]
    graph = args.cuda_graph and device.type == "cuda" and (world == 1 or args.ddp)
    if graph:  # fresh copies: a captured step owns its networks' gradients and optimizer
        for name, loop, extra in (
            ("pytorch_graph", "pytorch", None),
            ("pyro_graph", "pyro", None),
            ("pyro_collapsed_graph", "pyro", logp),
        ):
            obj, net = fresh(loop)
            if args.ddp and world > 1:  # not wrapped in DDP: rank 0's weights, as DDP would
                broadcast_from_rank0(net)
            loops.append((name, obj, net, extra, True))
    results = {}
    for name, obj, net, extra, captured in loops:
        results[name] = _time(
            obj, list(net.parameters()), images, labels, args, device, world, extra, captured
        )
    base = min(results["pytorch"]["step_ms"], results["pytorch_again"]["step_ms"])
    ratio = results["pyro"]["step_ms"] / base
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    )
    summary = {
        "device": name,
        "world_size": world,
        "data": kind,
        "image_size": args.image_size,
        "batch_size_per_process": args.batch_size,
        "bf16": args.bf16,
        "cudnn_benchmark": args.cudnn_benchmark,
        "compile": args.compile,
        "channels_last": args.channels_last,
        "base_channels": args.base_channels,
        "consistency_weight": args.consistency_weight,
        "consistency_fraction": args.consistency_fraction,
        "pyro_step_ms": results["pyro"]["step_ms"],
        "pytorch_step_ms": base,
        "pyro_images_per_s": results["pyro"]["images_per_s"],
        "pyro_collapsed_step_ms": results["pyro_collapsed"]["step_ms"],
        "pyro_collapsed_images_per_s": results["pyro_collapsed"]["images_per_s"],
        "ratio_step_time_collapsed_over_pytorch": results["pyro_collapsed"]["step_ms"] / base,
        "pytorch_images_per_s": world * args.batch_size / (base / 1000),
        "ratio_step_time_pyro_over_pytorch": ratio,
        "throughput_pyro_over_pytorch": 1 / ratio,
        "loss_relative_difference": agree,
    }
    if graph:
        best_torch = min(base, results["pytorch_graph"]["step_ms"])
        for key in ("pytorch_graph", "pyro_graph", "pyro_collapsed_graph"):
            summary[f"{key}_step_ms"] = results[key]["step_ms"]
            summary[f"{key}_images_per_s"] = results[key]["images_per_s"]
        # the headline: the best Pyro loop against the best pure-PyTorch loop, both graphed
        summary["best_pytorch_step_ms"] = best_torch
        summary["throughput_pyro_graph_over_best_pytorch"] = (
            best_torch / results["pyro_graph"]["step_ms"]
        )
    if args.compare:
        summary["images_per_s_over_compared"] = _over(
            json.loads(Path(args.compare).read_text()), summary
        )
    if rank == 0:
        print(
            f"device: {name}  (world size {world}, {kind} data {args.image_size}x{args.image_size}, batch {args.batch_size}/process)"
        )
        print(
            f"pure PyTorch ELBO : {base:8.2f} ms/step  {summary['pytorch_images_per_s']:10.0f} images/s"
        )
        print(
            f"CausalVAE (Pyro)  : {results['pyro']['step_ms']:8.2f} ms/step  {results['pyro']['images_per_s']:10.0f} images/s"
        )
        c = results["pyro_collapsed"]
        print(
            f"CausalVAE (Pyro, collapse_labels): {c['step_ms']:8.2f} ms/step  "
            f"{c['images_per_s']:10.0f} images/s"
        )
        print(
            f"ratio Pyro/PyTorch step time: {ratio:.3f}   (same loss: relative difference {agree:.1e})"
        )
        if graph:
            for key, label in (
                ("pytorch_graph", "pure PyTorch ELBO, CUDA graph"),
                ("pyro_graph", "CausalVAE (Pyro), CUDA graph"),
                ("pyro_collapsed_graph", "CausalVAE (Pyro, collapse_labels), CUDA graph"),
            ):
                r = results[key]
                print(f"{label}: {r['step_ms']:8.2f} ms/step  {r['images_per_s']:10.0f} images/s")
            print(
                "throughput Pyro (graph) / best pure PyTorch: "
                f"{summary['throughput_pyro_graph_over_best_pytorch']:.3f}"
            )
        for loop, ratio in summary.get("images_per_s_over_compared", {}).items():
            print(f"images/s over {args.compare}, {loop}: {ratio:.3f}")
        print(json.dumps(summary))
        if args.out:
            Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
    if args.ddp and world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()
    return summary


if __name__ == "__main__":
    sys.exit(run_script(main))
