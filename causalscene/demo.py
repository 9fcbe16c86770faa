"""The demo: the whole story, end to end, on an embedded default (``causalscene demo``, ``make demo``).

Twelve steps, each the library call behind one verb (its command line is reported as it goes, so
every step can be repeated by hand): draw the DAG and answer the tutorial's queries exactly;
generate a small rpg and a small faces dataset; train a CausalVAE on the fight scenes and a plain
VAE on the faces; draw images for condition vs do and a counterfactual; run CAGE on the faces
generator against the faces DAG; find modules in its decoder; and write ``OUT/index.html``.

This module imports only the standard library and numpy at load time (the CLI reads
:class:`DemoConfig`'s defaults while it builds its parser); each step imports what it needs.
"""

from __future__ import annotations

import csv
import logging
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

if TYPE_CHECKING:
    from causalscene.dag import CausalDAG
    from causalscene.queries import QueryResult

__all__ = ["DemoConfig", "DemoObserver", "DemoStep", "run_demo", "tutorial_queries"]

log = logging.getLogger(__name__)

#: the tutorial's questions
CONDITION = {"action": "attack"}
FACTUAL = {"actor": "satyr", "reactor": "satyr", "action": "attack", "reaction": "dying"}
COUNTERFACTUAL_DO = {"reactor": "golem"}
#: the dataset items whose counterfactuals are drawn: the first ones with this factual value
COUNTERFACTUAL_SOURCE = {"reactor": "satyr"}
STEPS = 12

T = TypeVar("T")


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


@dataclass(frozen=True)
class DemoStep:
    """One numbered step as it starts; ``causalscene *argv`` repeats it (None: no verb does)."""

    number: int
    total: int
    title: str
    argv: tuple[str, ...] | None
    elapsed: float  #: seconds since the demo started


class DemoObserver:
    """What the demo tells its caller as it goes; every method does nothing here (the CLI's
    observer prints)."""

    def step(self, step: DemoStep) -> None:
        """A step starts."""

    def queries(self, results: Sequence[QueryResult]) -> None:
        """The exact answers to the tutorial's condition, do and counterfactual questions."""

    def finished(self, seconds: float) -> None:
        """Every step is done; the report is written."""


class _Steps:
    """Numbered, timed steps, each announced (log and observer) with its command line."""

    def __init__(self, total: int, observer: DemoObserver):
        self.total = total
        self.observer = observer
        self.done = 0
        self.start = time.perf_counter()
        self.timings: dict[str, float] = {}

    def run(self, title: str, argv: list[str] | None, fn: Callable[..., T], *args: Any) -> T:
        self.done += 1
        step = DemoStep(
            self.done,
            self.total,
            title,
            tuple(argv) if argv is not None else None,
            time.perf_counter() - self.start,
        )
        log.info("step %d/%d: %s", step.number, step.total, title)
        if argv is not None:
            log.info("$ causalscene %s", " ".join(argv))
        self.observer.step(step)
        t0 = time.perf_counter()
        result = fn(*args)
        self.timings[title] = round(time.perf_counter() - t0, 2)
        return result


def _cli(*words: Any, **flags: Any) -> list[str]:
    """A command line: ``words`` then ``--flag value`` (``True``: the bare flag; a list: values)."""
    argv = [str(w) for w in words]
    for name, value in flags.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif isinstance(value, (list, tuple)):
            argv += [flag, *map(str, value)]
        else:
            argv += [flag, str(value)]
    return argv


def _assignments(values: Mapping[str, str]) -> list[str]:
    return [f"{k}={v}" for k, v in values.items()]


