"""``cage-reversal``: does CAGE's τ follow the generator's causal direction or the probes' sharpness?

With the latent outcome (eq. 8), ``mode="shift"`` and logistic probes φ_m(z) = σ(w_mᵀz + b_m), a
step α along ĥ_c moves every unit's effect logit by exactly α‖w_e‖cosθ (θ the angle between w_c
and w_e), so to first order in α

    GATE(c→e) ≈ α cosθ ‖w_e‖ E[σ'(w_eᵀz + b_e)],   GATE(e→c) ≈ α cosθ ‖w_c‖ E[σ'(w_cᵀz + b_c)],

and the sign of τ = |GATE(c→e)| − |GATE(e→c)| is that of ‖w_e‖E[σ'_e] − ‖w_c‖E[σ'_c]
(:func:`first_order_gate`): a quantity symmetric in the two probes, decided by which one is
sharper. On one common scale (steps and outcomes both as latent distances to the probes'
boundaries) both GATEs are α cosθ and τ vanishes: two hyperplanes carry no direction.

:class:`PlantedPair` is a generator whose implicit direction is c → e by construction, with the
sharpness of each attribute's labels set independently of that direction. :func:`planted_grid`
measures how often τ recovers c → e over sharpness settings, outcomes (latent, image read by a
probe trained on the renderer's factorial design), step modes and α units, for the paper's
estimator and the calibrated one (:func:`causalscene.cage.scaled_outcomes`), both through
:func:`causalscene.cage.permutation_null`.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from causalscene import procgen
from causalscene.cage import (
    ESTIMATORS,
    OutcomeFn,
    gate,
    image_outcome,
    infer_direction,
    p_value,
    permutation_null,
    scaled_outcomes,
    tau,
    tau_sign,
)
from causalscene.probes import ImageProbe, LatentProbe
from causalscene.reproductions._base import Context, Measured

__all__ = [
    "PlantedPair",
    "first_order_gate",
    "planted_cell",
    "planted_grid",
    "reproduce_cage_reversal",
    "sharpness",
]

ALPHA_UNITS = ("latent", "margin")
log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------ the generator
class PlantedPair(nn.Module):
    """A two-attribute generator with the implicit direction c → e, ``size``² px, one channel.

    Generative story (z ~ N(0, I_D), D = ``latent_dim`` ≥ 2)::

        c ~ Bernoulli(σ(s_c z_1))                      (c's input: z_1)
        e ~ Bernoulli(σ(s_e (β (2c − 1) + z_2)))       (e's mechanism reads c; its noise: z_2)

    ``decode(z)`` renders the left half of the image at brightness P(c = 1 | z) = σ(s_c z_1) and
    the right half at P(e = 1 | z) = Σ_c P(c | z) σ(s_e(β(2c − 1) + z_2)); the other latent
    coordinates are not rendered. Moving z_1 changes both halves, moving z_2 only the right one.
    ``s_c`` and ``s_e`` set how sharply each label follows its latents (a linear probe's ‖w‖),
    whatever the direction; ``beta`` sets the strength of c → e.
    """

    def __init__(
        self, s_c: float, s_e: float, beta: float = 1.0, latent_dim: int = 16, size: int = 8
    ):
        super().__init__()
        if not (s_c > 0 and s_e > 0 and beta > 0):
            raise ValueError(f"s_c, s_e and beta must be > 0, got {s_c}, {s_e}, {beta}")
        if latent_dim < 2 or size < 8 or size % 2:
            raise ValueError(
                f"need latent_dim >= 2 and an even size >= 8, got {latent_dim}, {size}"
            )
        self.s_c, self.s_e, self.beta = float(s_c), float(s_e), float(beta)
        self.latent_dim, self.size = int(latent_dim), int(size)

    def probabilities(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(P(c = 1 | z), P(e = 1 | z))``, each ``[B]``, for ``z: [B, D]``."""
        p_c = torch.sigmoid(self.s_c * z[:, 0])
        e_if_1 = torch.sigmoid(self.s_e * (self.beta + z[:, 1]))
        e_if_0 = torch.sigmoid(self.s_e * (-self.beta + z[:, 1]))
        return p_c, p_c * e_if_1 + (1 - p_c) * e_if_0

    def render(self, p_c: torch.Tensor, p_e: torch.Tensor) -> torch.Tensor:
        """Images ``[B, 1, size, size]``: left half at brightness ``p_c``, right half ``p_e``."""
        half = self.size // 2
        x = p_c.new_empty(len(p_c), 1, self.size, self.size)
        x[..., :half] = p_c[:, None, None, None]
        x[..., half:] = p_e[:, None, None, None]
        return x

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.render(*self.probabilities(z.float()))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.decode(z)

    def sample_latents(self, n: int, seed: int | None = None) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        return torch.randn(n, self.latent_dim, generator=g)

    def sample_labels(self, z: torch.Tensor, seed: int) -> dict[str, np.ndarray]:
        """Labels ``{"c", "e": int64 [B]}`` drawn by the generative story for latents ``z``."""
        rng = np.random.default_rng(seed)
        zn = z.detach().double().cpu().numpy()
        c = (rng.random(len(zn)) < _sigmoid(self.s_c * zn[:, 0])).astype(np.int64)
        e_prob = _sigmoid(self.s_e * (self.beta * (2 * c - 1) + zn[:, 1]))
        return {"c": c, "e": (rng.random(len(zn)) < e_prob).astype(np.int64)}

    def factorial_set(self, n: int, seed: int) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
        """The renderer's factorial design: brightnesses u_c, u_e ~ U(0, 1) drawn independently,
        labels c ~ Bernoulli(u_c), e ~ Bernoulli(u_e) (c and e independent): ``(images, labels)``."""
        rng = np.random.default_rng([seed, 0xFAC])
        u = rng.random((2, n))
        labels = {k: (rng.random(n) < u[i]).astype(np.int64) for i, k in enumerate(("c", "e"))}
        images = self.render(torch.as_tensor(u[0]).float(), torch.as_tensor(u[1]).float())
        return images, labels


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


# ------------------------------------------------------------------------------ closed form
def sharpness(z: Any, probe: LatentProbe, name: str) -> float:
    """‖w_m‖ E[σ'(w_mᵀz + b_m)] over ``z: [K, D]``: how steeply φ_m responds, on average, to a
    unit step along its own normal."""
    w, _ = probe.params(name)
    p = probe.predict_proba(z, name)
    return float(w.norm() * (p * (1 - p)).mean())


def first_order_gate(z: Any, probe: LatentProbe, cause: str, effect: str, alpha: float) -> float:
    """GATE(cause → effect) to first order in α (latent outcome, shift mode):
    α cosθ ‖w_e‖ E[σ'_e], θ the angle between w_cause and w_effect."""
    w_c, _ = probe.params(cause)
    w_e, _ = probe.params(effect)
    cos = float(w_c @ w_e / (w_c.norm() * w_e.norm()))
    return float(alpha) * cos * sharpness(z, probe, effect)


# ------------------------------------------------------------------------------ the grid
@dataclass(frozen=True)
class GridPreset:
    """The sizes of the planted grid at one scale."""

    sharpness: tuple[float, ...]  #: the values of s_c and of s_e (all pairs)
    seeds: int  #: generators per sharpness pair
    n_train: int  #: labelled latents the probes learn from
    num_latents: int  #: CAGE's k prior latents
    null_latents: int  #: of them, used by the null
    permutations: int
    probe_images: int  #: factorial images the image probe learns from
    probe_epochs: int


def planted_cell(
    generator: PlantedPair,
    seed: int,
    preset: GridPreset,
    device: str = "cpu",
    alpha: float = 1.0,
    level: float = 0.05,
) -> list[dict[str, Any]]:
    """Every (outcome, estimator, mode, α unit) of one planted generator: a row each with the
    GATEs, τ and p-values (:func:`_directions`) and the inferred direction. The probes learn from
    ``preset.n_train`` latents with labels by the generative story; the image probe from the
    renderer's factorial design."""
    z_train = generator.sample_latents(preset.n_train, seed=seed).to(device)
    labels = generator.sample_labels(z_train, seed)
    probe = LatentProbe(device=device).fit(z_train, labels, holdout=0.2, seed=seed)
    zk = generator.sample_latents(preset.num_latents, seed=seed + 10_000).to(device)
    psi = ImageProbe(["c", "e"], generator.size, channels=1, width=8)
    images, image_labels = generator.factorial_set(preset.probe_images, seed)
    psi.fit(images, image_labels, epochs=preset.probe_epochs, seed=seed, device=device)
    # its images are 8×8 px: whole null batches are decoded and read at once
    base = {m: image_outcome(generator, psi, m, batch_size=16_384) for m in ("c", "e")}
    rows = []
    for outcome, estimator in itertools.product(("latent", "image"), ESTIMATORS):
        fns: Mapping[str, OutcomeFn] | None = base if outcome == "image" else None
        if estimator == "calibrated":
            fns = scaled_outcomes(zk, probe, ("c", "e"), fns)
        for mode, units in itertools.product(("shift", "cross"), ALPHA_UNITS):
            steps = _alphas(probe, alpha, units)
            found = _directions(z_train, labels, zk, probe, fns, steps, mode, preset, seed)
            rows.append(
                {
                    "outcome": outcome,
                    "estimator": estimator,
                    "mode": mode,
                    "alpha_units": units,
                    **found,
                    "inferred": infer_direction(
                        found["gate_ce"], found["gate_ec"], found["p_ce"], found["p_ec"], level
                    ),
                }
            )
    sharp = {m: sharpness(zk, probe, m) for m in ("c", "e")}
    for row in rows:
        row.update(s_c=generator.s_c, s_e=generator.s_e, seed=seed, sharpness=sharp)
        row["accuracy"] = dict(probe.accuracy_)
    return rows


def _alphas(probe: LatentProbe, alpha: float, units: str) -> dict[str, float]:
    """The latent step of each treatment: α itself, or α margins of its own probe (α/‖w_m‖)."""
    if units == "latent":
        return {"c": alpha, "e": alpha}
    return {m: alpha / float(probe.params(m)[0].norm()) for m in ("c", "e")}


def _directions(
    z_train: torch.Tensor,
    labels: Mapping[str, np.ndarray],
    zk: torch.Tensor,
    probe: LatentProbe,
    fns: Mapping[str, OutcomeFn] | None,
    steps: Mapping[str, float],
    mode: str,
    preset: GridPreset,
    seed: int,
) -> dict[str, float]:
    """GATE both ways on ``zk`` and their permutation p-values (:func:`permutation_null` on the
    first ``preset.null_latents``, once per treatment's step, for the directions taken at it)."""
    out: dict[str, float] = {}
    directions = (("c", "e"), ("e", "c"))
    nulls = {}
    for step in sorted(set(steps.values())):  # one null per distinct step
        nulls[step] = permutation_null(
            z_train,
            labels,
            zk[: preset.null_latents],
            probe,
            [("c", "e")],
            preset.permutations,
            step,
            mode,
            seed,
            fns,
            only=[(c, e) for c, e in directions if steps[c] == step],
        )
    for c, e in directions:
        fn = fns[e] if fns is not None else None
        observed = gate(zk[: preset.null_latents], probe, c, e, steps[c], mode, fn)
        out[f"gate_{c}{e}"] = gate(zk, probe, c, e, steps[c], mode, fn)
        out[f"p_{c}{e}"] = p_value(observed, nulls[steps[c]].gates[(c, e)])
    out["tau"] = tau(out["gate_ce"], out["gate_ec"])
    return out


def grid_preset(context: Context) -> GridPreset:
    return context.pick(
        tiny=GridPreset((0.5, 4.5), 1, 600, 300, 128, 10, 600, 1),
        small=GridPreset((0.5, 1.5, 4.5), 2, 2000, 2000, 512, 50, 3000, 3),
        full=GridPreset((0.5, 1.0, 2.0, 4.0), 5, 10_000, 10_000, 1000, 200, 10_000, 5),
    )


def planted_grid(
    preset: GridPreset, seed: int = 0, device: str = "cpu", workers: int = 1
) -> dict[str, Any]:
    """Every cell of :func:`planted_cell` over all (s_c, s_e) pairs of ``preset.sharpness`` and
    ``preset.seeds`` generators each (seeds ``seed, seed + 1, ...``): ``{"rows": [...],
    "cells": [...]}``, a cell per (estimator, outcome, mode, α unit) with ``tau_recovered`` (the
    fraction of its rows with τ > 0 beyond a tie, :func:`~causalscene.cage.tau_sign`: the planted
    c → e), ``inferred_recovered`` and ``inferred_reversed`` (CAGE's decision, p < 0.05, c → e
    and e → c).

    ``workers > 1`` computes the generators in that many spawned processes (on a GPU their small
    kernels then overlap), each with ``torch.get_num_threads() // workers`` threads (at least
    one). Each generator is computed whole in one process from its own seed, so the rows are
    those of ``workers=1`` in the same order, bit for bit where the thread counts match (a CPU's
    float sums depend on them)."""
    jobs = [
        (PlantedPair(s_c, s_e), seed + k, preset, device)
        for s_c, s_e in itertools.product(preset.sharpness, preset.sharpness)
        for k in range(preset.seeds)
    ]
    rows: list[dict[str, Any]] = []
    if workers <= 1:
        for i, job in enumerate(jobs):
            rows += planted_cell(*job)
            log.info("planted generator %d of %d done", i + 1, len(jobs))
    else:
        threads = max(1, torch.get_num_threads() // workers)
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            workers, mp_context=context, initializer=torch.set_num_threads, initargs=(threads,)
        ) as pool:
            for i, found in enumerate(pool.map(_cell_job, jobs)):
                rows += found
                log.info("planted generator %d of %d done", i + 1, len(jobs))
    keys = ("estimator", "outcome", "mode", "alpha_units")
    cells = []
    for values in itertools.product(
        ESTIMATORS, ("latent", "image"), ("shift", "cross"), ALPHA_UNITS
    ):
        group = [r for r in rows if tuple(r[k] for k in keys) == values]
        cells.append(
            {
                **dict(zip(keys, values)),
                "rows": len(group),
                "tau_recovered": float(np.mean([_sign(r) > 0 for r in group])),
                "inferred_recovered": float(np.mean([r["inferred"] == "c->e" for r in group])),
                "inferred_reversed": float(np.mean([r["inferred"] == "e->c" for r in group])),
                "tau_follows_sharpness": _follows_sharpness(group),
            }
        )
    return {"rows": rows, "cells": cells}


def _cell_job(job: tuple[PlantedPair, int, GridPreset, str]) -> list[dict[str, Any]]:
    return planted_cell(*job)


def _follows_sharpness(group: Sequence[Mapping[str, Any]]) -> float:
    """Among the rows whose two attributes' labels differ in sharpness (s_c ≠ s_e), the fraction
    whose τ has the sign of s_e − s_c (the sharper attribute read as the effect; a tie does not)."""
    rows = [r for r in group if r["s_c"] != r["s_e"]]
    if not rows:
        return float("nan")
    return float(np.mean([_sign(r) == (1 if r["s_e"] > r["s_c"] else -1) for r in rows]))


def _sign(row: Mapping[str, Any]) -> int:
    """A row's τ sign, a tie 0 (:func:`causalscene.cage.tau_sign`)."""
    return tau_sign(row["gate_ce"], row["gate_ec"])


# ------------------------------------------------------------------------------ reproduction
def reproduce_cage_reversal(context: Context) -> Measured:
    """The planted grid (:func:`planted_grid`), then a plain VAE of procedural faces as
    ``cage-faces`` with both estimators (latent outcome, shift mode), each scored on the faces
    DAG (:func:`causalscene.cage.direction_scores`), and how often the first-order closed form
    (:func:`first_order_gate`: the sign of ‖w_e‖E[σ'_e] − ‖w_c‖E[σ'_c], times that of cosθ)
    predicts the sign of the paper's τ on the faces pairs. ``holds``: in every cell of the
    paper's estimator, τ > 0 (the planted c → e) in at least 90 % of the grid's generators."""
    # on a GPU the generators' small kernels leave it mostly idle: several processes share it
    workers = procgen.default_workers() if context.device.startswith("cuda") else 1
    grid = planted_grid(grid_preset(context), context.seed, context.device, workers)
    faces = _faces_both(context)
    paper = [c for c in grid["cells"] if c["estimator"] == "paper"]
    measured = {
        "cells": grid["cells"],
        "paper_min_tau_recovered": min(c["tau_recovered"] for c in paper),
        "faces": faces,
        "rows": grid["rows"],
    }
    return measured, bool(measured["paper_min_tau_recovered"] >= 0.9)


def _faces_both(context: Context) -> dict[str, Any]:
    """cage-faces' plain VAE with the paper's estimator and the calibrated one."""
    from dataclasses import replace

    from causalscene.cage_pipeline import analyze_generator
    from causalscene.dag import CausalDAG
    from causalscene.reproductions.bose2022 import faces_vae_cage

    trained, paper = faces_vae_cage(context)
    calibrated = analyze_generator(
        trained.model,  # type: ignore[arg-type]
        trained.images,
        trained.labels,
        None,
        replace(paper.result.config, estimator="calibrated"),
        context.out / "cage_calibrated",
        dag=CausalDAG.shipped("faces"),
        figures=False,
    )
    analyses = {"paper": paper, "calibrated": calibrated}
    analyses.update(_faces_image_outcome(context, trained, paper.result.config))
    out: dict[str, Any] = {}
    for name, analysis in analyses.items():
        assert analysis.comparison is not None  # a DAG was given
        out[name] = {**analysis.comparison.scores, "rows": analysis.comparison.rows}
    out["closed_form_sign_agreement"] = _closed_form_agreement(paper.result)
    return out


def _faces_image_outcome(context: Context, trained: Any, config: Any) -> dict[str, Any]:
    """The image outcome (eq. 9, ψ trained on the faces renderer's factorial design) with both
    estimators on the faces DAG's edges between binary attributes (``image_paper``,
    ``image_calibrated``); one ψ serves both (the estimator does not enter its training)."""
    from dataclasses import replace

    from causalscene.cage_pipeline import PROBE_EPOCHS, analyze_generator, fit_image_probe
    from causalscene.dag import CausalDAG

    dag = CausalDAG.shipped("faces")
    binary = [(c, e) for c, e in dag.edges if dag.cardinality(c) == dag.cardinality(e) == 2]
    involved = sorted({a for edge in binary for a in edge})
    labels = {a: np.asarray(trained.labels[a]) for a in involved}
    image_config = replace(config, outcome="image")
    psi, psi_training = fit_image_probe(
        trained.images, labels, image_config, PROBE_EPOCHS, dag, trained.data
    )
    found: dict[str, Any] = {}
    for estimator in ESTIMATORS:
        analysis = analyze_generator(
            trained.model,
            trained.images,
            trained.labels,
            ",".join(f"{c}:{e}" for c, e in binary),
            replace(image_config, estimator=estimator),
            context.out / f"cage_image_{estimator}",
            dag=dag,
            data=trained.data,
            figures=False,
            image_probe=psi,
            probe_training=psi_training,
        )
        found[f"image_{estimator}"] = analysis
    return found


def _closed_form_agreement(result: Any) -> float:
    """Fraction of pairs whose paper τ has the sign the first-order closed form gives."""
    z, probe, alpha = result.latents, result.probe, result.config.alpha
    hits = []
    for p in result.pairs:
        ce = first_order_gate(z, probe, p.cause, p.effect, alpha)
        ec = first_order_gate(z, probe, p.effect, p.cause, alpha)
        hits.append((tau(ce, ec) > 0) == (p.tau > 0))
    return float(np.mean(hits)) if hits else float("nan")
