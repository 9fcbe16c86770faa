"""Hybridization, influence maps and modules (Besserve et al. 2020): exact identities, a brute-force
route for the batched maps, planted modules recovered, bad input, the ``modules`` verb."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score
from torch import nn

from causalscene.cli import main
from causalscene.modularity import (
    PlantedModulesGenerator,
    binarize_maps,
    cluster_modules,
    cluster_stability,
    elementary_influence_maps,
    hookable_layers,
    hybridize,
    influence_map,
    module_hybrids,
    region_masks,
)
from causalscene.nets import Decoder


class TinyGenerator(nn.Module):
    """fc → 4×4 map → conv ``mid`` (channel 0's weights zeroed: a constant activation) → image."""

    def __init__(self, latent_dim: int = 4, width: int = 6, size: int = 16):
        super().__init__()
        torch.manual_seed(0)
        self.latent_dim, self.width = latent_dim, width
        self.fc = nn.Linear(latent_dim, width * 16)
        self.mid = nn.Conv2d(width, width, 3, padding=1)
        self.out = nn.Sequential(
            nn.Upsample(scale_factor=size // 4), nn.Conv2d(width, 3, 3, padding=1), nn.Sigmoid()
        )
        with torch.no_grad():
            self.mid.weight[0].zero_()  # channel 0 of `mid` is its bias whatever z is

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.fc(z)).view(len(z), self.width, 4, 4)
        return self.out(torch.relu(self.mid(h)))


class DecoderGenerator(nn.Module):
    """The project's conv Decoder with a sigmoid (what PlainVAE.decode does)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.latent_dim = 3
        self.decoder = Decoder(16, 3, base_channels=4)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z))


@pytest.mark.parametrize(
    "make, layer", [(TinyGenerator, "mid"), (DecoderGenerator, "decoder.conv1")]
)
def test_hybridize_all_channels_is_z2_and_none_is_z1(make, layer):
    gen = make().eval()
    z = torch.randn(10, gen.latent_dim)
    z1, z2 = z[:5], z[5:]
    channels = {i.name: i.channels for i in hookable_layers(gen)}[layer]
    with torch.no_grad():
        assert torch.allclose(hybridize(gen, layer, range(channels), z1, z2), gen(z2), atol=1e-6)
        assert torch.allclose(hybridize(gen, layer, [], z1, z2), gen(z1), atol=1e-6)
        partial = hybridize(gen, layer, [1], z1, z2)
    assert not torch.allclose(partial, gen(z1)) and not torch.allclose(partial, gen(z2))


def test_constant_channel_has_zero_influence_and_batched_maps_match_one_at_a_time():
    gen = TinyGenerator().eval()
    z = torch.randn(24, gen.latent_dim, generator=torch.Generator().manual_seed(3))
    z1, z2 = z[:12], z[12:]
    maps = elementary_influence_maps(gen, "mid", z1, z2, batch_size=30)  # 2 channels per pass
    assert maps.shape == (6, 16, 16)
    assert torch.count_nonzero(maps[0]) == 0  # constant activation → zero map, exactly
    assert bool((maps[1:].amax(dim=(1, 2)) > 1e-4).all())
    # independent route: eq. 2 with E = {c}, one channel at a time, direct hybrid vs base
    for c in range(6):
        assert torch.allclose(maps[c], influence_map(gen, "mid", [c], z1, z2), atol=1e-6)
    groups = elementary_influence_maps(gen, "mid", z1, z2, num_groups=3)
    assert groups.shape == (3, 6, 16, 16)
    assert torch.allclose(groups.mean(dim=0), maps, atol=1e-6)  # equal group sizes (12 / 3)


def test_decoder_repeat_route_matches_one_at_a_time():
    gen = DecoderGenerator().eval()  # its reshape ties the output to the input batch: repeat route
    z = torch.randn(8, 3)
    maps = elementary_influence_maps(gen, "decoder.conv1", z[:4], z[4:])
    for c in (0, 3):
        assert torch.allclose(
            maps[c], influence_map(gen, "decoder.conv1", [c], z[:4], z[4:]), atol=1e-6
        )


def test_binarize_keeps_top_quarter_and_zero_maps_stay_zero():
    maps = np.zeros((2, 8, 8))
    maps[0] = np.arange(64).reshape(8, 8)
    binary = binarize_maps(maps, smooth=1)
    assert binary[0].sum() == 16 and binary[0][-16:].all() and binary[1].sum() == 0


def test_planted_modules_recovered_and_stability_peaks_at_true_k():
    k = 4
    gen = PlantedModulesGenerator(k=k, channels_per_module=5, image_size=16, seed=0)
    assert torch.allclose(region_masks(k, 16).sum(0), torch.ones(16, 16))
    z = gen.sample_latents(96, seed=0)
    group_maps = elementary_influence_maps(gen, "hidden", z[:48], z[48:], num_groups=8)
    maps = group_maps.mean(0)
    truth = gen.true_labels()
    nmf = cluster_modules(maps, k)
    kmeans = cluster_modules(maps, k, method="kmeans")
    assert adjusted_rand_score(truth, nmf.labels) == 1.0
    assert 0.0 <= adjusted_rand_score(truth, kmeans.labels) <= 1.0  # reported beside NMF
    # the channels of one planted module influence only their own region
    for j in range(k):
        outside = maps[nmf.labels == nmf.labels[j * 5]] * (1 - gen.masks[j])
        assert float(outside.abs().max()) == 0.0
    stability = cluster_stability(group_maps, [2, 3, 4, 5, 6], num_splits=6)
    assert stability.best_k == k
    at = stability.ks.index(k)
    others = [i for i in range(len(stability.ks)) if i != at]
    assert stability.consistency[at] == pytest.approx(1.0)
    assert all(stability.consistency[i] <= stability.consistency[at] for i in others)
    assert all(stability.template_cosine[i] < stability.template_cosine[at] for i in others)
    assert stability.consistency[0] < 0.9  # K = 2 must merge modules arbitrarily
    hybrids = module_hybrids(gen, "hidden", nmf, z[:3], z[48:51])
    assert hybrids["hybrids"].shape == (k, 3, 3, 16, 16)
    # the hybrid of module j equals Original 2 inside its region and Original 1 outside
    j = int(nmf.labels[0])
    region = gen.masks[0].bool()
    h = hybrids["hybrids"][j]
    assert torch.allclose(h[..., region], hybrids["original2"][..., region], atol=1e-6)
    assert torch.allclose(h[..., ~region], hybrids["original1"][..., ~region], atol=1e-6)


def test_bad_input_is_a_clear_value_error():
    gen = TinyGenerator().eval()
    z = torch.randn(4, 4)
    with pytest.raises(ValueError, match=r"unknown layer 'nope'; hookable layers: mid"):
        hybridize(gen, "nope", [0], z[:2], z[2:])
    with pytest.raises(ValueError, match="pairs >= 1"):
        elementary_influence_maps(gen, "mid", z[:0], z[:0])
    maps = torch.rand(6, 8, 8)
    for bad in (1, 7):
        with pytest.raises(ValueError, match=r"K must be an integer in \[2, 6\]"):
            cluster_modules(maps, bad)
    with pytest.raises(ValueError, match="channels must lie"):
        hybridize(gen, "mid", [6], z[:2], z[2:])


def test_modules_verb_on_planted_generator(tmp_path, capsys):
    assert main(["modules", "planted:3", "--list-layers", "--json"]) == 0
    layers = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in layers][:2] == ["stem", "hidden"]
    out = tmp_path / "m"
    code = main(
        [
            "modules",
            "planted:3",
            "--layer",
            "hidden",
            "--k-range",
            "2:4",
            "--pairs",
            "16",
            "--splits",
            "2",
            "--out",
            str(out),
            "--json",
            "--seed",
            "1",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["k"] == 3 and result["stability"]["best_k"] == 3
    for name in (
        "influence_mosaic.png",
        "templates.png",
        "stability.png",
        "hybrids.png",
        "modules.json",
        "config.json",
    ):
        assert (out / name).is_file(), name
    assert main(["modules", "planted:3", "--layer", "nope", "--k", "2", "--out", str(out)]) == 2
    assert "hookable layers: stem, hidden" in capsys.readouterr().err
    assert main(["modules", "planted:3", "--layer", "hidden", "--k", "1", "--out", str(out)]) == 2
    assert (
        main(
            [
                "modules",
                "planted:3",
                "--layer",
                "hidden",
                "--k",
                "2",
                "--pairs",
                "0",
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert "--pairs must be an integer >= 1, got 0" in capsys.readouterr().err


@pytest.mark.slow
def test_reproduce_modules_planted(tmp_path):
    from causalscene.reproductions import run

    result = run("modules-planted", tmp_path, seed=0, scale="small", device="cpu")
    assert result["holds"] is True
    assert result["measured"]["stability_peaks_at_true_k"] is True
    for key, measured in result["measured"].items():
        if not key.startswith("K="):
            continue
        assert measured["ari_nmf_at_true_k"] == 1.0
        assert measured["stability_best_k"] == int(key.split("=")[1])
    assert (tmp_path / "result.json").is_file()
