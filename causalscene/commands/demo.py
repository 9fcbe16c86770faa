"""``causalscene demo``: the whole story, end to end, on an embedded default (``make demo``).

The demo runs the same verbs a user runs (printed as it goes, so every step can be repeated by
hand): draw the DAGs and answer the tutorial's queries exactly; generate a small rpg and a small
faces dataset; train a CausalVAE on the fight scenes and a plain VAE on the faces; draw images for
condition vs do and a counterfactual; run CAGE on the faces generator against the faces DAG; find
modules in its decoder; and write ``OUT/index.html``.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: the tutorial's questions
CONDITION = {"action": "attack"}
FACTUAL = {"actor": "satyr", "reactor": "satyr", "action": "attack", "reaction": "dying"}
COUNTERFACTUAL_DO = {"reactor": "golem"}


@dataclass
class DemoConfig:
    """Sizes of the demo (``--quick`` shrinks them for tests; ``--device cuda`` shortens it)."""

    out: Path = Path("demo_out")
    seed: int = 0
    device: str = "cpu"
    image_size: int = 64
    rpg_images: int = 4000
    faces_images: int = 4000
    rpg_epochs: int = 8
    faces_epochs: int = 8
    latent_dim: int = 8
    cage_permutations: int = 100
    cage_latents: int = 4000
    module_pairs: int = 96
    module_k: int = 4

    @classmethod
    def quick(cls, **kw: Any) -> DemoConfig:
        """Tiny sizes: the whole pipeline in about a minute (tests)."""
        return cls(
            image_size=32,
            rpg_images=400,
            faces_images=400,
            rpg_epochs=1,
            faces_epochs=1,
            cage_permutations=20,
            cage_latents=400,
            module_pairs=16,
            module_k=2,
            **kw,
        )


def register(subparsers) -> None:
    d = DemoConfig()
    p = subparsers.add_parser("demo", help="the whole story end to end (make demo)")
    p.add_argument("--out", type=Path, default=d.out)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=d.device, help="cpu | cuda | auto")
    p.add_argument("--quick", action="store_true", help="tiny sizes (about a minute)")
    p.add_argument("--epochs", type=int, default=None, help="override both training budgets")
    p.set_defaults(func=_main)


class _Steps:
    """Numbered, timed steps, each echoing the equivalent command line."""

    def __init__(self, total: int):
        from rich.console import Console

        self.console = Console()
        self.total = total
        self.done = 0
        self.start = time.perf_counter()
        self.timings: dict[str, float] = {}

    def run(self, title: str, argv: list[str] | None = None, fn=None):
        from causalscene.cli import main

        self.done += 1
        elapsed = time.perf_counter() - self.start
        self.console.rule(
            f"[bold]step {self.done}/{self.total}[/bold] {title}  [dim]({elapsed:.0f} s so far)[/dim]"
        )
        t0 = time.perf_counter()
        if argv is not None:
            self.console.print("[dim]$ causalscene " + " ".join(argv) + "[/dim]")
            code = main(argv)
            if code != 0:
                raise RuntimeError(f"step '{title}' failed (exit status {code})")
            result = None
        else:
            result = fn()
        self.timings[title] = round(time.perf_counter() - t0, 2)
        return result


def run_demo(config: DemoConfig) -> Path:
    """Run every step; returns the path of ``index.html``."""
    from causalscene import queries
    from causalscene.dag import CausalDAG, shipped_dag_path
    from causalscene.utils import atomic_write_json, write_run_info

    out = Path(config.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    write_run_info(out, config, config.seed)
    s = str(config.seed)
    dev = config.device
    rpg_dag = str(shipped_dag_path("rpg_fight"))
    faces_dag = str(shipped_dag_path("faces"))
    steps = _Steps(total=12)
    sections: list[dict[str, Any]] = []

    # 1-2: the DAGs and exact queries ---------------------------------------------------
    steps.run(
        "draw the DAGs", ["dag", "draw", rpg_dag, "--out", str(out / "dags" / "rpg_fight.png")]
    )
    main_dag = CausalDAG.shipped("rpg_fight")

    def exact_queries():
        from causalscene.commands.query import print_result

        prior = queries.condition(main_dag, ["actor_attack"])
        seen = queries.condition(main_dag, ["actor_attack"], CONDITION)
        forced = queries.intervene(main_dag, ["actor_attack"], CONDITION)
        cf = queries.counterfactual(main_dag, ["reaction"], FACTUAL, COUNTERFACTUAL_DO)
        for r in (seen, forced, cf):
            print_result(r, steps.console)
        results = {"prior": prior, "condition": seen, "intervention": forced, "counterfactual": cf}
        atomic_write_json(
            out / "queries" / "queries.json", {k: v.to_dict() for k, v in results.items()}
        )
        return results

    exact = steps.run("exact queries: condition vs do, and a counterfactual", fn=exact_queries)

    # 3-4: data -------------------------------------------------------------------------
    data = out / "data"
    size = str(config.image_size)
    steps.run(
        "procedural fight scenes",
        [
            "procgen",
            "rpg",
            "--n",
            str(config.rpg_images),
            "--size",
            size,
            "--seed",
            s,
            "--out",
            str(data / "rpg"),
            "--preview",
        ],
    )
    steps.run(
        "procedural faces",
        [
            "procgen",
            "faces",
            "--n",
            str(config.faces_images),
            "--size",
            size,
            "--seed",
            s,
            "--out",
            str(data / "faces"),
            "--preview",
        ],
    )

    # 5-6: training ---------------------------------------------------------------------
    runs = out / "runs"
    common = ["--latent-dim", str(config.latent_dim), "--device", dev, "--seed", s]
    steps.run(
        "train the CausalVAE on the fight scenes (SVI, hidden nodes enumerated)",
        [
            "train",
            "--dag",
            rpg_dag,
            "--data",
            str(data / "rpg"),
            "--out",
            str(runs / "rpg"),
            "--epochs",
            str(config.rpg_epochs),
            *common,
        ],
    )
    steps.run(
        "train a plain VAE on the faces (the black box CAGE probes)",
        [
            "train",
            "--no-dag",
            "--data",
            str(data / "faces"),
            "--out",
            str(runs / "faces"),
            "--epochs",
            str(config.faces_epochs),
            *common,
        ],
    )

    # 7-9: the three rungs as pictures ----------------------------------------------------
    pics = out / "images"
    ev = [f"{k}={v}" for k, v in CONDITION.items()]
    steps.run(
        "images given action = attack",
        [
            "generate",
            str(runs / "rpg"),
            "--evidence",
            *ev,
            "--n",
            "16",
            "--out",
            str(pics / "condition_attack.png"),
            "--seed",
            s,
            "--device",
            dev,
        ],
    )
    steps.run(
        "images under do(action = attack)",
        [
            "generate",
            str(runs / "rpg"),
            "--do",
            *ev,
            "--n",
            "16",
            "--out",
            str(pics / "do_attack.png"),
            "--seed",
            s,
            "--device",
            dev,
        ],
    )
    index = _first_index(data / "rpg", main_dag, {"reactor": "satyr"})
    do = [f"{k}={v}" for k, v in COUNTERFACTUAL_DO.items()]
    steps.run(
        "counterfactual: this scene, had the reactor been a golem",
        [
            "counterfactual",
            str(runs / "rpg"),
            "--index",
            *map(str, index),
            "--data",
            str(data / "rpg"),
            "--do",
            *do,
            "--out",
            str(pics / "counterfactual_golem.png"),
            "--seed",
            s,
            "--device",
            dev,
        ],
    )

    # 10-11: CAGE and modules on the faces generator --------------------------------------
    steps.run(
        "CAGE on the faces generator vs the faces DAG",
        [
            "cage",
            str(runs / "faces"),
            "--all-pairs",
            "--dag",
            faces_dag,
            "--permutations",
            str(config.cage_permutations),
            "--num-latents",
            str(config.cage_latents),
            "--out",
            str(out / "cage"),
            "--seed",
            s,
            "--device",
            dev,
        ],
    )
    layer = _middle_layer(runs / "faces")
    steps.run(
        f"modules of the faces decoder (layer {layer})",
        [
            "modules",
            str(runs / "faces"),
            "--layer",
            layer,
            "--k",
            str(config.module_k),
            "--pairs",
            str(config.module_pairs),
            "--out",
            str(out / "modules"),
            "--seed",
            s,
            "--device",
            dev,
        ],
    )

    # 12: the report -------------------------------------------------------------------
    def report():
        from causalscene.report import build_report

        sections.extend(_sections(out, exact, main_dag, faces_dag, steps.timings))
        atomic_write_json(out / "report.json", {"title": "causalscene demo", "sections": sections})
        return build_report(out, out)

    page = steps.run("write the report", fn=report)
    total = time.perf_counter() - steps.start
    atomic_write_json(
        out / "timings.json",
        {"steps_seconds": steps.timings, "total_seconds": round(total, 1), "device": dev},
    )
    steps.console.print(f"demo finished in {total:.0f} s")
    return page


def _first_index(folder: Path, dag, where: dict[str, str], count: int = 4) -> list[int]:
    """Indices of the first ``count`` dataset items matching ``where`` (for the counterfactual)."""
    from causalscene.datasets import load_arrays

    _, labels = load_arrays(folder)
    keep = np.ones(len(next(iter(labels.values()))), bool)
    for node, state in where.items():
        keep &= labels[node] == dag.state_index(node, state)
    found = np.flatnonzero(keep)[:count]
    if not len(found):
        raise ValueError(f"no item with {where} in {folder}")
    return [int(i) for i in found]


def _middle_layer(run: Path) -> str:
    """The decoder conv layer in the middle of the stack (Besserve et al. probe inner layers)."""
    from causalscene.generators import load_generator
    from causalscene.modularity import hookable_layers

    generator, _ = load_generator(str(run))
    names = [info.name for info in hookable_layers(generator)]
    return names[len(names) // 2]


def _table(result) -> dict[str, Any]:
    frame = result.to_frame()
    return {
        "title": "",
        "columns": list(frame.columns),
        "rows": [[*r[:-1], round(float(r[-1]), 4)] for r in frame.itertuples(index=False)],
    }


def _sections(out: Path, exact, dag, faces_dag: str, timings) -> list[dict[str, Any]]:
    def rel(path: Path) -> str:
        return str(path.relative_to(out))

    def images(*pairs):
        return [{"path": rel(p), "caption": c} for p, c in pairs if p.is_file()]

    cf = exact["counterfactual"]
    cage_rows = _cage_rows(out / "cage")
    return [
        {
            "title": "The scene's causal DAG",
            "text": "rpg_fight.yaml: blue nodes are rendered (they condition the decoder), grey ones hidden (strength, defense, attack skill: never in the labels, summed out exactly).",
            "images": images((out / "dags" / "rpg_fight.png", "rpg_fight DAG")),
        },
        {
            "title": "Seeing vs doing: the actor's attack skill",
            "text": "Observing an attack makes a high attack skill more likely; forcing the attack (do) cuts the arrows into action, so the belief stays at its prior. Exact tables (pgmpy variable elimination), then images drawn for each query (node values from the exact posterior, z from the prior).",
            "tables": [
                {**_table(exact["prior"]), "title": "P(actor_attack)"},
                {**_table(exact["condition"]), "title": "P(actor_attack | action = attack)"},
                {**_table(exact["intervention"]), "title": "P(actor_attack | do(action = attack))"},
            ],
            "images": images(
                (out / "images" / "condition_attack.png", "scenes given action = attack"),
                (out / "images" / "do_attack.png", "scenes under do(action = attack)"),
            ),
        },
        {
            "title": "Counterfactual: had the reactor been a golem",
            "text": f"Exact answer for the factual world {FACTUAL}: {cf.assumption}. The images: factual | reconstruction | counterfactual, same latent z (abduction, action, prediction).",
            "tables": [
                {**_table(cf), "title": "P(reaction had the reactor been a golem | factual)"}
            ],
            "images": images(
                (
                    out / "images" / "counterfactual_golem.png",
                    "factual | reconstruction | counterfactual",
                )
            ),
        },
        {
            "title": "Data and training",
            "images": images(
                (
                    out / "data" / "rpg" / "preview.png",
                    "procedural fight scenes (labels from the DAG)",
                ),
                (out / "data" / "faces" / "preview.png", "procedural faces"),
                *[
                    (p, f"rpg run: {p.stem}")
                    for p in sorted((out / "runs" / "rpg").glob("*.png"))[-2:]
                ],
            ),
        },
        {
            "title": "CAGE: prescribed vs inferred directions (faces)",
            "text": "A plain VAE never saw the DAG; CAGE (Bose et al. 2022) estimates the directions its latent space encodes: τ = |GATE(c→e)| − |GATE(e→c)|, permutation p-values, agreement with the faces DAG.",
            "tables": [cage_rows] if cage_rows else [],
            "images": images(
                *[(p, p.stem.replace("_", " ")) for p in sorted((out / "cage").glob("*.png"))[:6]]
            ),
        },
        {
            "title": "Modules of the faces decoder",
            "text": "Counterfactual hybridization (Besserve et al. 2020): influence maps of each channel, clustered into modules by NMF; hybrids take one module's activations from a second sample.",
            "images": images(
                *[
                    (p, p.stem.replace("_", " "))
                    for p in sorted((out / "modules").glob("*.png"))[:6]
                ]
            ),
        },
        {
            "title": "Timings",
            "tables": [
                {
                    "title": "seconds per step",
                    "columns": ["step", "seconds"],
                    "rows": [[k, v] for k, v in timings.items()],
                }
            ],
        },
    ]


def _cage_rows(folder: Path) -> dict[str, Any] | None:
    """The comparison table written by ``causalscene cage`` (its CSV), if present."""
    import csv

    for name in ("comparison.csv", "dag_comparison.csv", "tau.csv"):
        path = folder / name
        if path.is_file():
            with path.open() as handle:
                rows = list(csv.reader(handle))
            if rows:
                return {"title": name, "columns": rows[0], "rows": rows[1:]}
    return None


def _main(args) -> int:
    overrides = {"out": args.out, "seed": args.seed, "device": args.device}
    config = DemoConfig.quick(**overrides) if args.quick else DemoConfig(**overrides)
    if args.epochs is not None:
        config.rpg_epochs = config.faces_epochs = args.epochs
    page = run_demo(config)
    print(json.dumps({"report": str(page)}))
    print(f"The report is at {page}")
    return 0
