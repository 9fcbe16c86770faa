"""The demo: the whole story, end to end, on an embedded default (``causalscene demo``, ``make demo``).

Twelve steps, each the library call behind one verb (its command line is reported as it goes, so
every step can be repeated by hand): draw the DAG and answer the tutorial's queries exactly;
generate small rpg and faces datasets; train a plain VAE on the faces live, on this machine (SVI);
draw images given action = attack and under do(action = attack) with the *pretrained* fight-scene
CausalVAE (:mod:`causalscene.pretrained`) and read what they show with the factorial image probe
(:mod:`causalscene.readoff`); a counterfactual with the same model; run CAGE on the live faces VAE
against the faces DAG; find modules in the pretrained faces decoder; and write ``OUT/index.html``
(its sections: :mod:`causalscene.demo_report`).

This module imports only the standard library and numpy at load time (the CLI reads
:class:`DemoConfig`'s defaults while it builds its parser); each step imports what it needs.
"""

from __future__ import annotations

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
#: what the images are asked: rendered nodes upstream of ``action`` (the probe reads only those)
READOFF_NODES = ("actor_type", "actor")
STEPS = 12

T = TypeVar("T")


@dataclass
class DemoConfig:
    """Sizes of the demo (``--quick`` shrinks them for tests; ``--device cuda`` shortens it).

    The fight scenes are 64 px in both modes, the pretrained model's size (the counterfactual
    starts from dataset images); the faces 32 px, where a VAE trained live on a CPU learns enough
    for CAGE's probes (measured at 64 px and 8 epochs: gender and age probes fall below CAGE's
    0.75 accuracy, and every DAG edge is unreliable)."""

    out: Path = Path("demo_out")
    seed: int = 0
    device: str = "cpu"
    progress: bool = True  #: progress bars (procgen, training) on stderr
    image_size: int = 64  #: of the fight scenes (the pretrained models' size)
    faces_size: int = 32  #: of the faces the live VAE learns
    rpg_images: int = 500  #: the counterfactual's source scenes (and the data preview)
    faces_images: int = 4000  #: the live VAE's training set and CAGE's labelled images
    faces_epochs: int = 12  #: the live training (CPU)
    latent_dim: int = 16  #: of the live VAE
    readoff_images: int = 1024  #: generated images per query whose upstream nodes ψ reads
    cage_permutations: int = 100
    cage_latents: int = 4000
    cage_grids: int = 3  #: counterfactual grids shown (DAG edges first)
    module_pairs: int = 96
    module_k: int = 4

    @classmethod
    def quick(cls, **kw: Any) -> DemoConfig:
        """Tiny sizes: the whole pipeline in about a minute (tests)."""
        return cls(
            rpg_images=120,
            faces_images=400,
            faces_epochs=1,
            readoff_images=48,
            cage_permutations=20,
            cage_latents=400,
            cage_grids=2,
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
    _train_step(config, steps)
    _rung_steps(config, steps, main_dag)
    _faces_steps(config, steps)
    page = steps.run("write the report", None, _write_report, config, exact, steps.timings)
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
    for name, title, n, size in (
        ("rpg", "procedural fight scenes", config.rpg_images, config.image_size),
        ("faces", "procedural faces", config.faces_images, config.faces_size),
    ):
        folder = Path(config.out) / "data" / name
        argv = _cli("procgen", name, n=n, size=size, seed=config.seed, out=folder, preview=True)
        steps.run(title, argv, _procgen, name, n, size, config, folder)


def _procgen(name: str, n: int, size: int, config: DemoConfig, folder: Path) -> Path:
    from causalscene import procgen

    workers = procgen.default_workers()
    return procgen.make_dataset(
        name,
        n,
        size,
        config.seed,
        folder,
        workers=workers,
        progress=config.progress,
        preview=True,
    )


# --------------------------------------------------------------------------------- step 5
def _train_step(config: DemoConfig, steps: _Steps) -> None:
    """A plain VAE on the faces, trained live by SVI (CAGE's black box: it never sees a DAG)."""
    out = Path(config.out)
    data, run = out / "data" / "faces", out / "runs" / "faces"
    flags = {"latent_dim": config.latent_dim, "device": config.device, "seed": config.seed}
    argv = _cli("train", no_dag=True, data=data, out=run, epochs=config.faces_epochs, **flags)
    title = "train a plain VAE on the faces, live on this machine (SVI)"
    steps.run(title, argv, _train, config, data, run)


def _train(config: DemoConfig, data: Path, run: Path) -> None:
    """What ``causalscene train --no-dag`` does with these flags: a new model fitted by SVI."""
    from causalscene.train import TrainConfig, train_run

    train_config = TrainConfig(
        data=str(data),
        out=str(run),
        epochs=config.faces_epochs,
        latent_dim=config.latent_dim,
        device=config.device,
        seed=config.seed,
        no_dag=True,
        progress=config.progress,
    )
    _, history = train_run(train_config)
    if history:
        log.info("%s: held-out ELBO %.1f", run, history[-1]["heldout_elbo"])


# ------------------------------------------------------------------------------- steps 6-9
def _rung_steps(config: DemoConfig, steps: _Steps, dag: CausalDAG) -> None:
    """With the pretrained fight-scene CausalVAE: images given action = attack and under
    do(action = attack), what they show of the upstream nodes, and counterfactuals."""
    from causalscene import pretrained
    from causalscene.generate import write_query_images

    out, seed, device = Path(config.out), config.seed, config.device
    run, pics = pretrained.path("rpg"), out / "images"
    common = {"seed": seed, "device": device}
    for title, kind, png in (
        (
            "images given action = attack (pretrained model)",
            "evidence",
            pics / "condition_attack.png",
        ),
        ("images under do(action = attack) (pretrained model)", "do", pics / "do_attack.png"),
    ):
        argv = _cli("generate", run, **{kind: _assignments(CONDITION)}, n=16, out=png, **common)
        evidence, do = (CONDITION, {}) if kind == "evidence" else ({}, CONDITION)
        steps.run(title, argv, write_query_images, run, png, evidence, do, 16, seed, device)
    title = "what the images say: upstream nodes read off by the factorial probe"
    steps.run(title, None, _read_off, config, run)
    _counterfactual_step(config, steps, dag, run)


def _read_off(config: DemoConfig, run: Path) -> dict[str, Any]:
    """``images/readoff.{json,png}``: ψ's read of :data:`READOFF_NODES` on images generated given
    :data:`CONDITION` and under do(:data:`CONDITION`), beside the exact distributions."""
    from causalscene.generate import load_causal
    from causalscene.plots import plot_readoff
    from causalscene.readoff import load_or_fit_probe, read_off_queries
    from causalscene.utils import atomic_write_json

    model, _ = load_causal(run, config.device)
    data = Path(config.out) / "data" / "rpg"
    probe, about = load_or_fit_probe(run, model, data, config.seed)
    result = read_off_queries(
        model, probe, READOFF_NODES, CONDITION, config.readoff_images, config.seed
    )
    result["probe"] = about
    atomic_write_json(Path(config.out) / "images" / "readoff.json", result)
    plot_readoff(result, Path(config.out) / "images" / "readoff.png")
    return result


def _counterfactual_step(config: DemoConfig, steps: _Steps, dag: CausalDAG, run: Path) -> None:
    from causalscene.generate import write_counterfactual_images

    out, seed, device = Path(config.out), config.seed, config.device
    data = out / "data" / "rpg"
    index = _first_index(data, dag, COUNTERFACTUAL_SOURCE)
    png = out / "images" / "counterfactual_golem.png"
    argv = _cli(
        "counterfactual",
        run,
        index=index,
        data=data,
        do=_assignments(COUNTERFACTUAL_DO),
        out=png,
        seed=seed,
        device=device,
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
    """CAGE on the live faces VAE against the faces DAG, then modules of the pretrained faces
    decoder."""
    from causalscene import pretrained
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
    steps.run("CAGE on the live faces VAE vs the faces DAG", argv, _cage, config, run, faces_dag)
    model = pretrained.path("faces")
    layer = _middle_layer(model)
    argv = _cli(
        "modules",
        model,
        layer=layer,
        k=config.module_k,
        pairs=config.module_pairs,
        out=out / "modules",
        seed=config.seed,
        device=config.device,
    )
    title = f"modules of the pretrained faces decoder (layer {layer})"
    steps.run(title, argv, _modules, config, model, layer)


def _cage(config: DemoConfig, run: Path, dag_path: Path) -> None:
    """What ``causalscene cage RUN --all-pairs --dag DAG`` does (every pair of binary attributes),
    with the figures the page shows: the DAG comparison, τ(α) and the nulls of the DAG's edges,
    and the counterfactual grids of :func:`causalscene.demo_report.chosen_cage_grids`."""
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
    analysis = analyze_generator(
        generator, images, labels, None, cage_config, out, dag=dag, data=data, figures=False
    )
    _cage_figures(config, generator, analysis, dag, out)


def _cage_figures(
    config: DemoConfig, generator: Any, analysis: Any, dag: CausalDAG, out: Path
) -> None:
    """The DAG comparison; τ(α) and the permutation nulls of the pairs that are DAG edges (all
    36 pairs would make figures too large to read); the chosen pairs' counterfactual grids."""
    from causalscene import plots
    from causalscene.cage_pipeline import counterfactual_grid
    from causalscene.demo_report import chosen_cage_grids

    result, comparison = analysis.result, analysis.comparison
    plots.plot_dag_comparison(dag, comparison, out / "dag_comparison.png")
    edges = [
        (r["cause"], r["effect"]) for r in comparison.rows if r["relation"] in ("c->e", "e->c")
    ]
    sweep = {
        "alpha": result.sweep["alpha"],
        **{f"{c}:{e}": result.sweep[f"{c}:{e}"] for c, e in edges},
    }
    plots.plot_tau_vs_alpha(sweep, out / "tau_vs_alpha.png", title="pairs with a DAG edge")
    pairs = [result.pair(c, e) for c, e in edges]
    plots.plot_null_histograms(pairs, out / "null_histograms.png", title="pairs with a DAG edge")
    for c, e, _ in chosen_cage_grids(comparison.to_dict(), config.cage_grids):
        path = out / f"counterfactuals_{c}_{e}.png"
        sources = result.latents[:3]
        counterfactual_grid(generator, result.probe, sources, c, e, result.config, path)


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
    config: DemoConfig, exact: Mapping[str, QueryResult], timings: Mapping[str, float]
) -> Path:
    """``report.json`` (the sections of :mod:`causalscene.demo_report`) and ``index.html``."""
    from causalscene.demo_report import sections
    from causalscene.report import build_report
    from causalscene.utils import atomic_write_json

    out = Path(config.out)
    page = {"title": "causalscene demo", "sections": sections(config, exact, timings)}
    atomic_write_json(out / "report.json", page)
    return build_report(out, out)
