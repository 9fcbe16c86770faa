"""Latent inversion (issue 16, item 3): planted latents recovered, CAGE on inverted latents."""

import numpy as np
import pytest
import torch
from torch import nn

from causalscene.cage import CageConfig, run_cage
from causalscene.cage_pipeline import analyze_generator, image_latents
from causalscene.inversion import InversionConfig, invert


@pytest.fixture(autouse=True)
def _one_thread():
    """Thousands of tiny steps: a second intra-op thread only adds hand-offs (and, on a busy
    machine, waits)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


#: the mean MSE of rounding [0, 1] pixels to 8 bits: a uniform error of width 1/255
QUANTIZATION_MSE = 1 / (12 * 255**2)


class LinearDecoder(nn.Module):
    """``x = sigmoid(W z + b)`` as ``[3, 16, 16]`` images; W ``[768, D]`` has full column rank
    (almost surely), so ``decode`` is injective and the latent is identifiable from the image.
    No ``encode``: analyses must invert it."""

    def __init__(self, latent_dim: int = 6, size: int = 16, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.latent_dim, self.size = latent_dim, size
        self.weight = nn.Parameter(torch.randn(3 * size * size, latent_dim, generator=g))
        self.weight.data /= latent_dim**0.5
        self.bias = nn.Parameter(0.3 * torch.randn(3 * size * size, generator=g))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        x = torch.sigmoid(z @ self.weight.T + self.bias)
        return x.reshape(-1, 3, self.size, self.size)

    forward = decode

    def sample_latents(self, n: int, seed: int | None = None) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        return torch.randn(n, self.latent_dim, generator=g)


def _uint8(x: torch.Tensor) -> np.ndarray:
    """Float ``[N, C, H, W]`` images as the datasets store them: uint8 ``[N, H, W, C]``."""
    return (x.detach().permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()


def test_inversion_recovers_the_images_and_latents_of_an_injective_decoder():
    gen = LinearDecoder()
    z = gen.sample_latents(100, seed=1)
    images = _uint8(gen.decode(z))
    before = [p.detach().clone() for p in gen.parameters()]
    found = invert(gen, images, InversionConfig(steps=300, seed=0))
    pixel_var = float(np.var(images / 255.0))
    assert pixel_var > 0.03  # the scale the bounds below are small against
    # the reconstruction reaches the 8-bit rounding floor (~1.3e-6), far below the variance
    assert float(found.recon_mse.mean()) < 2 * QUANTIZATION_MSE
    assert float(np.percentile(found.recon_mse, 90)) < 2 * QUANTIZATION_MSE
    # the latents themselves (prior std 1): rounding noise moves them by ~1e-3; an image whose
    # pixels saturate the sigmoid pins its latent less tightly, hence the looser maximum
    error = (found.latents - z).abs()
    assert float(error.mean()) < 3e-3 and float(error.max()) < 0.1
    # the start (prior samples) was far away: the test measures the optimisation
    assert float((gen.sample_latents(100, seed=0) - z).abs().mean()) > 0.5
    for p, q in zip(gen.parameters(), before):  # the generator is left alone
        assert torch.equal(p, q) and p.grad is None


def test_batch_size_seed_and_float_input_do_not_change_the_answer():
    gen = LinearDecoder(latent_dim=4, size=8)
    x = gen.decode(gen.sample_latents(20, seed=3)).detach()
    config = InversionConfig(steps=60, seed=5)
    a = invert(gen, x, config)
    b = invert(gen, x, InversionConfig(steps=60, seed=5, batch_size=7))
    torch.testing.assert_close(a.latents, b.latents, atol=1e-5, rtol=0)
    again = invert(gen, x, config)
    assert torch.equal(a.latents, again.latents) and torch.equal(a.recon_mse, again.recon_mse)
    other = invert(gen, x, InversionConfig(steps=60, seed=6))
    assert not torch.equal(a.latents, other.latents)  # the seed picks the starts


def test_restarts_keep_the_best_start_and_init_starts_the_first():
    """A decoder of ``sin(3 z)``: many latents fit locally, so starts matter. Restart 0 starts
    from ``init`` in both runs (the same trajectory, as batches are independent), so the best of
    three is never worse and, on this non-convex objective, better on average."""

    class Periodic(LinearDecoder):
        def decode(self, z: torch.Tensor) -> torch.Tensor:
            return super().decode(2 * torch.sin(3 * z))

    gen = Periodic(latent_dim=3, size=8)
    x = gen.decode(gen.sample_latents(40, seed=1)).detach()
    init = gen.sample_latents(40, seed=9)
    one = invert(gen, x, InversionConfig(steps=80), init=init)
    three = invert(gen, x, InversionConfig(steps=80, restarts=3), init=init)
    assert bool((three.recon_mse <= one.recon_mse + 1e-7).all())
    assert float(three.recon_mse.mean()) < 0.8 * float(one.recon_mse.mean())


def test_prior_penalty_shrinks_the_latents():
    gen = LinearDecoder(latent_dim=4, size=8)
    z = gen.sample_latents(30, seed=2)
    x = gen.decode(z).detach()
    free = invert(gen, x, InversionConfig(steps=200))
    pulled = invert(gen, x, InversionConfig(steps=200, prior=0.05))
    assert float(pulled.latents.norm(dim=1).mean()) < 0.9 * float(free.latents.norm(dim=1).mean())
    assert float(pulled.recon_mse.mean()) > float(free.recon_mse.mean())


@pytest.mark.parametrize(
    "field, value",
    [("steps", 0), ("restarts", 0), ("batch_size", -1), ("lr", 0.0), ("prior", -1.0)],
)
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        InversionConfig(**{field: value}).validate()


def test_bad_shapes():
    gen = LinearDecoder(latent_dim=4)
    with pytest.raises(ValueError, match=r"decode gives images of shape \(3, 16, 16\)"):
        invert(gen, np.zeros((2, 8, 8, 3), np.uint8), InversionConfig(steps=1))
    with pytest.raises(ValueError, match="init must be"):
        invert(gen, np.zeros((2, 16, 16, 3), np.uint8), init=torch.zeros(2, 3))


def _planted_dataset(gen: LinearDecoder, n: int) -> tuple[torch.Tensor, dict, np.ndarray]:
    """The planted direction of tests/test_cage.py in the generator's latent space: the cause is
    a noisy label of z_1 (c = 1[z_1 + 0.7 ε > 0]), the effect a sharp function of z_1 and z_2
    (e = 1[z_1 + 0.5 z_2 > 0]); the images are decode(z) stored as uint8."""
    rng = np.random.default_rng(0)
    z = gen.sample_latents(n, seed=1)
    zn = z.numpy()
    labels = {
        "c": (zn[:, 0] + 0.7 * rng.standard_normal(n) > 0).astype(np.int64),
        "e": (zn[:, 0] + 0.5 * zn[:, 1] > 0).astype(np.int64),
    }
    return z, labels, _uint8(gen.decode(z))


def test_cage_on_inverted_latents_matches_cage_on_the_true_latents(tmp_path):
    """τ from the inverted latents equals τ from the true ones within 10 % of τ (same sign, same
    verdict). The inverted latents sit within ~1e-3 of the true ones (the test above); the
    linear probes CAGE fits have O(1) weights, so the GATEs move by O(1e-3), about 1 % of the
    planted τ (≈ 0.1): the tolerance leaves a margin of ten while a failed inversion (latents
    left at their prior starts, unrelated to the labels) gives τ ≈ 0."""
    gen = LinearDecoder(size=8)
    z, labels, images = _planted_dataset(gen, 600)
    config = CageConfig(permutations=20, num_latents=600, seed=0, device="cpu")
    truth = run_cage(z, labels, "c:e", config, generator=gen).pairs[0]
    analysis = analyze_generator(gen, images, labels, "c:e", config, tmp_path, figures=False)
    found = analysis.result.pairs[0]
    assert truth.tau > 0.05 and truth.inferred == "c->e"  # the planted direction is there
    assert abs(found.tau - truth.tau) <= 0.1 * abs(truth.tau)
    assert found.inferred == truth.inferred
    latents = analysis.payload["latents"]
    assert latents["method"] == "inversion" and latents["steps"] == InversionConfig().steps
    assert latents["recon_mse_mean"] < 0.01 * latents["pixel_variance"]
    assert latents["recon_mse_p90"] <= latents["recon_mse_max"]


def test_image_latents_uses_encode_when_there_is_one():
    class Encoding(LinearDecoder):
        def encode(self, x: torch.Tensor) -> torch.Tensor:
            return torch.full((len(x), self.latent_dim), 0.5)

    z, info = image_latents(Encoding(), np.zeros((3, 16, 16, 3), np.uint8))
    assert info == {"method": "encoder"} and torch.equal(z, torch.full((3, 6), 0.5))
