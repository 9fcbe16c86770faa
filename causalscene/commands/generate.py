"""Verbs on a trained run: ``generate``, ``counterfactual``, ``infer``, ``evaluate``.

- ``causalscene generate RUN [--evidence k=v ...] [--do k=v ...] --n 16 --out grid.png [--json]``
- ``causalscene counterfactual RUN (--image PNG | --index I --data DIR) --do k=v --out cf.png``
- ``causalscene infer RUN --image PNG``
- ``causalscene evaluate RUN [--data DIR]`` → ``RUN/eval.json``
"""

from __future__ import annotations

import json
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("generate", help="images for a conditional/interventional query")
    p.add_argument("run", type=Path, help="run folder (causalscene train --out)")
    p.add_argument("--evidence", nargs="*", default=[], metavar="NODE=STATE")
    p.add_argument("--do", nargs="*", default=[], metavar="NODE=STATE")
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--out", type=Path, default=Path("generated.png"))
    p.add_argument("--json", action="store_true", help="print each image's node values as JSON")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
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
    p.add_argument("--json", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_counterfactual)

    p = subparsers.add_parser("infer", help="posterior of the hidden nodes given an image")
    p.add_argument("run", type=Path)
    p.add_argument("--image", type=Path, nargs="+", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_infer)

    p = subparsers.add_parser("evaluate", help="intervention fidelity + counterfactual minimality")
    p.add_argument("run", type=Path)
    p.add_argument("--data", type=Path, default=None, help="labelled data (default: the run's)")
    p.add_argument("--n-per-state", type=int, default=32)
    p.add_argument("--n-counterfactual", type=int, default=48)
    p.add_argument("--probe-epochs", type=int, default=4)
    p.add_argument("--probe-images", type=int, default=3000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_evaluate)


def _load_causal(run: Path, device: str):
    from causalscene.model import CausalVAE
    from causalscene.train import load_run

    model, config = load_run(run, device)
    if not isinstance(model, CausalVAE):
        raise ValueError(f"{run}: a --no-dag run has no DAG to query")
    return model, config


def _read_png(path: Path, size: int):
    import numpy as np
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = 4096 * 4096
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            if img.size != (size, size):
                img = img.resize((size, size), Image.BILINEAR)
            return np.asarray(img, np.uint8)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise ValueError(f"{path}: not a readable image ({exc})") from None


def _generate(args) -> int:
    from causalscene.generate import sample_images
    from causalscene.plots import save_image_grid
    from causalscene.utils import parse_assignments, set_seed

    set_seed(args.seed)
    model, _ = _load_causal(args.run, args.device)
    evidence = parse_assignments(args.evidence, "evidence")
    do = parse_assignments(args.do, "do")
    images, codes = sample_images(model, evidence=evidence, do=do, n=args.n, seed=args.seed)
    dag = model.query_dag()
    names = dag.decode(codes)
    titles = [",".join(names[k][i] for k in model.rendered) for i in range(args.n)]
    save_image_grid(images, args.out)
    rows = [{k: names[k][i] for k in model.rendered} for i in range(args.n)]
    if args.json:
        print(json.dumps({"evidence": evidence, "do": do, "out": str(args.out), "images": rows}))
    else:
        print(f"wrote {args.out} ({args.n} images; first: {titles[0]})")
    return 0


def _counterfactual(args) -> int:
    import numpy as np
    import torch

    from causalscene.generate import counterfactual_images
    from causalscene.plots import save_image_grid
    from causalscene.train import load_dataset
    from causalscene.utils import parse_assignments, set_seed

    set_seed(args.seed)
    model, config = _load_causal(args.run, args.device)
    do = parse_assignments(args.do, "do")
    labels = None
    if args.image:
        x = np.stack([_read_png(p, model.image_size) for p in args.image])
    else:
        data = args.data or (Path(config.data) if config.data else None)
        if data is None:
            raise ValueError("--index needs --data DIR")
        images, all_labels = load_dataset(data, model.dag)
        bad = [i for i in args.index if not 0 <= i < len(images)]
        if bad:
            raise ValueError(f"--index {bad[0]} out of range (dataset has {len(images)} images)")
        x = images[args.index]
        labels = {k: all_labels[k][args.index] for k in model.rendered}
    res = counterfactual_images(model, x, do, labels, mode=args.mode, seed=args.seed)
    rows = []
    for i in range(len(x)):
        rows += [res["factual"][i], res["reconstruction"][i], res["counterfactual"][i]]
    save_image_grid(torch.stack(rows), args.out, ncol=3)
    dag = model.query_dag()
    summary = {
        "do": do,
        "mode": res["mode"],
        "assumption": res["assumption"],
        "factual": [
            dict(zip(model.rendered, r)) for r in zip(*dag.decode(res["factual_codes"]).values())
        ],
        "counterfactual": [
            dict(zip(model.rendered, r))
            for r in zip(*dag.decode(res["counterfactual_codes"]).values())
        ],
        "out": str(args.out),
        "columns": ["factual", "reconstruction", "counterfactual"],
    }
    print(json.dumps(summary) if args.json else f"wrote {args.out}: {summary['counterfactual']}")
    return 0


