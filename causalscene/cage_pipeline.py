"""The CAGE analysis of an image generator, end to end: what ``causalscene cage RUN`` runs.

:func:`analyze_run` loads a training run (its generator, dataset and DAG) and hands them to
:func:`analyze_generator`, which encodes the labelled images, runs :func:`causalscene.cage.run_cage`
and an α sweep, and writes into ``out``: ``cage.json`` (everything), ``tau_table.csv``,
``tau_vs_alpha.png``, ``null_histograms.png``, ``counterfactuals_<c>_<e>.png`` (the same source
latents under do(c) and do(e)) and, with a DAG, ``dag_comparison.{csv,json,png}``.
Reproductions, notebooks and benchmarks call these directly.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from causalscene.cage import CageConfig, CageResult, DagComparison, PairResult
from causalscene.dag import CausalDAG, DAGError
from causalscene.generators import EncodingGenerator, Generator, has_encoder
from causalscene.inversion import InversionConfig
from causalscene.probes import ImageProbe, LatentProbe
from causalscene.tensors import resolve_device

__all__ = [
    "DEFAULT_ALPHAS",
    "CageAnalysis",
    "analyze_run",
    "analyze_generator",
    "binary_attributes",
    "check_binary",
    "encode_images",
    "image_latents",
    "resolve_dag",
]

log = logging.getLogger(__name__)

DEFAULT_ALPHAS = (0.25, 0.5, 1.0, 2.0, 4.0)


@dataclass
class CageAnalysis:
    """What :func:`analyze_generator` found and wrote."""

    result: CageResult
    comparison: DagComparison | None  #: with a DAG: inferred vs prescribed, pair by pair
    payload: dict[str, Any]  #: the contents of ``cage.json``


# ------------------------------------------------------------------------------ a run folder
#: epochs of the image probe ψ that the image outcome reads (the cage verb's --probe-epochs default)
PROBE_EPOCHS = 5


def analyze_run(
    run: str | Path,
    out: str | Path,
    config: CageConfig,
    pairs: str | Sequence[Any] | None = None,
    *,
    data: str | Path | None = None,
    dag: str | None = None,
    max_images: int | None = None,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    probe_epochs: int = PROBE_EPOCHS,
    inversion: InversionConfig | None = None,
    progress: bool = False,
) -> CageAnalysis:
    """CAGE on the generator of training run ``run`` (``pairs=None``: every pair of binary
    attributes), or of any generator spec :func:`~causalscene.generators.load_generator` reads
    (``module:factory``, ``FILE.pt``). The dataset is ``data`` or the run's; the DAG ``dag`` (a
    file or a shipped name) or the run's, else the dataset's (:func:`resolve_dag`). Latents of
    the images: :func:`image_latents` (``inversion`` for a generator without ``encode``)."""
    from causalscene.generators import load_generator
    from causalscene.train import load_dataset

    config.validate()
    config = replace(config, device=str(resolve_device(config.device)))  # auto → cuda or cpu
    generator, train_config = load_generator(str(run), device=config.device)
    if data is None and train_config is not None and train_config.data:
        data = train_config.data
    if data is None:
        what = "the run names" if train_config is not None else "a generator spec names"
        raise ValueError(f"{run}: {what} no dataset; pass --data DIR (labelled images)")
    data = Path(data)
    spec = dag or (train_config.dag if train_config is not None else None)
    dag_found = resolve_dag(spec, Path(run) if Path(run).is_dir() else None, data)
    images, labels = load_dataset(data, None, max_images)
    return analyze_generator(
        generator,
        images,
        labels,
        pairs,
        config,
        out,
        dag=dag_found,
        alphas=alphas,
        probe_epochs=probe_epochs,
        data=data,
        inversion=inversion,
        progress=progress,
    )


def resolve_dag(
    spec: str | None, run_dir: Path | None = None, data: Path | None = None
) -> CausalDAG | None:
    """The DAG to compare with: ``spec`` (a DAG file, or the name of a shipped DAG), else the
    run's ``dag.json``, else the one the dataset's ``meta.json`` names; None when none does."""
    if spec:
        return CausalDAG.load(spec)
    if run_dir is not None and (run_dir / "dag.json").is_file():
        return CausalDAG.from_dict(
            json.loads((run_dir / "dag.json").read_text()), source=str(run_dir)
        )
    if data is not None and (data / "meta.json").is_file():
        return _dag_of_meta(data / "meta.json")
    return None


def _dag_of_meta(meta_path: Path) -> CausalDAG | None:
    """The DAG a dataset's ``meta.json`` holds (``dag.definition``) or names (a shipped DAG)."""
    meta = json.loads(meta_path.read_text())
    name = meta.get("dag") or meta.get("dag_file") or meta.get("generator")
    if isinstance(name, dict) and isinstance(name.get("definition"), dict):
        return CausalDAG.from_dict(name["definition"], source=str(meta_path))
    if isinstance(name, dict):
        name = name.get("name") or name.get("file")
    if not name:
        return None
    stem = Path(str(name)).stem
    for candidate in (stem, f"{stem}_fight"):
        try:
            return CausalDAG.shipped(candidate)
        except DAGError:
            continue
    return None


