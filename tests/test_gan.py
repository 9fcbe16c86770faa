"""The DCGAN (:mod:`causalscene.gan`) and its training (:mod:`causalscene.train.adversarial`):
architecture against Radford et al.'s recipe, the losses against their closed forms, one step
against a hand-written one, exact resume, the NaN guard, the ``train``/``generate`` verbs and
``load_run``."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from causalscene.cli import main
from causalscene.gan import DCGAN, discriminator_loss, generator_loss
from causalscene.generators import check_generator, has_encoder, load_generator
from causalscene.train import TrainConfig, TrainingDiverged, fit, load_run
from causalscene.train.adversarial import AdversarialStep
from causalscene.train.data import TrainData


def _config(**kw) -> TrainConfig:
    base = dict(
        epochs=2,
        batch_size=8,
        latent_dim=8,
        base_channels=4,
        device="cpu",
        progress=False,
        checkpoint_every=3,
        grid_size=4,
    )
    base.update(kw)
    return TrainConfig.for_model("dcgan", **base)


def _images(n: int = 40, size: int = 16, seed: int = 0) -> tuple[np.ndarray, dict]:
    """Random blobs on a dark background: uint8 [n, size, size, 3], no labels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = np.zeros((n, size, size, 3), np.uint8)
    for i in range(n):
        cy, cx, r = rng.uniform(4, size - 4, 2).tolist() + [rng.uniform(2, 5)]
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
        images[i][mask] = rng.integers(80, 256, 3)
    return images, {}


@pytest.mark.parametrize("size", [16, 32, 64])
def test_architecture_follows_radford_et_al(size):
    """G: project to 4x4, then log2(S/4) stride-2 transposed convs (64 px: the paper's four),
    BatchNorm + ReLU between, Tanh out (mapped to [0, 1]); D: stride-2 convs, BatchNorm except on
    the input layer, LeakyReLU, no pooling; widths double per stage; weights N(0, 0.02)."""
    torch.manual_seed(0)
    base = 8
    model = DCGAN(size, latent_dim=10, base_channels=base)
    g, d = model.generator, model.discriminator
    stages = int(np.log2(size // 4))
    convs = [m for m in g.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert len(convs) == stages + 1 and [c.stride for c in convs[1:]] == [(2, 2)] * stages
    assert [c.out_channels for c in convs] == [base * 2**i for i in reversed(range(stages))] + [3]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in g.modules()) == stages
    dconvs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in dconvs] == [base * 2**i for i in range(stages)] + [1]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in d.modules()) == stages - 1
    assert not any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d, nn.Linear)) for m in model.modules())
    weights = torch.cat([c.weight.flatten() for c in convs + dconvs])
    assert abs(weights.mean().item()) < 2e-3 and weights.std().item() == pytest.approx(
        0.02, rel=0.1
    )
    z = torch.randn(5, 10)
    model.eval()
    x = g.decode(z)
    assert x.shape == (5, 3, size, size) and 0.0 <= x.min() and x.max() <= 1.0
    tanh_out = torch.tanh(g.get_submodule(f"conv{stages}")(_last_hidden(g, z)))
    assert torch.allclose(x, (tanh_out + 1) / 2)
    assert d(x).shape == (5,)
    assert torch.equal(g(z), x)  # forward is decode: what hooks need


def _last_hidden(g, z):
    """G's last hidden map, by hooking its last layer's input."""
    seen = {}
    layer = g.get_submodule(f"conv{g.stages}")
    handle = layer.register_forward_hook(lambda m, inp, out: seen.setdefault("h", inp[0]))
    g.decode(z)
    handle.remove()
    return seen["h"]


def test_generator_protocol_and_bad_sizes():
    gen = DCGAN(16, 6, 4).as_generator()
    assert check_generator(gen) is gen and gen.latent_dim == 6 and not has_encoder(gen)
    a, b = gen.sample_latents(3, seed=1), gen.sample_latents(3, seed=1)
    assert torch.equal(a, b) and a.shape == (3, 6)
    assert torch.equal(a, torch.randn(3, 6, generator=torch.Generator().manual_seed(1)))
    for size in (8, 48, 256):
        with pytest.raises(ValueError, match="16, 32, 64 or 128"):
            DCGAN(size, 6, 4)


def test_losses_equal_the_closed_forms():
    """D: -mean log σ(l_real) - mean log(1 - σ(l_fake)) = mean softplus(-l_real) + mean
    softplus(l_fake); G (non-saturating): -mean log σ(l_fake) = mean softplus(-l_fake)."""
    gen = torch.Generator().manual_seed(0)
    real, fake = torch.randn(64, generator=gen) * 3, torch.randn(64, generator=gen) * 3
    d_loss = F.softplus(-real).mean() + F.softplus(fake).mean()
    assert torch.allclose(discriminator_loss(real, fake), d_loss)
    assert torch.allclose(generator_loss(fake), F.softplus(-fake).mean())
    sig = torch.sigmoid(fake.double())
    assert generator_loss(fake).item() == pytest.approx(-torch.log(sig).mean().item(), rel=1e-5)


