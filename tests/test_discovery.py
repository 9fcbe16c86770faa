"""The peer-library baselines on planted structures: our adjacency convention (A[i, j] = 1 for
i -> j) must match the planted arrows, whatever each library's own convention."""

import numpy as np
import pytest

from causalscene.discovery import anm_adjacency, inferred_direction, lingam_adjacency, pc_adjacency


def _uniform(rng, n):
    return rng.uniform(-1, 1, n)


def test_lingam_recovers_a_planted_linear_non_gaussian_arrow():
    """x0 -> x1 with uniform noise, x2 independent: DirectLiNGAM's B[1, 0] becomes A[0, 1]."""
    rng = np.random.default_rng(0)
    x0 = _uniform(rng, 500)
    x = np.stack([x0, 2 * x0 + 0.5 * _uniform(rng, 500), _uniform(rng, 500)], 1)
    adjacency = lingam_adjacency(x, seed=0)
    assert adjacency.tolist() == [[0, 1, 0], [0, 0, 0], [0, 0, 0]]


def test_pc_orients_a_planted_collider():
    """x0 -> x2 <- x1 (Gaussian): PC finds the v-structure, oriented into x2."""
    rng = np.random.default_rng(1)
    x0, x1 = rng.standard_normal(2000), rng.standard_normal(2000)
    x = np.stack([x0, x1, x0 + x1 + 0.5 * rng.standard_normal(2000)], 1)
    adjacency = pc_adjacency(x)
    assert adjacency.tolist() == [[0, 0, 1], [0, 0, 1], [0, 0, 0]]
    assert inferred_direction(adjacency, 0, 2) == "c->e"
    assert inferred_direction(adjacency, 2, 1) == "e->c"
    assert inferred_direction(adjacency, 0, 1) == "none"


def test_anm_recovers_a_planted_nonlinear_arrow():
    """x1 = x0³ + uniform noise (Hoyer et al.'s kind of example): the GP residual is independent
    of the input only forwards (measured p ≈ 0.73 forwards, ≈ 1e-14 backwards)."""
    rng = np.random.default_rng(0)
    x0 = _uniform(rng, 200)
    x = np.stack([x0, x0**3 + 0.5 * _uniform(rng, 200)], 1)
    adjacency, p_values = anm_adjacency(x, max_samples=200)
    forward, backward = p_values["0:1"]
    assert forward >= 0.05 > backward
    assert adjacency.tolist() == [[0, 1], [0, 0]]


def test_bad_tables_are_refused():
    with pytest.raises(ValueError, match="must be"):
        lingam_adjacency(np.zeros((10, 1)))
    with pytest.raises(ValueError, match="non-finite"):
        pc_adjacency(np.full((10, 2), np.nan))