# ------------------------------------------------------------------------------ inputs
def binary_attributes(labels: Mapping[str, np.ndarray], dag: CausalDAG | None = None) -> list[str]:
    """Label columns that are binary (by the DAG's states when given, else by their codes)."""
    out = []
    for name, codes in labels.items():
        if dag is not None and name in dag:
            if dag.cardinality(name) == 2:
                out.append(name)
        elif set(np.unique(np.asarray(codes))) <= {-1, 0, 1}:
            out.append(name)
    return out


def check_binary(
    pairs: Sequence[tuple[str, str]], labels: Mapping[str, Any], dag: CausalDAG | None
) -> None:
    """``ValueError`` for an attribute of ``pairs`` that the labels lack or the DAG gives more
    than two states."""
    for pair in pairs:
        for a in pair:
            if a not in labels:
                raise ValueError(f"unknown attribute '{a}' (dataset labels: {', '.join(labels)})")
            if dag is not None and a in dag and dag.cardinality(a) != 2:
                raise ValueError(
                    f"attribute '{a}' is not binary ({dag.cardinality(a)} states: "
                    f"{', '.join(dag.states(a))}); CAGE needs binary treatments"
                )


def _device_of(generator: object) -> torch.device:
    """The device of a generator's parameters (CPU for one without any)."""
    parameters = getattr(generator, "parameters", None)
    first = next(iter(parameters()), None) if callable(parameters) else None
    return first.device if first is not None else torch.device("cpu")


@torch.no_grad()
def encode_images(generator: Generator, images: np.ndarray, batch_size: int = 256) -> torch.Tensor:
    """Posterior means ``[N, D]`` (float32, CPU) of uint8 ``[N, H, W, C]`` images; a
    ``ValueError`` for a generator without ``encode`` (:class:`EncodingGenerator`)."""
    from causalscene.tensors import to_float_images

    if not has_encoder(generator):
        raise ValueError(
            f"the generator ({type(generator).__name__}) has no encode(): CAGE needs the latents "
            "of labelled images"
        )
    encoder = cast(EncodingGenerator, generator)
    device = _device_of(generator)
    out = []
    for start in range(0, len(images), batch_size):
        x = to_float_images(images[start : start + batch_size], device)
        out.append(encoder.encode(x).float().cpu())
    return torch.cat(out)