def test_one_step_equals_the_two_updates_by_hand():
    """AdversarialStep = D's Adam step on softplus losses (G(z) detached), then G's Adam step on
    -log D(G(z)) through the updated D; metrics are the losses and mean D(x), D(G(z))."""
    torch.manual_seed(0)
    model = DCGAN(16, 8, 4)
    twin = copy.deepcopy(model)
    images = torch.from_numpy(_images(16)[0]).permute(0, 3, 1, 2).contiguous()
    data = TrainData(images, {}, images[:0], {}, frozenset())
    step = AdversarialStep(model, _config(), data, world=1)
    idx = torch.arange(8)
    torch.manual_seed(5)
    metrics = step(idx)

    opt_d = torch.optim.Adam(twin.discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(twin.generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    torch.manual_seed(5)
    z = torch.randn(8, 8)
    real = images[:8].float() / 255
    fake = twin.generator(z)
    lr_, lf = twin.discriminator(real), twin.discriminator(fake.detach())
    loss_d = F.softplus(-lr_).mean() + F.softplus(lf).mean()
    opt_d.zero_grad()
    loss_d.backward()
    opt_d.step()
    loss_g = F.softplus(-twin.discriminator(fake)).mean()
    opt_g.zero_grad()
    loss_g.backward()
    opt_g.step()
    expected = [
        loss_d.item(),
        loss_g.item(),
        lr_.sigmoid().mean().item(),
        lf.sigmoid().mean().item(),
    ]
    assert metrics.tolist() == pytest.approx(expected, rel=1e-6)
    for (name, a), b in zip(model.state_dict().items(), twin.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-7), name


def test_fit_writes_the_run_folder_and_load_run_rebuilds_it(tmp_path):
    torch.manual_seed(0)
    model = DCGAN(16, 8, 4)
    history = fit(model, _images(), _config(), out=tmp_path / "run")
    run = tmp_path / "run"
    for name in ("config.json", "model.json", "checkpoint.pt", "metrics.jsonl", "samples_e002.png"):
        assert (run / name).is_file(), name
    assert not (run / "recon_e001.png").exists() and not (run / "dag.json").exists()
    lines = [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()]
    assert lines == history and [r["epoch"] for r in lines] == [1, 2]
    for r in lines:
        assert {"loss_d", "loss_g", "d_real", "d_fake"} <= set(r) and "train_elbo" not in r
        assert 0 < r["d_real"] < 1 and 0 < r["d_fake"] < 1 and r["loss_d"] > 0 and r["step"] > 0
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert {"model", "optimizer_d", "optimizer_g", "rng"} <= set(state)
    info = json.loads((run / "config.json").read_text())["config"]
    assert (info["model"], info["lr"], info["beta1"]) == ("dcgan", 2e-4, 0.5)
    loaded, config = load_run(run)
    assert isinstance(loaded, DCGAN) and config.model == "dcgan" and not loaded.training
    z = torch.randn(3, 8)
    model.eval()
    assert torch.equal(loaded.generator.decode(z), model.generator.decode(z))
    generator, _ = load_generator(str(run))
    assert type(generator).__name__ == "DCGANGenerator" and not has_encoder(generator)


class _Interrupt(Exception):
    pass


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path):
    """Stopped at global step 8 (last checkpoint: step 6, mid-epoch 2) and resumed in a fresh
    model: parameters, BatchNorm statistics, both optimisers and metrics are bit-identical to a
    run that was never stopped (CPU)."""
    data = _images(40)  # 36 training images, batch 8: 5 steps per epoch

    def stop(info):
        if info["global_step"] == 8:
            raise _Interrupt

    torch.manual_seed(0)
    with pytest.raises(_Interrupt):
        fit(DCGAN(16, 8, 4), data, _config(), out=tmp_path / "killed", callbacks=[stop])
    state = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (1, 1, 6)
    torch.manual_seed(123)  # a different init: everything must come from the checkpoint
    fit(DCGAN(16, 8, 4), data, _config(), out=tmp_path / "killed", resume=True)
    torch.manual_seed(0)
    fit(DCGAN(16, 8, 4), data, _config(), out=tmp_path / "reference")
    a = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "reference" / "checkpoint.pt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 10
    for key, value in b["model"].items():
        assert torch.equal(a["model"][key], value), key
    for opt in ("optimizer_d", "optimizer_g"):
        for p, s in b[opt]["state"].items():
            for k, v in s.items():
                assert torch.equal(a[opt]["state"][p][k], v), (opt, p, k)
    ma, mb = (
        (tmp_path / r / "metrics.jsonl").read_text().splitlines() for r in ("killed", "reference")
    )
    strip = ("seconds", "images_per_s")
    assert [{k: v for k, v in json.loads(s).items() if k not in strip} for s in ma] == [
        {k: v for k, v in json.loads(s).items() if k not in strip} for s in mb
    ]


def test_nan_guard_stops_a_diverged_run(tmp_path):
    data = _images(40)
    model = DCGAN(16, 8, 4)

    def poison(info):
        if info["global_step"] == 7:  # after step 7: step 8's losses are NaN
            with torch.no_grad():
                model.generator.project.weight.fill_(float("nan"))

    cfg = _config(epochs=3, checkpoint_every=2, log_every=1)
    with pytest.raises(TrainingDiverged, match="NaN/inf.*last good checkpoint"):
        fit(model, data, cfg, out=tmp_path / "run", callbacks=[poison])
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["global_step"] == 6  # the last checkpoint before the NaN: kept
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    with pytest.raises(TrainingDiverged, match="NaN/inf"):
        fit(DCGAN(16, 8, 4), data, _config(lr=1e30, log_every=1), out=None)


def test_train_and_generate_verbs(tmp_path, capsys):
    from causalscene import procgen

    data = procgen.make_dataset("rpg", 24, 32, seed=0, out=tmp_path / "rpg")
    run, grid = tmp_path / "run", tmp_path / "grid.png"
    tiny = ["--epochs", "1", "--batch-size", "8", "--latent-dim", "6", "--base-channels", "4"]
    argv = ["train", "--model", "dcgan", "--data", str(data), "--out", str(run), *tiny]
    assert main([*argv, "--no-progress", "--seed", "0"]) == 0
    assert "D loss" in capsys.readouterr().out
    tiny[1] = "2"
    argv = ["train", "--model", "dcgan", "--data", str(data), "--out", str(run), *tiny]
    assert main([*argv, "--no-progress", "--seed", "0", "--resume"]) == 0
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    assert main(["generate", str(run), "--n", "5", "--out", str(grid), "--seed", "1"]) == 0
    assert "unconditional" in capsys.readouterr().out
    with Image.open(grid) as img:
        assert 32 <= img.size[1] < 64 and img.size[0] >= 5 * 32  # one row of five 32-px images
    capsys.readouterr()
    refused = [
        ["generate", str(run), "--do", "action=attack", "--out", str(tmp_path / "g2.png")],
        ["counterfactual", str(run), "--index", "0", "--do", "action=attack"],
        ["infer", str(run), "--image", str(grid)],
        ["evaluate", str(run)],
        ["train", "--model", "dcgan", "--dag", "rpg", "--data", str(data), "--out", "x", *tiny],
        ["train", "--model", "dcgan", "--cuda-graph", "--data", str(data), "--out", "x", *tiny],
    ]
    for args in refused:
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert "no DAG" in err or "is for VAEs" in err, err
    assert not (tmp_path / "g2.png").exists() and not (tmp_path / "x").exists()


@pytest.mark.slow
def test_train_dcgan_with_compile_follows_the_eager_run(tmp_path):
    """``--compile`` on a GAN compiles both nets and trains the same model as the eager run: the
    same losses to float rounding (fused kernels round differently) and the same weights' names."""
    from causalscene import procgen
    from causalscene.train import load_run
    from causalscene.train.graph import compile_networks

    data = procgen.make_dataset("rpg", 24, 32, seed=0, out=tmp_path / "rpg")
    tiny = ["--epochs", "1", "--batch-size", "8", "--latent-dim", "6", "--base-channels", "4"]
    runs = {}
    for flag in ([], ["--compile"]):
        run = tmp_path / ("compiled" if flag else "eager")
        argv = ["train", "--model", "dcgan", "--data", str(data), "--out", str(run), *tiny]
        assert main([*argv, *flag, "--no-progress", "--seed", "0"]) == 0
        record = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
        model, config = load_run(run)
        runs[bool(flag)] = (record, model.state_dict(), config.compile)
    assert (runs[False][2], runs[True][2]) == (False, True)
    for key in ("loss_d", "loss_g", "d_real", "d_fake"):
        assert runs[True][0][key] == pytest.approx(runs[False][0][key], rel=1e-3), key
    assert list(runs[True][1]) == list(runs[False][1])
    assert compile_networks(model) == [n for n, _ in model.named_children()]  # both nets
