"""Spectral density ratio (Besserve et al. 2021): closed forms, a spatial-domain (Parseval) route,
transposed convolutions, the weight-only SDR, the training penalty, the ``sdr`` and ``modules``
verbs on a trained run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from causalscene.cli import main
from causalscene.sdr import layer_sdr, sdr_penalty, sdr_summary, spectral_density_ratio, weight_sdr


def _circular_conv(h: np.ndarray, x: np.ndarray) -> np.ndarray:
    """y[n] = Σ_m h[m] x[n - m] (circular), by brute force."""
    y = np.zeros_like(x)
    for a in range(h.shape[0]):
        for b in range(h.shape[1]):
            y += h[a, b] * np.roll(x, (a, b), axis=(0, 1))
    return y


def test_sdr_of_a_pure_frequency_is_the_filter_gain_there():
    n, f = 16, (3, 5)
    grid = np.arange(n)
    x = np.cos(2 * np.pi * (f[0] * grid[:, None] + f[1] * grid[None, :]) / n)
    h = np.random.default_rng(0).normal(size=(3, 3))
    gain = (
        abs(
            sum(
                h[a, b] * np.exp(-2j * np.pi * (f[0] * a + f[1] * b) / n)
                for a in range(3)
                for b in range(3)
            )
        )
        ** 2
    )
    expected = gain / (h**2).sum()  # ⟨|ĥ|²⟩ = Σ h² (Parseval); S_x lives on ±f only
    got = spectral_density_ratio(torch.tensor(h), torch.tensor(x))
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_sdr_equals_spatial_parseval_route_per_channel_pair():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(2, 3, 3, 3))
    x = rng.normal(size=(4, 3, 10, 10)) + rng.normal(size=(1, 3, 10, 1))  # not white
    got = spectral_density_ratio(torch.tensor(w), torch.tensor(x)).numpy()
    for o in range(2):
        for i in range(3):
            num = np.mean([(_circular_conv(w[o, i], x[b, i]) ** 2).sum() for b in range(4)])
            den = np.mean([(x[b, i] ** 2).sum() for b in range(4)]) * (w[o, i] ** 2).sum()
            assert got[o, i] == pytest.approx(num / den, rel=1e-5)


def test_delta_filter_and_white_noise_give_one():
    x = torch.randn(5, 12, 12)
    delta = torch.zeros(3, 3)
    delta[1, 1] = 2.0
    assert float(spectral_density_ratio(delta, x)) == pytest.approx(1.0, abs=1e-6)
    white = torch.randn(4000, 16, 16, generator=torch.Generator().manual_seed(0))
    smooth = torch.ones(3, 3)  # strongly low-pass, yet independent of a flat spectrum
    assert float(spectral_density_ratio(smooth, white)) == pytest.approx(1.0, abs=0.02)
    low = torch.nn.functional.avg_pool2d(torch.randn(200, 1, 34, 34), 3, 1)[:, 0, :16, :16]
    assert float(spectral_density_ratio(smooth, low)) > 1.5  # tuned to the map's power
    edge = torch.tensor([[0.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 0.0]])
    assert float(spectral_density_ratio(edge, low)) < 0.5  # avoids it


def test_layer_sdr_hooks_inputs_and_zero_upsamples_for_transposed_convs():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.ConvTranspose2d(3, 4, 4, 2, 1))
    x = torch.rand(6, 2, 8, 8)
    with torch.no_grad():
        sdr = layer_sdr(net, x)
    assert list(sdr) == ["2"] and sdr["2"].shape == (4, 3)  # first conv skipped (image input)
    maps = torch.relu(net[0](x)).detach().numpy()
    up = np.zeros((6, 3, 16, 16))
    up[..., ::2, ::2] = maps  # independent zero insertion
    w = net[2].weight.detach().numpy()  # [in, out, k, k]
    for o, i in [(0, 0), (3, 2)]:
        num = np.mean([(_circular_conv(w[i, o], up[b, i]) ** 2).sum() for b in range(6)])
        den = np.mean([(up[b, i] ** 2).sum() for b in range(6)]) * (w[i, o] ** 2).sum()
        assert float(sdr["2"][o, i]) == pytest.approx(num / den, rel=1e-4)
    # a transposed conv is zero insertion + convolution: check that reading against torch
    manual = torch.nn.functional.conv2d(
        torch.tensor(up[:, :, :, :], dtype=torch.float32),
        net[2].weight.detach().flip(-1, -2).transpose(0, 1),
        padding=2,
    )[..., :16, :16]
    assert torch.allclose(
        manual + net[2].bias.detach().view(1, -1, 1, 1),
        net[2](torch.relu(net[0](x))).detach(),
        atol=1e-5,
    )


def test_weight_sdr_is_one_after_a_delta_layer_and_penalty_is_differentiable():
    net = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.ConvTranspose2d(2, 3, 4, 2, 1))
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].weight[0, 0, 1, 1] = 1.0
        net[0].weight[1, 1, 1, 1] = 1.0
    sdr = weight_sdr(net)
    assert list(sdr) == ["0->1"] and torch.allclose(sdr["0->1"], torch.ones(3, 2), atol=1e-5)
    assert float(sdr_penalty(net).detach()) == pytest.approx(0.0, abs=1e-8)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.ConvTranspose2d(2, 3, 4, 2, 1))
    optimizer = torch.optim.Adam(net.parameters(), lr=0.02)
    first = float(sdr_penalty(net).detach())
    for _ in range(30):
        optimizer.zero_grad()
        loss = sdr_penalty(net)
        loss.backward()
        optimizer.step()
    assert net[0].weight.grad is not None and float(sdr_penalty(net).detach()) < first
    z_penalty = sdr_penalty(net, torch.rand(3, 2, 8, 8))
    assert z_penalty.requires_grad and float(z_penalty.detach()) >= 0.0
    assert float(sdr_penalty(nn.Linear(2, 2)).detach()) == 0.0


def test_bad_shapes_and_summary():
    with pytest.raises(ValueError, match="input channels"):
        spectral_density_ratio(torch.rand(2, 3, 3, 3), torch.rand(1, 2, 8, 8))
    with pytest.raises(ValueError, match="larger than the maps"):
        spectral_density_ratio(torch.rand(5, 5), torch.rand(4, 4))
    summary = sdr_summary(np.array([0.5, 1.0, 1.0, 2.0, np.nan]))
    assert summary["count"] == 4 and summary["median"] == 1.0
    assert summary["mode"] == pytest.approx(1.0, rel=0.06)
    with pytest.raises(ValueError, match="no finite"):
        sdr_summary(np.array([np.nan]))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from causalscene.model import PlainVAE
    from causalscene.train import TrainConfig, fit

    rng = np.random.default_rng(0)
    images = np.zeros((64, 16, 16, 3), np.uint8)
    for n in range(64):  # coloured squares: something to learn
        r, c = rng.integers(0, 10, size=2)
        images[n, r : r + 6, c : c + 6] = rng.integers(60, 255, size=3)
    run = tmp_path_factory.mktemp("runs") / "plain"
    config = TrainConfig(
        epochs=1,
        batch_size=16,
        latent_dim=3,
        base_channels=4,
        device="cpu",
        progress=False,
        no_dag=True,
        grid_size=4,
        sdr_weight=0.5,  # the train loop calls sdr_penalty(decoder)
    )
    torch.manual_seed(0)
    history = fit(PlainVAE(16, 3, base_channels=4), (images, {}), config, out=run)
    assert np.isfinite(history[-1]["heldout_elbo"])
    return run


def test_sdr_and_modules_verbs_on_a_trained_run(tiny_run, tmp_path, capsys):
    out = tmp_path / "sdr"
    assert (
        main(
            [
                "sdr",
                str(tiny_run),
                "--out",
                str(out),
                "--samples",
                "16",
                "--json",
                "--seed",
                "0",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["trained"]["decoder"]["count"] > 0 and result["trained"]["encoder"]["count"] > 0
    assert (out / "sdr_histograms.png").is_file() and (out / "sdr.json").is_file()
    assert main(["modules", str(tiny_run), "--list-layers", "--json"]) == 0
    names = [row["name"] for row in json.loads(capsys.readouterr().out)]
    assert "decoder.conv1" in names
    mods = tmp_path / "mods"
    assert (
        main(
            [
                "modules",
                str(tiny_run),
                "--layer",
                "decoder.conv1",
                "--k",
                "2",
                "--pairs",
                "8",
                "--out",
                str(mods),
                "--json",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["k"] == 2 and sorted(sum(result["modules"].values(), [])) == list(range(4))
    assert (mods / "hybrids.png").is_file()
    assert main(["sdr", "planted:3", "--out", str(out), "--samples", "4"]) == 2
    assert "no encoder" in capsys.readouterr().err
