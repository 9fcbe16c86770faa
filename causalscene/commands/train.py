"""``causalscene train --dag FILE --data DIR --out RUN [...]``: fit a CausalVAE (or ``--no-dag`` a
PlainVAE) by SVI; ``--model dcgan``: a DCGAN (no DAG, labels ignored). Multi-GPU (VAEs):
``torchrun --nproc_per_node K -m causalscene.cli train ...``."""

from __future__ import annotations

import sys
from pathlib import Path

from causalscene.commands._common import (
    add_device,
    add_json,
    add_no_progress,
    add_seed,
    print_json,
)


def register(subparsers) -> None:
    from causalscene.train.config import MODEL_DEFAULTS, TrainConfig

    d, gan = TrainConfig(), MODEL_DEFAULTS["dcgan"]
    p = subparsers.add_parser(
        "train", help="train a CausalVAE (or a plain VAE, a DCGAN) on an image dataset"
    )
    _add_model_flags(p, d, gan)
    add_device(p, d.device)
    add_seed(p, d.seed)
    _add_objective_flags(p, d)
    _add_cadence_flags(p, d)
    _add_speed_flags(p, d)
    add_no_progress(p)
    add_json(p, "the last epoch's metrics (and learnt CPTs' errors)")
    p.set_defaults(func=_main)


def _add_model_flags(p, d, gan) -> None:
    """What is trained, on what, where to: model, DAG, data, run folder, sizes, Adam."""
    from causalscene.train.config import MODELS

    p.add_argument(
        "--model",
        choices=MODELS,
        default=d.model,
        help="vae: a CausalVAE over --dag (a PlainVAE with --no-dag), by SVI; dcgan: the DCGAN of "
        "Radford et al. 2015 (no DAG, labels ignored)",
    )
    p.add_argument("--dag", type=Path, default=None, help="DAG file or shipped name (faces, rpg)")
    p.add_argument(
        "--data", type=Path, required=True, help="dataset folder (causalscene procgen ...)"
    )
    p.add_argument("--out", type=Path, required=True, help="run folder")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="per process")
    p.add_argument(
        "--lr", type=float, default=None, help=f"Adam's (default {d.lr:g}; dcgan {gan['lr']:g})"
    )
    p.add_argument(
        "--beta1",
        type=float,
        default=None,
        help=f"Adam's (default {d.beta1}; dcgan {gan['beta1']})",
    )
    p.add_argument("--beta2", type=float, default=None, help=f"Adam's (default {d.beta2})")
    p.add_argument(
        "--latent-dim",
        type=int,
        default=None,
        help=f"size of z (default {d.latent_dim}; dcgan {gan['latent_dim']})",
    )
    p.add_argument(
        "--base-channels", type=int, default=d.base_channels, help="width of the conv nets"
    )
    p.add_argument(
        "--likelihood", choices=["gaussian", "laplace", "cbernoulli"], default=d.likelihood
    )


def _add_objective_flags(p, d) -> None:
    """Resume, and the terms of the objective (CPTs, plain VAE, SDR, label consistency)."""
    p.add_argument("--resume", action="store_true", help="continue from RUN/checkpoint.pt")
    p.add_argument("--learn-cpts", action="store_true", help="learn the CPTs (Dirichlet prior)")
    p.add_argument("--no-dag", action="store_true", help="a plain VAE: the decoder sees only z")
    p.add_argument("--sdr-weight", type=float, default=d.sdr_weight, help="SDR penalty weight")
    p.add_argument(
        "--consistency-weight",
        type=float,
        default=d.consistency_weight,
        help="weight per pixel of the decoder's label-consistency term (do() on one random label "
        "per image, read back by the frozen classifier); 0: the plain ELBO",
    )
    p.add_argument(
        "--consistency-fraction",
        type=float,
        default=d.consistency_fraction,
        help="share of each batch the consistency term is computed on (an unbiased estimate of "
        "the term at that share of its cost)",
    )


