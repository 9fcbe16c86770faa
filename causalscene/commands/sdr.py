"""``causalscene sdr RUN``: spectral density ratios, decoder vs encoder (Besserve et al. 2021).

The pipeline is :func:`causalscene.sdr.sdr_of_run`; this module parses flags and prints.
"""

from __future__ import annotations

import json
from pathlib import Path


def register(subparsers) -> None:
    q = subparsers.add_parser(
        "sdr", help="spectral density ratios, decoder vs encoder (Besserve 2021)"
    )
    q.add_argument("run", help="training run folder")
    q.add_argument("--out", type=Path, default=None, help="output folder (default RUN/sdr)")
    q.add_argument("--samples", type=int, default=256, help="latents / images for the maps")
    q.add_argument("--device", default="auto")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--json", action="store_true", help="print the result as JSON")
    q.set_defaults(func=_main)


def _main(args) -> int:
    from causalscene.sdr import sdr_of_run

    result, out = sdr_of_run(
        args.run, out=args.out, samples=args.samples, seed=args.seed, device=args.device
    )
    if args.json:
        print(json.dumps(json.loads((out / "sdr.json").read_text())))
        return 0
    for part in ("decoder", "encoder"):
        s = result["trained"][part]
        print(
            f"{part}: mode {s['mode']:.3f}, median {s['median']:.3f}, "
            f"log10 std {s['log10_std']:.3f} (n={s['count']})"
        )
    print(f"histograms and sdr.json in {out}")
    return 0
