"""The 2-D Gaussian-mixture toy of CAGE (``dags/mog.yaml``): points, not images.

Bose, Monti & Grover, "Controllable generative modelling via causal reasoning" (TMLR 2022),
section 5.1: the cause ``mixture`` says whether a point comes from a mixture of 8 Gaussians or of
3 Gaussians; the effect ``low_mean = 1[mean(x, y) < 2.5]``.

Components (standard deviation ``SIGMA_EIGHT`` / ``SIGMA_THREE`` per coordinate):

* eight: equal weights, means on a circle of radius 2 about (1, 4) at angles 22.5° + k·45°; the
  line ``x + y = 5`` passes through the centre, four means lie below it and four above, so
  P(low_mean | eight) = 1/2.
* three: means (3.0, 0.6) (below the line, weight 1/5), (4.8, 1.8) and (4.0, 2.6) (above it,
  2/5 each), so P(low_mean | three) = 1/5.

The two mixtures sit on either side of the direction ``x - y`` (the ring at x - y <= -0.4, the
three at x - y >= 1.4), orthogonal to the threshold direction ``x + y``: ``mixture`` is (nearly)
linearly separable, as CAGE's probes assume and as in the paper's toy, where the two mixtures
occupy different regions of the plane. (An earlier layout put the three inside and beside the
ring; there no linear probe separates the mixtures and CAGE flags the pair as unreliable.)

Labels are sampled from the DAG, then the point is drawn from a component of the right mixture on
the right side of the line, with its Gaussian truncated to that side (rejection). So
``low_mean == 1[mean(x, y) < 2.5]`` holds exactly and the DAG's CPTs are the exact frequencies;
every component's mean sits at least 3 standard deviations (of ``mean(x, y)``) from the line, so
the truncation removes under 0.2 % of any component's mass.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

DAG_FILE = "mog.yaml"
DEFAULT_SIZE = 0  # points have no image size
DATA_KEY = "points"
THRESHOLD = 2.5
SIGMA_EIGHT = 0.25
SIGMA_THREE = 0.30
_ANGLES = np.deg2rad(22.5 + 45.0 * np.arange(8))
EIGHT_MEANS = np.stack([1.0 + 2.0 * np.cos(_ANGLES), 4.0 + 2.0 * np.sin(_ANGLES)], axis=1)
THREE_MEANS = np.array([[3.0, 0.6], [4.8, 1.8], [4.0, 2.6]])
THREE_WEIGHTS = np.array([0.2, 0.4, 0.4])


def _is_low(points: np.ndarray) -> np.ndarray:
    return points.mean(axis=-1) < THRESHOLD


def components(mixture: int, low: bool) -> tuple[np.ndarray, np.ndarray, float]:
    """Means, weights (renormalised) and sigma of the components of one mixture on one side."""
    means, weights, sigma = (
        (EIGHT_MEANS, np.full(8, 1 / 8), SIGMA_EIGHT)
        if mixture == 0
        else (THREE_MEANS, THREE_WEIGHTS, SIGMA_THREE)
    )
    keep = _is_low(means) == low
    return means[keep], weights[keep] / weights[keep].sum(), sigma


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