def _add_cadence_flags(p, d) -> None:
    """How much data, and how often the run checkpoints, evaluates and draws its grids."""
    p.add_argument("--max-images", type=int, default=None, help="use only the first N images")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help="steps")
    p.add_argument(
        "--eval-every",
        type=int,
        default=d.eval_every,
        help="epochs between the held-out ELBO and the grids (and after the last)",
    )
    p.add_argument(
        "--save-every",
        type=int,
        default=d.save_every,
        help="epochs between epoch-end checkpoints (and after the last)",
    )


def _add_speed_flags(p, d) -> None:
    """Precision, memory layout, the collapsed label sites, the spike guard, the CUDA graph."""
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU)")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the networks (fused elementwise work; a one-off compile per batch "
        "shape, worth it on long runs)",
    )
    p.add_argument(
        "--collapse-labels",
        action="store_true",
        help="complete labels + fixed CPTs: add the exact log p(labels) as a precomputed constant "
        "instead of tracing the DAG sites every step (same ELBO and gradient; faster on GPU)",
    )
    p.add_argument(
        "--spike-factor",
        type=float,
        default=d.spike_factor,
        help="clip a gradient whose norm exceeds this many times the recent mean (0: off)",
    )
    p.add_argument(
        "--cuda-graph",
        action="store_true",
        help="capture the whole step as one CUDA graph and replay it (VAEs on CUDA; under "
        "torchrun each process captures its own, the gradients' all-reduce inside; removes "
        "Pyro's per-step Python overhead; drops each epoch's last incomplete batch)",
    )


def config_from_args(args):
    from causalscene.train.config import TrainConfig

    return TrainConfig.for_model(
        args.model,
        dag=str(args.dag) if args.dag else None,
        data=str(args.data),
        out=str(args.out),
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        beta1=args.beta1,
        beta2=args.beta2,
        latent_dim=args.latent_dim,
        likelihood=args.likelihood,
        base_channels=args.base_channels,
        device=args.device,
        seed=args.seed,
        learn_cpts=args.learn_cpts,
        no_dag=args.no_dag,
        sdr_weight=args.sdr_weight,
        consistency_weight=args.consistency_weight,
        consistency_fraction=args.consistency_fraction,
        max_images=args.max_images,
        checkpoint_every=args.checkpoint_every,
        eval_every=args.eval_every,
        save_every=args.save_every,
        bf16=args.bf16,
        channels_last=args.channels_last,
        compile=args.compile,
        progress=not args.no_progress,
        collapse_labels=args.collapse_labels,
        cuda_graph=args.cuda_graph,
        spike_factor=args.spike_factor,
    )


def _main(args) -> int:
    from causalscene.options import VERB_RANGES, check_numbers, check_out_folder
    from causalscene.train import TrainingDiverged, train_run
    from causalscene.train.callbacks import epoch_summary

    check_numbers(args, VERB_RANGES["train"], flags=True)  # before any work: one line, exit 2
    check_out_folder(args.out)
    config = config_from_args(args)
    try:
        model, history = train_run(config, resume=args.resume)
    except TrainingDiverged as exc:
        print(f"causalscene train: {exc}", file=sys.stderr)
        return 1
    cpts_file = Path(config.out or ".") / "cpts.json"
    cpts = {}
    if getattr(model, "learn_cpts", False) and cpts_file.is_file():
        import json

        cpts = json.loads(cpts_file.read_text())
    if args.json:
        print_json(
            {"run": config.out, "last_epoch": history[-1] if history else None, "cpts": cpts}
        )
        return 0
    if history:
        last = history[-1]
        print(
            f"epoch {last['epoch']}: {epoch_summary(last)} "
            f"({last['images_per_s']:.0f} images/s on {last['device']})"
        )
    for node, row in cpts.items():
        print(f"  CPT {node:18s} max |learned - true| = {row['max_abs_error']:.3f}")
    return 0