# ------------------------------------------------------------------------------------ the run
def run_demo(config: DemoConfig, observer: DemoObserver | None = None) -> Path:
    """Run every step into ``config.out`` (replaced); returns the path of ``index.html``."""
    from causalscene.dag import CausalDAG, shipped_dag_path
    from causalscene.utils import atomic_write_json, write_run_info

    out = Path(config.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    write_run_info(out, config, config.seed)
    steps = _Steps(STEPS, observer or DemoObserver())
    rpg_dag = shipped_dag_path("rpg_fight")
    dag_png = out / "dags" / "rpg_fight.png"
    steps.run(
        "draw the DAGs", _cli("dag", "draw", rpg_dag, out=dag_png), _draw_dag, rpg_dag, dag_png
    )
    main_dag = CausalDAG.shipped("rpg_fight")
    title = "exact queries: condition vs do, and a counterfactual"
    exact = steps.run(title, None, _exact_queries, main_dag, out, steps.observer)
    _data_steps(config, steps)
    _train_steps(config, steps)
    _rung_steps(config, steps, main_dag)
    _faces_steps(config, steps)
    page = steps.run("write the report", None, _write_report, out, exact, steps.timings)
    total = time.perf_counter() - steps.start
    atomic_write_json(
        out / "timings.json",
        {"steps_seconds": steps.timings, "total_seconds": round(total, 1), "device": config.device},
    )
    log.info("demo finished in %.0f s", total)
    steps.observer.finished(total)
    return page


def _draw_dag(path: Path, png: Path) -> None:
    from causalscene.dag import CausalDAG
    from causalscene.plots import draw_dag

    draw_dag(CausalDAG.load(path), png)


def tutorial_queries(dag: CausalDAG) -> dict[str, QueryResult]:
    """The tutorial's questions on the fight scene, answered exactly: the prior of the actor's
    attack skill, given an attack, under do(attack), and the counterfactual reaction."""
    from causalscene import queries

    return {
        "prior": queries.condition(dag, ["actor_attack"]),
        "condition": queries.condition(dag, ["actor_attack"], CONDITION),
        "intervention": queries.intervene(dag, ["actor_attack"], CONDITION),
        "counterfactual": queries.counterfactual(dag, ["reaction"], FACTUAL, COUNTERFACTUAL_DO),
    }


def _exact_queries(dag: CausalDAG, out: Path, observer: DemoObserver) -> dict[str, QueryResult]:
    from causalscene.utils import atomic_write_json

    results = tutorial_queries(dag)
    observer.queries([results[k] for k in ("condition", "intervention", "counterfactual")])
    atomic_write_json(
        out / "queries" / "queries.json", {k: v.to_dict() for k, v in results.items()}
    )
    return results


# ------------------------------------------------------------------------------- steps 3-4
def _data_steps(config: DemoConfig, steps: _Steps) -> None:
    """The fight scenes and the faces, procedurally (labels sampled from their DAGs)."""
    for name, title, n in (
        ("rpg", "procedural fight scenes", config.rpg_images),
        ("faces", "procedural faces", config.faces_images),
    ):
        folder = Path(config.out) / "data" / name
        argv = _cli(
            "procgen", name, n=n, size=config.image_size, seed=config.seed, out=folder, preview=True
        )
        steps.run(title, argv, _procgen, name, n, config, folder)


def _procgen(name: str, n: int, config: DemoConfig, folder: Path) -> Path:
    from causalscene import procgen

    workers = procgen.default_workers()
    return procgen.make_dataset(
        name,
        n,
        config.image_size,
        config.seed,
        folder,
        workers=workers,
        progress=True,
        preview=True,
    )


# ------------------------------------------------------------------------------- steps 5-6
def _train_steps(config: DemoConfig, steps: _Steps) -> None:
    """A CausalVAE on the fight scenes (with their DAG) and a plain VAE on the faces (none)."""
    from causalscene.dag import shipped_dag_path

    out = Path(config.out)
    for name, title, dag, epochs in (
        (
            "rpg",
            "train the CausalVAE on the fight scenes (SVI, hidden nodes enumerated)",
            shipped_dag_path("rpg_fight"),
            config.rpg_epochs,
        ),
        (
            "faces",
            "train a plain VAE on the faces (the black box CAGE probes)",
            None,
            config.faces_epochs,
        ),
    ):
        data, run = out / "data" / name, out / "runs" / name
        flags = {"dag": dag} if dag is not None else {"no_dag": True}
        argv = _cli("train", **flags, data=data, out=run, epochs=epochs, **_common_flags(config))
        steps.run(title, argv, _train, config, dag, data, run, epochs)


def _common_flags(config: DemoConfig) -> dict[str, Any]:
    return {"latent_dim": config.latent_dim, "device": config.device, "seed": config.seed}


def _train(config: DemoConfig, dag_path: Path | None, data: Path, run: Path, epochs: int) -> None:
    """What ``causalscene train`` does with these flags: a new model fitted by SVI into ``run``."""
    from causalscene.train import TrainConfig, train_run

    train_config = TrainConfig(
        dag=str(dag_path) if dag_path else None,
        data=str(data),
        out=str(run),
        epochs=epochs,
        latent_dim=config.latent_dim,
        device=config.device,
        seed=config.seed,
        no_dag=dag_path is None,
    )
    _, history = train_run(train_config)
    if history:
        log.info("%s: held-out ELBO %.1f", run, history[-1]["heldout_elbo"])


# ------------------------------------------------------------------------------- steps 7-9
def _rung_steps(config: DemoConfig, steps: _Steps, dag: CausalDAG) -> None:
    """Images given action = attack, under do(action = attack), and counterfactuals."""
    from causalscene.generate import write_counterfactual_images, write_query_images

    out, seed, device = Path(config.out), config.seed, config.device
    run, data, pics = out / "runs" / "rpg", out / "data" / "rpg", out / "images"
    common = {"seed": seed, "device": device}
    for title, kind, png in (
        ("images given action = attack", "evidence", pics / "condition_attack.png"),
        ("images under do(action = attack)", "do", pics / "do_attack.png"),
    ):
        argv = _cli("generate", run, **{kind: _assignments(CONDITION)}, n=16, out=png, **common)
        evidence, do = (CONDITION, {}) if kind == "evidence" else ({}, CONDITION)
        steps.run(title, argv, write_query_images, run, png, evidence, do, 16, seed, device)
    index = _first_index(data, dag, COUNTERFACTUAL_SOURCE)
    png = pics / "counterfactual_golem.png"
    argv = _cli(
        "counterfactual",
        run,
        index=index,
        data=data,
        do=_assignments(COUNTERFACTUAL_DO),
        out=png,
        **common,
    )

    def counterfactual() -> dict[str, Any]:
        return write_counterfactual_images(
            run, png, COUNTERFACTUAL_DO, index=index, data=data, seed=seed, device=device
        )

    steps.run("counterfactual: this scene, had the reactor been a golem", argv, counterfactual)


def _first_index(folder: Path, dag: CausalDAG, where: dict[str, str], count: int = 4) -> list[int]:
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


# ----------------------------------------------------------------------------- steps 10-11
def _faces_steps(config: DemoConfig, steps: _Steps) -> None:
    """CAGE on the faces generator against the faces DAG, then modules of its decoder."""
    from causalscene.dag import shipped_dag_path

    out = Path(config.out)
    run, faces_dag = out / "runs" / "faces", shipped_dag_path("faces")
    argv = _cli(
        "cage",
        run,
        all_pairs=True,
        dag=faces_dag,
        permutations=config.cage_permutations,
        num_latents=config.cage_latents,
        out=out / "cage",
        seed=config.seed,
        device=config.device,
    )
    steps.run("CAGE on the faces generator vs the faces DAG", argv, _cage, config, run, faces_dag)
    layer = _middle_layer(run)
    argv = _cli(
        "modules",
        run,
        layer=layer,
        k=config.module_k,
        pairs=config.module_pairs,
        out=out / "modules",
        seed=config.seed,
        device=config.device,
    )
    steps.run(f"modules of the faces decoder (layer {layer})", argv, _modules, config, run, layer)


def _cage(config: DemoConfig, run: Path, dag_path: Path) -> None:
    """What ``causalscene cage RUN --all-pairs --dag DAG`` does: every pair of binary attributes."""
    from causalscene.cage import CageConfig
    from causalscene.cage_pipeline import analyze_generator
    from causalscene.dag import CausalDAG
    from causalscene.generators import load_generator
    from causalscene.train import load_dataset

    cage_config = CageConfig(
        num_latents=config.cage_latents,
        permutations=config.cage_permutations,
        seed=config.seed,
        device=config.device,
    )
    cage_config.validate()
    generator, train_config = load_generator(str(run), config.device)
    data = Path(str(train_config.data))
    dag = CausalDAG.load(dag_path)
    images, labels = load_dataset(data, None, None)
    out = Path(config.out) / "cage"
    analyze_generator(generator, images, labels, None, cage_config, out, dag=dag, data=data)


def _middle_layer(run: Path) -> str:
    """The decoder conv layer in the middle of the stack (Besserve et al. probe inner layers)."""
    from causalscene.generators import load_generator
    from causalscene.modularity import hookable_layers

    generator, _ = load_generator(str(run))
    names = [info.name for info in hookable_layers(generator)]
    return names[len(names) // 2]


def _modules(config: DemoConfig, run: Path, layer: str) -> None:
    """What ``causalscene modules RUN --layer L --k K`` does: influence maps, NMF modules."""
    from causalscene.modularity import ModulesConfig, modules_of_run

    modules_config = ModulesConfig(
        layer=layer, ks=(config.module_k,), pairs=config.module_pairs, seed=config.seed
    )
    modules_of_run(str(run), modules_config, Path(config.out) / "modules", config.device)


# --------------------------------------------------------------------------------- step 12
def _write_report(
    out: Path, exact: Mapping[str, QueryResult], timings: Mapping[str, float]
) -> Path:
    """``report.json`` (the sections below) and ``index.html`` built from it."""
    from causalscene.report import build_report
    from causalscene.utils import atomic_write_json

    sections = _sections(out, exact, timings)
    atomic_write_json(out / "report.json", {"title": "causalscene demo", "sections": sections})
    return build_report(out, out)


def _table(result: QueryResult, title: str = "") -> dict[str, Any]:
    frame = result.to_frame()
    return {
        "title": title,
        "columns": list(frame.columns),
        "rows": [[*r[:-1], round(float(r[-1]), 4)] for r in frame.itertuples(index=False)],
    }


def _images(out: Path, *pairs: tuple[Path, str]) -> list[dict[str, str]]:
    """Report entries for the images that exist, with paths relative to ``out``."""
    return [{"path": str(p.relative_to(out)), "caption": c} for p, c in pairs if p.is_file()]


def _figures(folder: Path, count: int = 6) -> list[tuple[Path, str]]:
    """The first ``count`` PNG figures of a folder, captioned by their names."""
    return [(p, p.stem.replace("_", " ")) for p in sorted(folder.glob("*.png"))[:count]]


def _sections(
    out: Path, exact: Mapping[str, QueryResult], timings: Mapping[str, float]
) -> list[dict[str, Any]]:
    return [
        _dag_section(out),
        _rungs_section(out, exact),
        _counterfactual_section(out, exact["counterfactual"]),
        _data_section(out),
        _cage_section(out),
        {
            "title": "Modules of the faces decoder",
            "text": "Counterfactual hybridization (Besserve et al. 2020): influence maps of each channel, clustered into modules by NMF; hybrids take one module's activations from a second sample.",
            "images": _images(out, *_figures(out / "modules")),
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


def _dag_section(out: Path) -> dict[str, Any]:
    return {
        "title": "The scene's causal DAG",
        "text": "rpg_fight.yaml: blue nodes are rendered (they condition the decoder), grey ones hidden (strength, defense, attack skill: never in the labels, summed out exactly).",
        "images": _images(out, (out / "dags" / "rpg_fight.png", "rpg_fight DAG")),
    }


def _rungs_section(out: Path, exact: Mapping[str, QueryResult]) -> dict[str, Any]:
    return {
        "title": "Seeing vs doing: the actor's attack skill",
        "text": "Observing an attack makes a high attack skill more likely; forcing the attack (do) cuts the arrows into action, so the belief stays at its prior. Exact tables (pgmpy variable elimination), then images drawn for each query (node values from the exact posterior, z from the prior).",
        "tables": [
            _table(exact["prior"], "P(actor_attack)"),
            _table(exact["condition"], "P(actor_attack | action = attack)"),
            _table(exact["intervention"], "P(actor_attack | do(action = attack))"),
        ],
        "images": _images(
            out,
            (out / "images" / "condition_attack.png", "scenes given action = attack"),
            (out / "images" / "do_attack.png", "scenes under do(action = attack)"),
        ),
    }


def _counterfactual_section(out: Path, cf: QueryResult) -> dict[str, Any]:
    return {
        "title": "Counterfactual: had the reactor been a golem",
        "text": f"Exact answer for the factual world {FACTUAL}: {cf.assumption}. The images: factual | reconstruction | counterfactual, same latent z (abduction, action, prediction).",
        "tables": [_table(cf, "P(reaction had the reactor been a golem | factual)")],
        "images": _images(
            out,
            (
                out / "images" / "counterfactual_golem.png",
                "factual | reconstruction | counterfactual",
            ),
        ),
    }


def _data_section(out: Path) -> dict[str, Any]:
    training = sorted((out / "runs" / "rpg").glob("*.png"))[-2:]
    return {
        "title": "Data and training",
        "images": _images(
            out,
            (out / "data" / "rpg" / "preview.png", "procedural fight scenes (labels from the DAG)"),
            (out / "data" / "faces" / "preview.png", "procedural faces"),
            *[(p, f"rpg run: {p.stem}") for p in training],
        ),
    }


def _cage_section(out: Path) -> dict[str, Any]:
    rows = _cage_rows(out / "cage")
    return {
        "title": "CAGE: prescribed vs inferred directions (faces)",
        "text": "A plain VAE never saw the DAG; CAGE (Bose et al. 2022) estimates the directions its latent space encodes: τ = |GATE(c→e)| − |GATE(e→c)|, permutation p-values, agreement with the faces DAG.",
        "tables": [rows] if rows else [],
        "images": _images(out, *_figures(out / "cage")),
    }


def _cage_rows(folder: Path) -> dict[str, Any] | None:
    """The comparison table written by ``causalscene cage`` (its CSV), if present."""
    for name in ("comparison.csv", "dag_comparison.csv", "tau.csv"):
        path = folder / name
        if path.is_file():
            with path.open() as handle:
                rows = list(csv.reader(handle))
            if rows:
                return {"title": name, "columns": rows[0], "rows": rows[1:]}
    return None
