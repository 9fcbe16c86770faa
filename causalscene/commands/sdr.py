"""``causalscene sdr RUN``: spectral density ratios, decoder vs encoder (Besserve et al. 2021).

``--generator module:factory`` instead of ``RUN`` reads a generator module from outside; it needs
an ``encoder`` submodule to compare with. TorchScript files are refused (no forward hooks).

The pipeline is :func:`causalscene.sdr.sdr_of_run`; this module parses flags and prints.
"""

from __future__ import annotations

import json
from pathlib import Path

from causalscene.commands._common import (
    add_device,
    add_generator,
    add_json,
    add_no_progress,
    add_seed,
    generator_spec,
    print_json,
)


def register(subparsers) -> None:
    q = subparsers.add_parser(
        "sdr", help="spectral density ratios, decoder vs encoder (Besserve 2021)"
    )
    add_generator(q, "training run folder")
    q.add_argument("--out", type=Path, default=None, help="output folder (default RUN/sdr)")
    q.add_argument("--samples", type=int, default=256, help="latents / images for the maps")
    add_device(q)
    add_seed(q)
    add_json(q, "the result (what sdr.json holds)")
    add_no_progress(q, draws_bar=False)
    q.set_defaults(func=_main)


def _main(args) -> int:
    from causalscene.options import VERB_RANGES, check_numbers, check_out_folder
    from causalscene.sdr import sdr_of_run

    check_numbers(args, VERB_RANGES["sdr"], flags=True)  # before any work: one line, exit 2
    if args.out is not None:
        check_out_folder(args.out)
    result, out = sdr_of_run(
        generator_spec(args), out=args.out, samples=args.samples, seed=args.seed, device=args.device
    )
    if args.json:
        print_json(json.loads((out / "sdr.json").read_text()))
        return 0
    for part in ("decoder", "encoder"):
        s = result["trained"][part]
        print(
            f"{part}: mode {s['mode']:.3f}, median {s['median']:.3f}, "
            f"log10 std {s['log10_std']:.3f} (n={s['count']})"
        )
    print(f"histograms and sdr.json in {out}")
    return 0
