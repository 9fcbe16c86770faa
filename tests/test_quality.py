"""The Fréchet distance: closed form vs independent references, and planted shifts on procgen."""

import numpy as np
import pytest

from causalscene import procgen
from causalscene.generate import blur_images
from causalscene.quality import (
    dataset_frechet,
    feature_network,
    feature_stats,
    frechet_distance,
    image_frechet,
)


def _random_cov(rng, d):
    a = rng.standard_normal((d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def _eig_reference(mu1, cov1, mu2, cov2):
    """d² by symmetric eigendecompositions: Tr((Σ₁Σ₂)^½) = Tr((Σ₁^½ Σ₂ Σ₁^½)^½), whose argument
    is symmetric positive semi-definite (no sqrtm, no non-symmetric product)."""

    def psd_root(m):
        w, v = np.linalg.eigh(m)
        return (v * np.sqrt(np.clip(w, 0, None))) @ v.T

    r1 = psd_root(cov1)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(r1 @ cov2 @ r1), 0, None)).sum()
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2 * cross)


def test_frechet_diagonal_closed_form():
    """Diagonal covariances: d² = ‖μ₁ − μ₂‖² + Σ_i (σ₁ᵢ − σ₂ᵢ)² (standard deviations)."""
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    s1, s2 = np.array([1.0, 2.0, 0.5]), np.array([3.0, 0.5, 0.5])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((s1 - s2) ** 2)  # 1 + 6.25 + 4 + 2.25 = 13.5
    got = frechet_distance(mu1, np.diag(s1**2), mu2, np.diag(s2**2))
    assert got == pytest.approx(expected, rel=1e-10) and expected == pytest.approx(13.5)
    # one dimension: (μ₁ − μ₂)² + (σ₁ − σ₂)²
    assert frechet_distance([2.0], [[4.0]], [-1.0], [[9.0]]) == pytest.approx(9 + 1)


def test_frechet_commuting_covariances():
    """Σ₁ = Q diag(a) Qᵀ, Σ₂ = Q diag(b) Qᵀ commute: Tr((Σ₁Σ₂)^½) = Σ √(a_i b_i)."""
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    a, b = rng.uniform(0.1, 3, 6), rng.uniform(0.1, 3, 6)
    cov1, cov2 = (q * a) @ q.T, (q * b) @ q.T
    mu1, mu2 = rng.standard_normal(6), rng.standard_normal(6)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, cov1, mu2, cov2) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("d", [2, 10, 64])
def test_frechet_matches_eig_reference(d):
    rng = np.random.default_rng(d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    cov1, cov2 = _random_cov(rng, d), _random_cov(rng, d)
    got = frechet_distance(mu1, cov1, mu2, cov2)
    assert got == pytest.approx(_eig_reference(mu1, cov1, mu2, cov2), rel=1e-8, abs=1e-8)
    assert frechet_distance(mu1, cov1, mu1, cov1) == pytest.approx(0.0, abs=1e-8 * d)


def test_frechet_of_singular_covariances():
    """Rank-deficient covariances (dead features): identical → 0, and a diagonal pair keeps its
    closed form up to the regularisation (eps = 1e-6 on the diagonal)."""
    cov = np.diag([1.0, 0.0, 2.0])
    assert frechet_distance(np.zeros(3), cov, np.zeros(3), cov) == pytest.approx(0, abs=1e-9)
    other = np.diag([4.0, 0.0, 2.0])
    assert frechet_distance(np.zeros(3), cov, np.ones(3), other) == pytest.approx(3 + 1, abs=1e-5)


def test_frechet_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shapes do not match"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


@pytest.fixture(scope="module")
def faces_network(tmp_path_factory):
    """The feature network of procgen faces at 24 px (tiny: 1,000 items, 3 epochs), cached."""
    cache = tmp_path_factory.mktemp("quality") / "features.pt"
    network = feature_network({"generator": "faces", "options": {}}, 24, 1000, 3, 0, cache)
    return network, cache


def _faces(n, seed):
    images, _, _ = procgen.sample_batch("faces", n, 24, seed)
    return images


def test_identical_sets_and_the_cache(faces_network):
    """Identical sets: |d²| ≤ 1e-6 · Tr(Σ) (round-off of sqrtm on a rank-deficient Σ²); the
    cached network loads back with the same weights (same features)."""
    network, cache = faces_network
    images = _faces(300, 1)
    mu, cov = feature_stats(network, images)
    assert cov.shape == (128, 128) and mu.shape == (128,)
    assert abs(image_frechet(network, images, images)) <= 1e-6 * np.trace(cov)
    again = feature_network({"generator": "faces", "options": {}}, 24, 1000, 3, 0, cache)
    assert again.name == network.name
    np.testing.assert_allclose(feature_stats(again, images)[0], mu, rtol=1e-6)


def test_planted_shifts_raise_the_distance_monotonically(faces_network):
    """Two independent sets of real faces are close; blurring or noising one of them by more and
    more moves it away, step by step."""
    network, _ = faces_network
    reference, real = _faces(400, 2), _faces(400, 3)
    base = image_frechet(network, reference, real)
    blur = [
        image_frechet(network, reference, blur_images(real, np.full(len(real), s)))
        for s in (0.5, 1.0, 2.0)
    ]
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(real.shape)
    noisy = [
        image_frechet(network, reference, np.clip(real + s * noise, 0, 255).astype(np.uint8))
        for s in (8, 32, 64)
    ]
    print("frechet: real vs real", base, "blur", blur, "noise", noisy)
    assert base < blur[0] < blur[1] < blur[2]
    assert base < noisy[0] < noisy[1] < noisy[2]


def test_dataset_frechet_needs_a_renderer(tmp_path):
    data = procgen.make_dataset("faces", 40, 24, seed=0, out=tmp_path / "faces")
    images = _faces(40, 4)
    out = dataset_frechet(data, images[:20], images[20:], n_images=100, epochs=1)
    assert np.isfinite(out["frechet"]) and "factorial procgen faces" in out["features"]
    (tmp_path / "plain").mkdir()
    with pytest.raises(ValueError, match="not a procgen dataset"):
        dataset_frechet(tmp_path / "plain", images[:20], images[20:])
