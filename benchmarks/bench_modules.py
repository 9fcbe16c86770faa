"""Elementary influence maps: batched (channels × pairs in large forward passes) vs one channel at a
time, in the same run, on a 64×64 PlainVAE decoder layer with 128 channels.

    python benchmarks/bench_modules.py --device cuda            # 128 channels × 256 pairs (the goal: < 5 s on an H100)
    python benchmarks/bench_modules.py --device cpu --channels 16 --pairs 32

Prints the device, absolute seconds of both routes, the speed-up, the largest difference between
the two routes' maps (they must agree), and writes a JSON line with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from causalscene.cli import run_script
from causalscene.model import PlainVAE
from causalscene.modularity import elementary_influence_maps, hookable_layers, influence_map


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--channels", type=int, default=128, help="channels of the layer to map")
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=None, help="images per forward pass")
    parser.add_argument(
        "--baseline-channels",
        type=int,
        default=None,
        help="time the one-at-a-time route on this many channels and extrapolate",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    # base_channels such that decoder.conv1 has `channels` channels (channel plan: 8×base at conv1)
    base = max(1, args.channels // 4)
    model = PlainVAE(args.image_size, 16, base_channels=base).to(device).eval()
    layer = "decoder.conv1"
    channels = {i.name: i.channels for i in hookable_layers(model)}[layer]
    z = model.sample_latents(2 * args.pairs, seed=args.seed)
    z1, z2 = z[: args.pairs], z[args.pairs :]

    elementary_influence_maps(model, layer, z1[:4], z2[:4], channels=[0, 1])  # warm-up
    _sync(device)
    start = time.perf_counter()
    batched = elementary_influence_maps(model, layer, z1, z2, batch_size=args.batch_size)
    _sync(device)
    t_batched = time.perf_counter() - start

    n_base = min(channels, args.baseline_channels or channels)
    start = time.perf_counter()
    single = [influence_map(model, layer, [c], z1, z2) for c in range(n_base)]
    _sync(device)
    t_single = (time.perf_counter() - start) * channels / n_base
    diff = float((torch.stack(single) - batched[:n_base]).abs().max())

    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({torch.get_num_threads()} threads)"
    )
    result = {
        "device": name,
        "image_size": args.image_size,
        "channels": channels,
        "pairs": args.pairs,
        "hybrid_images": channels * args.pairs,
        "batched_s": round(t_batched, 3),
        "one_at_a_time_s": round(t_single, 3),
        "one_at_a_time_extrapolated_from": n_base,
        "speedup": round(t_single / t_batched, 2),
        "images_per_s_batched": round(channels * args.pairs / t_batched, 1),
        "max_abs_difference": diff,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"device: {name}")
        print(
            f"{channels} channels × {args.pairs} pairs at {args.image_size}×{args.image_size} "
            f"({channels * args.pairs} hybrid images)"
        )
        print(
            f"batched:          {t_batched:8.3f} s  ({result['images_per_s_batched']:.0f} images/s)"
        )
        print(
            f"one at a time:    {t_single:8.3f} s"
            + (f"  (extrapolated from {n_base} channels)" if n_base < channels else "")
        )
        print(f"speed-up:         {result['speedup']:8.2f}x   max |difference| {diff:.2e}")


if __name__ == "__main__":
    sys.exit(run_script(main))
