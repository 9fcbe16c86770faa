"""Verbs on a trained run: ``generate``, ``counterfactual``, ``infer``, ``evaluate``.

- ``causalscene generate RUN [--evidence k=v ...] [--do k=v ...] --n 16 --out grid.png [--json]``
- ``causalscene counterfactual RUN (--image PNG | --index I --data DIR) --do k=v --out cf.png``
- ``causalscene infer RUN --image PNG``
- ``causalscene evaluate RUN [--data DIR]`` → ``RUN/eval.json``

``infer`` and ``evaluate`` print their result as strict JSON with or without ``--json``.
"""

from __future__ import annotations

from pathlib import Path

from causalscene.commands._common import (
    add_device,
    add_json,
    add_no_progress,
    add_seed,
    print_json,
)


def register(subparsers) -> None:
    p = subparsers.add_parser("generate", help="images for a conditional/interventional query")
    p.add_argument("run", type=Path, help="run folder (causalscene train --out)")
    p.add_argument("--evidence", nargs="*", default=[], metavar="NODE=STATE")
    p.add_argument("--do", nargs="*", default=[], metavar="NODE=STATE")
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--out", type=Path, default=Path("generated.png"))
    add_json(p, "each image's node values")
    add_seed(p)
    add_device(p)
    add_no_progress(p, draws_bar=False)
    p.set_defaults(func=_generate)

    p = subparsers.add_parser(
        "counterfactual", help="counterfactual images (abduction, action, prediction)"
    )
    p.add_argument("run", type=Path)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--image", type=Path, nargs="+", help="PNG file(s) (labels read by the classifier)"
    )
    src.add_argument(
        "--index", type=int, nargs="+", help="index(es) into --data (labels from the data)"
    )
    p.add_argument("--data", type=Path, default=None, help="dataset folder for --index")
    p.add_argument("--do", nargs="+", required=True, metavar="NODE=STATE")
    p.add_argument(
        "--mode",
        choices=["map", "sample"],
        default="map",
        help="MAP of the counterfactual rendered nodes (default) or a sample",
    )
    p.add_argument("--out", type=Path, default=Path("counterfactual.png"))
    add_json(p, "the factual and counterfactual node values")
    add_seed(p)
    add_device(p)
    add_no_progress(p, draws_bar=False)
    p.set_defaults(func=_counterfactual)

    p = subparsers.add_parser("infer", help="posterior of the hidden nodes given an image")
    p.add_argument("run", type=Path)
    p.add_argument("--image", type=Path, nargs="+", required=True)
    add_json(p, "the posteriors on one line", always=True)
    add_seed(p)
    add_device(p)
    p.set_defaults(func=_infer)

    p = subparsers.add_parser("evaluate", help="intervention fidelity + counterfactual minimality")
    p.add_argument("run", type=Path)
    p.add_argument("--data", type=Path, default=None, help="labelled data (default: the run's)")
    p.add_argument("--n-per-state", type=int, default=32)
    p.add_argument("--n-counterfactual", type=int, default=48)
    p.add_argument("--probe-epochs", type=int, default=4)
    p.add_argument("--probe-images", type=int, default=3000)
    p.add_argument("--probe-batch-size", type=int, default=128, help="images per probe step")
    p.add_argument(
        "--probe-patience",
        type=int,
        default=2,
        help="stop the probe's training after this many epochs without a held-out accuracy "
        "gain on fresh factorial items (0: run every --probe-epochs epoch)",
    )
    p.add_argument(
        "--probe-tolerance",
        type=float,
        default=0.005,
        help="the least held-out accuracy gain (of any node) that counts as one",
    )
    add_json(p, "the headline scores (all are in RUN/eval.json)", always=True)
    add_seed(p)
    add_device(p)
    add_no_progress(p, draws_bar=False)
    p.set_defaults(func=_evaluate)


def _generate(args) -> int:
    from causalscene.generate import write_query_images
    from causalscene.options import VERB_RANGES, check_numbers, check_out_file
    from causalscene.utils import parse_assignments

    check_numbers(args, VERB_RANGES["generate"], flags=True)  # before any work: one line, exit 2
    check_out_file(args.out)
    evidence = parse_assignments(args.evidence, "evidence")
    do = parse_assignments(args.do, "do")
    rows = write_query_images(args.run, args.out, evidence, do, args.n, args.seed, args.device)
    if args.json:
        print_json({"evidence": evidence, "do": do, "out": args.out, "images": rows})
    else:
        first = ",".join(rows[0].values()) or "unconditional samples, no DAG"
        print(f"wrote {args.out} ({args.n} images; first: {first})")
    return 0


def _counterfactual(args) -> int:
    from causalscene.generate import write_counterfactual_images
    from causalscene.options import VERB_RANGES, check_numbers, check_out_file
    from causalscene.utils import parse_assignments

    check_numbers(args, VERB_RANGES["counterfactual"], flags=True)
    check_out_file(args.out)
    summary = write_counterfactual_images(
        args.run,
        args.out,
        parse_assignments(args.do, "do"),
        images=args.image,
        index=args.index,
        data=args.data,
        mode=args.mode,
        seed=args.seed,
        device=args.device,
    )
    if args.json:
        print_json(summary)
    else:
        print(f"wrote {args.out}: {summary['counterfactual']}")
    return 0


def _infer(args) -> int:
    from causalscene.generate import infer_images
    from causalscene.options import VERB_RANGES, check_numbers

    check_numbers(args, VERB_RANGES["infer"], flags=True)
    result = infer_images(args.run, args.image, args.seed, args.device)
    print_json(result, indent=None if args.json else 2)
    return 0


def _evaluate(args) -> int:
    from causalscene.generate import EvaluationConfig, evaluate_run, refuse_shipped
    from causalscene.options import VERB_RANGES, check_numbers, check_out_file

    check_numbers(args, VERB_RANGES["evaluate"], flags=True)  # before any work: one line, exit 2
    refuse_shipped(args.run)
    check_out_file(args.run / "eval.json", "RUN")
    config = EvaluationConfig(
        n_per_state=args.n_per_state,
        n_counterfactual=args.n_counterfactual,
        probe_epochs=args.probe_epochs,
        probe_images=args.probe_images,
        probe_batch_size=args.probe_batch_size,
        probe_patience=args.probe_patience,
        probe_tolerance=args.probe_tolerance,
        seed=args.seed,
        device=args.device,
    )
    result = evaluate_run(args.run, args.data, config)
    keys = ("fidelity", "preserved", "identity_max_abs_diff", "goals", "probe_training", "frechet")
    print_json({k: result[k] for k in keys})
    return 0
