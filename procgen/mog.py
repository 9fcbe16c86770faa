"""The 2-D Gaussian-mixture toy of CAGE (``dags/mog.yaml``): points, not images.

Bose, Monti & Grover, "Controllable generative modelling via causal reasoning" (TMLR 2022),
section 5.1: the cause ``mixture`` says whether a point comes from a mixture of 8 Gaussians or of
3 Gaussians; the effect ``low_mean = 1[mean(x, y) < 2.5]``.

Layout: eleven equally likely components (standard deviation ``SIGMA`` per coordinate), so
P(mixture = three) = 3/11:

* eight: means on a circle of radius 2 about (3.5, 3.5) at angles k·45°. The threshold line
  ``x + y = 5`` passes through the components at 180° and 270° (each split in half) and leaves
  the one at 225° below it, so P(low_mean | eight) ≈ 2/8.
* three: means (0.8, 0.8), (0.4, 1.4), (1.4, 0.4), far below the line: P(low_mean | three) = 1.

The two mixtures are separated along the diagonal, the normal of the threshold line: the cause
moves a point across the effect's boundary, as in the paper's toy where the mixtures occupy
different regions of the plane and one of them lies below the threshold. The threshold cuts
through components, so ``low_mean`` varies within a mixture (the effect has its own noise).

Labels are sampled from the DAG, whose CPTs are these probabilities in closed form
(:func:`exact_cpts`; mean(x, y) of a component is N(mean(μ), σ²/2)). The point is then drawn from
a component of the right mixture, chosen with weight ∝ P(side | component), from its Gaussian
truncated to the right side of the line (rejection). This is exactly the joint of drawing a
component and then a point, so ``low_mean == 1[mean(x, y) < 2.5]`` holds by construction.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

DAG_FILE = "mog.yaml"
DEFAULT_SIZE = 0  # points have no image size
DATA_KEY = "points"
THRESHOLD = 2.5
SIGMA = 0.25
_ANGLES = np.deg2rad(45.0 * np.arange(8))
EIGHT_MEANS = np.stack([3.5 + 2.0 * np.cos(_ANGLES), 3.5 + 2.0 * np.sin(_ANGLES)], axis=1)
THREE_MEANS = np.array([[0.8, 0.8], [0.4, 1.4], [1.4, 0.4]])
MEANS = (EIGHT_MEANS, THREE_MEANS)  # indexed by the mixture code (eight = 0, three = 1)


def _is_low(points: np.ndarray) -> np.ndarray:
    return points.mean(axis=-1) < THRESHOLD


def p_low_per_component(means: np.ndarray) -> np.ndarray:
    """P(mean(x, y) < THRESHOLD) for components centred at ``means`` (closed form)."""
    z = (THRESHOLD - means.mean(axis=-1)) / (SIGMA / math.sqrt(2.0))
    return np.array([0.5 * math.erfc(-v / math.sqrt(2.0)) for v in z])


def exact_cpts() -> dict[str, np.ndarray]:
    """The DAG's CPTs implied by the layout: ``mixture [2]`` and ``low_mean [mixture, 2]``."""
    sizes = np.array([len(m) for m in MEANS], dtype=float)
    p_low = np.array([p_low_per_component(m).mean() for m in MEANS])
    return {"mixture": sizes / sizes.sum(), "low_mean": np.stack([1 - p_low, p_low], axis=1)}


def posterior_three(points: np.ndarray) -> np.ndarray:
    """P(mixture = three | point) under the generator's mixture (an exact oracle classifier)."""
    x = np.asarray(points, dtype=np.float64)
    means = np.concatenate(MEANS)
    logits = -((x[:, None, :] - means[None]) ** 2).sum(-1) / (2 * SIGMA**2)
    logits -= logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    return weights[:, len(EIGHT_MEANS) :].sum(1) / weights.sum(1)


def components(mixture: int, low: bool) -> tuple[np.ndarray, np.ndarray, float]:
    """Means, weights and sigma of one mixture's components given the side of the line.

    The weights are P(component | mixture, side) ∝ P(side | component) (equal priors)."""
    means = MEANS[mixture]
    p_low = p_low_per_component(means)
    weights = p_low if low else 1.0 - p_low
    keep = weights > 1e-12
    return means[keep], weights[keep] / weights[keep].sum(), SIGMA


def render(labels, size: int, rng: np.random.Generator, dag=None) -> tuple[np.ndarray, dict]:
    """Points ``float32 [n, 2]`` for ``{mixture, low_mean: int codes [n]}`` (``size`` unused)."""
    mixture = np.asarray(labels["mixture"])
    low = np.asarray(labels["low_mean"]).astype(bool)
    n = len(mixture)
    points = np.zeros((n, 2))
    for m in (0, 1):
        for side in (False, True):
            idx = np.flatnonzero((mixture == m) & (low == side))
            if idx.size == 0:
                continue
            means, weights, sigma = components(m, side)
            comp = rng.choice(len(means), size=idx.size, p=weights)
            pending = np.arange(idx.size)
            draw = np.empty((idx.size, 2))
            while pending.size:
                trial = means[comp[pending]] + sigma * rng.standard_normal((pending.size, 2))
                ok = _is_low(trial) == side
                draw[pending[ok]] = trial[ok]
                pending = pending[~ok]
            points[idx] = draw
    return points.astype(np.float32), {}


def plot_points(points: np.ndarray, labels, dag, path: str | Path) -> Path:
    """Scatter plot of the points, coloured by ``mixture``, filled by ``low_mean``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from causalscene.utils import atomic_savefig

    fig, ax = plt.subplots(figsize=(5, 5))
    mixture = np.asarray(labels["mixture"])[: len(points)]
    low = np.asarray(labels["low_mean"])[: len(points)].astype(bool)
    pts = np.asarray(points)[: len(mixture)]
    for m, colour in ((0, "tab:blue"), (1, "tab:orange")):
        for side, face in ((True, colour), (False, "none")):
            sel = (mixture == m) & (low == side)
            name = f"mixture={dag.states('mixture')[m]}, low_mean={'yes' if side else 'no'}"
            ax.scatter(
                pts[sel, 0], pts[sel, 1], s=10, edgecolors=colour, facecolors=face, label=name
            )
    lo = float(min(pts.min(), 0.0)) - 0.3 if len(pts) else -0.5
    hi = float(max(pts.max(), 5.0)) + 0.3 if len(pts) else 5.5
    line = np.linspace(lo, hi, 2)
    ax.plot(line, 2 * THRESHOLD - line, "k--", lw=1, label="mean(x, y) = 2.5")
    ax.set(xlim=(lo, hi), ylim=(lo, hi), xlabel="x", ylabel="y", aspect="equal")
    ax.set_title(f"mog: {len(pts)} points (labels sampled from {DAG_FILE})", fontsize=9)
    ax.legend(fontsize=6, loc="upper right")
    return atomic_savefig(fig, path)