def _infer(args) -> int:
    import numpy as np

    from causalscene.generate import infer
    from causalscene.utils import set_seed

    set_seed(args.seed)
    model, _ = _load_causal(args.run, args.device)
    x = np.stack([_read_png(p, model.image_size) for p in args.image])
    res = infer(model, x)
    dag = model.query_dag()
    out = []
    for i, path in enumerate(args.image):
        out.append(
            {
                "image": str(path),
                "shows": {
                    k: dict(zip(dag.states(k), map(float, v[i])))
                    for k, v in res["rendered"].items()
                },
                "hidden": {
                    k: dict(zip(dag.states(k), map(float, v[i]))) for k, v in res["hidden"].items()
                },
            }
        )
    print(json.dumps(out, indent=2))
    return 0


def _evaluate(args) -> int:
    import time

    from causalscene.generate import evaluate
    from causalscene.probes import factorial_source, training_design
    from causalscene.train import load_dataset
    from causalscene.utils import atomic_write_json, set_seed

    set_seed(args.seed)
    model, config = _load_causal(args.run, args.device)
    data = args.data or (Path(config.data) if config.data else None)
    if data is None:
        raise ValueError("evaluate needs --data DIR (the run has no dataset recorded)")
    images, labels = load_dataset(data, model.dag)
    source = factorial_source(data, {node: model.dag.states(node) for node in model.rendered})
    probe = _probe(args, model, images, labels, source)
    n_probe = min(len(images), args.probe_images)
    if source is None and len(images) - n_probe >= args.n_counterfactual:
        # ψ learnt from the data's first images: counterfactuals start from images it never saw
        images, labels = images[n_probe:], {k: v[n_probe:] for k, v in labels.items()}
    tic = time.perf_counter()
    result = evaluate(
        model, probe, images, labels, args.n_per_state, args.n_counterfactual, seed=args.seed
    )
    result["seconds"] = time.perf_counter() - tic
    result["probe_training"] = training_design(source)
    result["run"] = str(args.run)
    result["train_device"] = config.device
    metrics = args.run / "metrics.jsonl"
    if metrics.is_file():
        lines = [json.loads(s) for s in metrics.read_text().splitlines() if s.strip()]
        result["train_seconds"] = sum(r["seconds"] for r in lines)
        result["train_epochs"] = len(lines)
    atomic_write_json(args.run / "eval.json", result)
    print(
        json.dumps(
            {k: result[k] for k in ("fidelity", "preserved", "identity_max_abs_diff", "goals")}
        )
    )
    return 0


def _probe(args, model, images, labels, source=None):
    """The image probe ψ, trained on ground truth (cached as RUN/probe_factorial.pt or probe.pt).

    On procedural data (``source``: :func:`causalscene.probes.factorial_source`) ψ is trained on
    fresh items of that generator with every rendered node drawn uniformly and independently (why:
    that function's docstring). Other data (CelebA) has no renderer, so ψ learns from the data and
    ``eval.json`` says so.

    ψ sees every training image twice: as is and Gaussian-blurred (σ drawn from 0.5-2 px), so
    that it reads attributes off a VAE's smoother images too. (Measured: a probe trained on sharp
    images only read eyeglasses at 100% on real faces but at chance on generated faces that all
    visibly wore glasses.)"""
    import numpy as np

    from causalscene.probes import ImageProbe, factorial_training_set

    path = args.run / ("probe_factorial.pt" if source is not None else "probe.pt")
    if path.is_file():  # cached per design: an older observational probe.pt is not reused
        return ImageProbe.load(path, args.device)
    n = min(len(images), args.probe_images)
    rng = np.random.default_rng(args.seed)
    if source is not None:  # procedural data: ψ learns from a factorial design (docstring)
        images, labels = factorial_training_set(source, n, model.image_size, rng)
    blurred = blur_images(images[:n], rng.uniform(0.5, 2.0, size=n))
    train = np.concatenate([images[:n], blurred])
    codes = {k: np.concatenate([v[:n], v[:n]]) for k, v in labels.items()}
    probe = ImageProbe(model.dag, model.image_size)
    probe.fit(train, codes, epochs=args.probe_epochs, seed=args.seed)
    probe.save(path)
    return probe


def blur_images(images, sigmas, batch: int = 512):
    """Gaussian blur of uint8 NHWC images, one σ (pixels) per image; returns uint8 NHWC."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    out = np.empty_like(images)
    radius = 4
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    for start in range(0, len(images), batch):
        x = torch.from_numpy(np.ascontiguousarray(images[start : start + batch]))
        x = x.permute(0, 3, 1, 2).float()
        sigma = torch.as_tensor(sigmas[start : start + batch], dtype=torch.float32)
        kernel = torch.exp(-0.5 * (offsets[None] / sigma[:, None]) ** 2)
        kernel = kernel / kernel.sum(-1, keepdim=True)  # [b, 2r+1]
        b, c, h, w = x.shape
        y = x.reshape(1, b * c, h, w)
        k = kernel.repeat_interleave(c, 0)  # [b*c, 2r+1]
        y = F.pad(y, (radius, radius, radius, radius), mode="replicate")
        y = F.conv2d(y, k[:, None, None, :], groups=b * c)
        y = F.conv2d(y, k[:, None, :, None], groups=b * c)
        y = y.reshape(b, c, h, w).permute(0, 2, 3, 1)
        out[start : start + batch] = y.round().clamp(0, 255).byte().numpy()
    return out
