"""``causalscene cage RUN``: CAGE (Bose, Monti & Grover, TMLR 2022) on a trained generator.

``causalscene cage RUN --pairs a:b[,c:d ...] | --all-pairs [--alpha A] [--mode shift|cross]
[--outcome latent|image] [--estimator paper|calibrated] [--permutations 200] [--num-latents 10000] [--device D] [--seed K]
--out DIR [--json]`` writes into DIR what :func:`causalscene.cage_pipeline.analyze_run` writes:
``cage.json`` (everything), ``tau_table.csv``, ``tau_vs_alpha.png``, ``null_histograms.png``,
``counterfactuals_<c>_<e>.png`` and, with a DAG, ``dag_comparison.{csv,json,png}``.
``--generator SPEC --data DIR`` instead of ``RUN`` analyses a generator from outside
(:func:`causalscene.generators.load_generator`); without ``encode`` its latents come from latent
inversion (``--invert-steps``, ``--invert-lr``, ``--invert-prior``, ``--invert-restarts``).
The reproductions ``cage-mog``, ``cage-morpho`` and ``cage-faces`` live in
:mod:`causalscene.reproductions.bose2022`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from causalscene.commands._common import (
    add_device,
    add_generator,
    add_json,
    add_no_progress,
    add_seed,
    console,
    generator_spec,
    print_json,
)

if TYPE_CHECKING:
    from causalscene.cage_pipeline import CageAnalysis


def register(subparsers) -> None:
    p = subparsers.add_parser("cage", help="CAGE: causal directions in a generator's latent space")
    add_generator(p, "training run folder (causalscene train --out)")
    p.add_argument("--pairs", default=None, help="cause:effect pairs, comma-separated")
    p.add_argument("--all-pairs", action="store_true", help="every pair of binary attributes")
    p.add_argument("--alpha", type=float, default=1.0, help="step α along the probe normal")
    p.add_argument("--alphas", default=None, help="α sweep, comma-separated (default 0.25…4)")
    p.add_argument("--mode", choices=["shift", "cross"], default="shift")
    p.add_argument("--outcome", choices=["latent", "image"], default="latent")
    p.add_argument(
        "--estimator",
        choices=["paper", "calibrated"],
        default="paper",
        help="GATE outcomes as probabilities (paper) or as logits on one common scale "
        "(calibrated: cage.scaled_outcomes)",
    )
    p.add_argument("--permutations", type=int, default=200)
    p.add_argument("--num-latents", type=int, default=10_000)
    p.add_argument("--min-accuracy", type=float, default=0.75, help="separability threshold")
    p.add_argument("--data", type=Path, default=None, help="dataset (default: the run's)")
    p.add_argument(
        "--dag",
        default=None,
        help="DAG file or shipped name to compare with (default: the run's/data's)",
    )
    p.add_argument("--max-images", type=int, default=None)
    p.add_argument(
        "--probe-epochs", type=int, default=5, help="image-probe epochs (--outcome image)"
    )
    _add_inversion(p)
    add_device(p)
    add_seed(p)
    p.add_argument("--out", type=Path, required=True)
    add_json(p, "the result (what cage.json holds)")
    add_no_progress(p)
    p.set_defaults(func=_main)


#: the inversion flags and the InversionConfig fields they set (unset: the config's defaults)
INVERSION_FLAGS = {"steps": int, "lr": float, "prior": float, "restarts": int}


def _add_inversion(p) -> None:
    """Flags of the latent inversion used for a generator without encode()."""
    helps = {
        "steps": "Adam steps of latent inversion, for a generator without encode() (default 300)",
        "lr": "its learning rate, cosine-annealed to 0 (default 0.1)",
        "prior": "its prior penalty λ·|z|²/2 (default 0)",
        "restarts": "its starts per image, the best kept (default 1)",
    }
    for name, kind in INVERSION_FLAGS.items():
        p.add_argument(f"--invert-{name}", type=kind, default=None, help=helps[name])


def _main(args) -> int:
    from causalscene.cage import CageConfig
    from causalscene.cage_pipeline import DEFAULT_ALPHAS, analyze_run
    from causalscene.inversion import InversionConfig
    from causalscene.options import VERB_RANGES, check_numbers, check_out_folder

    check_numbers(args, VERB_RANGES["cage"], flags=True)  # before any work: one line, exit 2
    check_out_folder(args.out)
    alphas = _parse_alphas(args.alphas) if args.alphas is not None else list(DEFAULT_ALPHAS)
    config = CageConfig(
        alpha=args.alpha,
        mode=args.mode,
        outcome=args.outcome,
        estimator=args.estimator,
        num_latents=args.num_latents,
        permutations=args.permutations,
        min_accuracy=args.min_accuracy,
        seed=args.seed,
        device=args.device,
    )
    config.validate()
    given = {k: getattr(args, f"invert_{k}") for k in INVERSION_FLAGS}
    inversion = InversionConfig(
        **{k: v for k, v in given.items() if v is not None}, seed=args.seed
    ).validate()
    if bool(args.pairs) == bool(args.all_pairs):
        raise ValueError("give exactly one of --pairs and --all-pairs")
    analysis = analyze_run(
        generator_spec(args),
        args.out,
        config,
        args.pairs or None,
        data=args.data,
        dag=args.dag,
        max_images=args.max_images,
        alphas=alphas,
        probe_epochs=args.probe_epochs,
        inversion=inversion,
        progress=not args.no_progress,
    )
    if args.json:
        print_json(analysis.payload)
    else:
        _print_table(analysis)
    return 0


def _parse_alphas(text: str) -> list[float]:
    try:
        values = [float(a) for a in str(text).split(",") if a.strip()]
    except ValueError:
        raise ValueError(f"--alphas must be comma-separated numbers, got '{text}'") from None
    if not values or any(not a > 0 for a in values):
        raise ValueError(f"--alphas must be positive numbers, got '{text}'")
    return values


def _print_table(analysis: CageAnalysis) -> None:
    from rich.table import Table

    out = console()
    latents = analysis.payload.get("latents", {})
    if latents.get("method") == "inversion":
        out.print(
            f"latents by inversion ({latents['steps']} steps): reconstruction MSE mean "
            f"{latents['recon_mse_mean']:.3g}, p90 {latents['recon_mse_p90']:.3g} "
            f"(pixel variance {latents['pixel_variance']:.3g})"
        )
    if analysis.comparison is not None:
        out.print(analysis.comparison.rich_table())
        return
    table = Table(title="CAGE")
    for col in ("pair", "τ", "GATE c→e", "GATE e→c", "p c→e", "p e→c", "inferred", "reliable"):
        table.add_column(col)
    for p in analysis.result.pairs:
        table.add_row(
            f"{p.cause}:{p.effect}",
            f"{p.tau:+.4f}",
            f"{p.gate_ce:+.4f}",
            f"{p.gate_ec:+.4f}",
            f"{p.p_ce:.3f}",
            f"{p.p_ec:.3f}",
            p.inferred,
            str(p.reliable),
        )
    out.print(table)