def image_latents(
    generator: Generator,
    images: np.ndarray,
    inversion: InversionConfig | None = None,
    progress: bool = False,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Latents ``[N, D]`` (float32, CPU) of uint8 ``[N, H, W, C]`` images and how they were
    found: ``{"method": "encoder"}`` by ``encode``, else latent inversion of ``decode``
    (:func:`causalscene.inversion.invert` with ``inversion``; its summary, with the images'
    pixel variance beside the reconstruction MSE to judge it by)."""
    if has_encoder(generator):
        return encode_images(generator, images), {"method": "encoder"}
    from causalscene.inversion import invert

    log.info("the generator has no encode(): inverting decode on %d images", len(images))
    found = invert(generator, images, inversion, progress=progress)
    summary = found.summary(images)
    if summary["recon_mse_mean"] > 0.1 * summary["pixel_variance"]:
        log.warning(
            "latent inversion reconstructs poorly (MSE %.3g vs pixel variance %.3g): "
            "try more --invert-steps or --invert-restarts",
            summary["recon_mse_mean"],
            summary["pixel_variance"],
        )
    return found.latents, summary


def _pair_list(
    pairs: str | Sequence[Any] | None, labels: Mapping[str, np.ndarray], dag: CausalDAG | None
) -> list[tuple[str, str]]:
    """``pairs`` parsed, or (``None``) every pair of binary attributes; checked binary."""
    from causalscene.cage import all_pairs, parse_pairs

    if pairs is None:
        attributes = binary_attributes(labels, dag)
        if len(attributes) < 2:
            raise ValueError("--all-pairs needs at least two binary attributes")
        pair_list = all_pairs(attributes)
    else:
        pair_list = parse_pairs(pairs, list(labels))
    check_binary(pair_list, labels, dag)
    return pair_list


# ------------------------------------------------------------------------------ the analysis
def analyze_generator(
    generator: Generator,
    images: np.ndarray,
    labels: Mapping[str, np.ndarray],
    pairs: str | Sequence[Any] | None,
    config: CageConfig,
    out: str | Path,
    dag: CausalDAG | None = None,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    probe_epochs: int = PROBE_EPOCHS,
    image_probe: ImageProbe | None = None,
    probe_training: str | None = None,
    grid_sources: int = 4,
    data: str | Path | None = None,
    figures: bool = True,
    inversion: InversionConfig | None = None,
    progress: bool = False,
) -> CageAnalysis:
    """CAGE on an image generator: encode, probe, GATE/τ/null/MMD, α sweep, figures, tables.

    The latents of ``images`` come from ``encode``, or, for a generator without one, from latent
    inversion with ``inversion`` (:func:`image_latents`); ``cage.json`` says which under
    ``"latents"``.

    ``figures=False`` writes the tables and ``cage.json`` only (no PNGs: with many pairs the
    figures take longer than a small analysis).

    With ``outcome="image"`` the image probe ψ that reads the effect off decoded images learns
    from a factorial design of the procgen generator that made ``data`` (the dataset folder),
    when it renders every involved attribute; else from ``images``. A ψ trained on the data would
    read an effect partly off its cause (the DAG's correlation), so a move along the cause's
    direction would seem to change the effect: the very GATE CAGE measures
    (:func:`causalscene.probes.factorial_source`). A ψ given as ``image_probe`` is used as it
    is; ``probe_training`` then says what it learned from, for ``cage.json`` (as
    :func:`fit_image_probe` returns it)."""
    from causalscene.cage import alpha_sweep, compare_with_dag, run_cage

    config = replace(config, device=str(resolve_device(config.device)))  # auto → cuda or cpu
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pair_list = _pair_list(pairs, labels, dag)
    involved = sorted({a for p in pair_list for a in p})
    if isinstance(generator, torch.nn.Module):
        generator.eval()
    z_train, latents_found = image_latents(generator, images, inversion, progress)
    sub_labels = {a: np.asarray(labels[a]) for a in involved}
    if config.outcome == "image" and image_probe is None:
        image_probe, probe_training = fit_image_probe(
            images, sub_labels, config, probe_epochs, dag, data
        )
    result = run_cage(
        z_train, sub_labels, pair_list, config, generator=generator, image_probe=image_probe
    )
    latents = result.latents
    sweep_z = latents[: min(len(latents), 2000 if config.outcome == "image" else len(latents))]
    # the sweep on the outcomes (and the scale) the GATEs were measured with
    fns = result.outcome_fns
    result.sweep = alpha_sweep(sweep_z, result.probe, pair_list, alphas, config.mode, fns)
    comparison = compare_with_dag(dag, result) if dag is not None else None
    files = {}
    if figures:
        files = _write_figures(generator, result, pair_list, dag, comparison, grid_sources, out)
    return _write_tables(result, comparison, probe_training, files, out, latents_found)


def fit_image_probe(
    images: np.ndarray,
    labels: Mapping[str, np.ndarray],
    config: CageConfig,
    epochs: int,
    dag: CausalDAG | None,
    data: str | Path | None,
) -> tuple[ImageProbe, str]:
    """ψ for the image outcome, trained on the factorial design of ``data``'s procgen generator
    when there is one, else on ``images``; and what it learned from
    (:func:`~causalscene.probes.training_design`)."""
    from causalscene.probes import factorial_source, factorial_training_set, training_design

    involved = list(labels)
    source = None
    if data is not None and dag is not None and all(a in dag for a in involved):
        source = factorial_source(data, {a: dag.states(a) for a in involved})
    probe_images, probe_labels = images, dict(labels)
    if source is not None:
        probe_images, probe_labels = factorial_training_set(
            source, len(images), images.shape[1], config.seed
        )
        probe_labels = {a: probe_labels[a] for a in involved}
    image_probe = ImageProbe({a: 2 for a in involved}, images.shape[1], images.shape[-1])
    image_probe.fit(
        probe_images, probe_labels, epochs=epochs, seed=config.seed, device=config.device
    )
    return image_probe, training_design(source)


def _write_figures(
    generator: Generator,
    result: CageResult,
    pair_list: Sequence[tuple[str, str]],
    dag: CausalDAG | None,
    comparison: DagComparison | None,
    grid_sources: int,
    out: Path,
) -> dict[str, Path]:
    """τ(α), the null histograms, a counterfactual grid per pair and the DAG comparison."""
    from causalscene import plots

    files: dict[str, Path] = {}
    files["tau_vs_alpha"] = plots.plot_tau_vs_alpha(result.sweep, out / "tau_vs_alpha.png")
    files["null_histograms"] = plots.plot_null_histograms(result.pairs, out / "null_histograms.png")
    for c, e in pair_list:
        files[f"counterfactuals_{c}_{e}"] = counterfactual_grid(
            generator,
            result.probe,
            result.latents[:grid_sources],
            c,
            e,
            result.config,
            out / f"counterfactuals_{c}_{e}.png",
        )
    if dag is not None and comparison is not None:
        files["dag_comparison_png"] = plots.plot_dag_comparison(
            dag, comparison, out / "dag_comparison.png"
        )
    return files


def _write_tables(
    result: CageResult,
    comparison: DagComparison | None,
    probe_training: str | None,
    files: dict[str, Path],
    out: Path,
    latents_found: dict[str, Any] | None = None,
) -> CageAnalysis:
    """``tau_table.csv``, the DAG comparison and ``cage.json`` (naming ``files`` too, and how
    the images' latents were found)."""
    from causalscene.utils import atomic_write_json, atomic_write_text

    files = {**files, "tau_table": atomic_write_text(out / "tau_table.csv", tau_csv(result.pairs))}
    payload = result.to_dict()
    if comparison is not None:
        files.update(comparison.save(out))
        payload["comparison"] = comparison.to_dict()
    if probe_training is not None:
        payload["image_probe_training"] = probe_training
    if latents_found is not None:
        payload["latents"] = latents_found
    payload["files"] = {k: str(v) for k, v in files.items()}
    atomic_write_json(out / "cage.json", payload)
    return CageAnalysis(result=result, comparison=comparison, payload=payload)


def tau_csv(pairs: Sequence[PairResult]) -> str:
    """One CSV row per pair: its :meth:`~causalscene.cage.PairResult.summary`."""
    buffer = io.StringIO()
    rows = [p.summary() for p in pairs]
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


@torch.no_grad()
def counterfactual_grid(
    generator: Generator,
    probe: LatentProbe,
    sources: torch.Tensor,
    cause: str,
    effect: str,
    config: CageConfig,
    path: Path,
) -> Path:
    """One row per source latent: decode(z), do(c=0), do(c=1), do(e=0), do(e=1)."""
    from causalscene import plots
    from causalscene.cage import counterfactual_latents

    cf_c = counterfactual_latents(sources, probe, cause, config.alpha, config.mode)
    cf_e = counterfactual_latents(sources, probe, effect, config.alpha, config.mode)
    rows, titles = [], []
    for i in range(len(sources)):
        for z, name in (
            (sources[i], "source"),
            (cf_c.z_do0[i], f"do({cause}=0)"),
            (cf_c.z_do1[i], f"do({cause}=1)"),
            (cf_e.z_do0[i], f"do({effect}=0)"),
            (cf_e.z_do1[i], f"do({effect}=1)"),
        ):
            rows.append(z)
            titles.append(name)
    images = generator.decode(torch.stack(rows).float().to(_device_of(generator))).cpu()
    return plots.save_image_grid(
        images,
        path,
        ncol=5,
        titles=titles,
        suptitle=f"same-source counterfactuals: {cause} vs {effect}",
    )
