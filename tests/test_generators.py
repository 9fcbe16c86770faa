"""Generators from outside (issue 16, item 2): ``--generator module:factory | file.py:factory |
FILE.pt`` through ``cage``, ``modules`` and ``sdr``, and the one-line errors."""

import importlib.util
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from causalscene.cli import main
from causalscene.dag import CausalDAG
from causalscene.datasets import write_npz
from causalscene.generators import (
    as_module,
    check_generator,
    default_output,
    has_encoder,
    is_torchscript,
    load_generator,
)

#: torch >= 2.9 calls torch.jit deprecated; TorchScript files are what this feature reads
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")

#: a user's generator file: a tiny conv decoder (4 → 8 → 16 px) with hookable layers ``up1``
#: (ConvTranspose2d, 8 channels at 8 px) and ``to_rgb``; a VAE adding an ``encoder`` submodule
#: and ``encode``; a module without ``decode``.
SOURCE = textwrap.dedent(
    """
    from typing import Optional

    import torch
    from torch import nn


    class ConvDecoder(nn.Module):
        def __init__(self, latent_dim: int = 4):
            super().__init__()
            torch.manual_seed(0)
            self.latent_dim = latent_dim
            self.fc = nn.Linear(latent_dim, 8 * 4 * 4)
            self.up1 = nn.ConvTranspose2d(8, 8, 4, 2, 1)
            self.to_rgb = nn.ConvTranspose2d(8, 3, 4, 2, 1)

        def forward(self, z):
            return self.decode(z)

        @torch.jit.export
        def decode(self, z):
            h = self.fc(z).reshape(-1, 8, 4, 4)
            return torch.sigmoid(self.to_rgb(torch.relu(self.up1(h))))

        @torch.jit.export
        def sample_latents(self, n: int, seed: Optional[int] = None):
            g = torch.Generator()
            if seed is not None:
                g.manual_seed(seed)
            z = torch.randn([n, self.latent_dim], generator=g)
            return z.to(self.fc.weight.device)


    class ConvVAE(ConvDecoder):
        def __init__(self, latent_dim: int = 4):
            super().__init__(latent_dim)
            self.encoder = nn.Sequential(
                nn.Conv2d(3, 8, 4, 2, 1), nn.ReLU(), nn.Conv2d(8, 8, 4, 2, 1), nn.ReLU(),
                nn.Flatten(), nn.Linear(8 * 4 * 4, latent_dim),
            )

        def encode(self, x):
            return self.encoder(x)


    class NoDecode(nn.Module):
        latent_dim = 4

        def sample_latents(self, n, seed=None):
            return torch.zeros(n, 4)


    def with_encoder():
        return ConvVAE()


    def decoder_only():
        return ConvDecoder()


    def no_decode():
        return NoDecode()
    """
)

DAG = CausalDAG.from_dict(
    {
        "name": "pair",
        "nodes": {
            "c": {"states": ["no", "yes"], "rendered": True},
            "e": {"states": ["no", "yes"], "parents": ["c"], "rendered": True},
        },
        "cpts": {"c": [0.5, 0.5], "e": {"no": [0.8, 0.2], "yes": [0.2, 0.8]}},
    }
)


@pytest.fixture(autouse=True)
def _one_thread():
    """Many tiny steps (inversion): a second intra-op thread only adds hand-offs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def outside(tmp_path_factory):
    """``gens.py`` (the source above), ``decoder.pt`` (its decoder, TorchScript, no encode) and
    ``data/``: 200 labelled images of the decoder, c and e thresholds of the latents."""
    root = tmp_path_factory.mktemp("outside")
    (root / "gens.py").write_text(SOURCE)
    spec = importlib.util.spec_from_file_location("_test_outside_gens", root / "gens.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # TorchScript reads the class's source from the file
    decoder = module.ConvDecoder().eval()
    torch.jit.save(torch.jit.script(decoder), str(root / "decoder.pt"))
    z = decoder.sample_latents(200, seed=1)
    with torch.no_grad():
        images = (decoder.decode(z).permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()
    zn = z.numpy()
    labels = {"c": (zn[:, 0] > 0).astype(np.int64), "e": (zn[:, 0] + 0.5 * zn[:, 1] > 0)}
    _write_shards(root / "data", images, {k: np.asarray(v, np.int64) for k, v in labels.items()})
    return root


def _write_shards(root: Path, images: np.ndarray, labels: dict) -> None:
    """One shard folder in the documented format (datasets module docstring)."""
    root.mkdir()
    write_npz(root / "shard-00000.npz", {"images": images, **labels})
    meta = {
        "format": "causalscene-shards",
        "format_version": 1,
        "generator": "handmade",
        "dag": {"file": "pair.yaml", "name": "pair", "definition": DAG.to_dict()},
        "labels": {"c": ["no", "yes"], "e": ["no", "yes"]},
        "extras": {},
        "data": {"key": "images", "dtype": "uint8", "shape": list(images.shape[1:])},
        "seed": 0,
        "image_size": images.shape[1],
        "count": len(images),
        "shards": [{"file": "shard-00000.npz", "count": len(images)}],
    }
    (root / "meta.json").write_text(json.dumps(meta))


# ------------------------------------------------------------------------------ the loader
def test_load_generator_reads_a_factory_file_a_dotted_module_and_torchscript(outside, monkeypatch):
    vae, config = load_generator(f"{outside}/gens.py:with_encoder")
    assert config is None and has_encoder(vae) and not vae.training
    monkeypatch.syspath_prepend(str(outside))
    dotted, _ = load_generator("gens:decoder_only")
    scripted, _ = load_generator(str(outside / "decoder.pt"))
    assert is_torchscript(scripted) and not has_encoder(scripted)
    assert scripted.latent_dim == dotted.latent_dim == 4
    z = dotted.sample_latents(5, seed=3)
    torch.testing.assert_close(scripted.sample_latents(5, seed=3), z)  # the same prior draws
    torch.testing.assert_close(scripted.decode(z), dotted.decode(z))  # the same weights
    torch.testing.assert_close(vae.decode(z), dotted.decode(z))


def test_torchscript_takes_no_hooks_so_hooking_analyses_refuse_it(outside):
    scripted, _ = load_generator(str(outside / "decoder.pt"))
    with pytest.raises(RuntimeError, match="not supported on ScriptModules"):  # torch's limit
        scripted.up1.register_forward_hook(lambda *args: None)
    with pytest.raises(ValueError, match="TorchScript.*module:factory"):
        as_module(scripted)


@pytest.mark.parametrize(
    "spec, error, message",
    [
        ("{root}/gens.py:no_decode", ValueError, r"has no decode\(\)"),
        ("{root}/gens.py:missing", ValueError, "has no callable 'missing'"),
        ("{root}/nothere.py:f", FileNotFoundError, "no such file"),
        ("no_such_package_xyz:f", ValueError, "cannot import no_such_package_xyz"),
        ("{root}/gens.py:", ValueError, "use module:factory"),
        ("{root}/missing.pt", FileNotFoundError, "no such file"),
        ("{root}/junk.pt", ValueError, "not a TorchScript file"),
    ],
)
def test_bad_specs_name_the_fault(outside, spec, error, message):
    (outside / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(error, match=message):
        load_generator(spec.format(root=outside))


def test_check_generator_tells_torchscript_users_to_export():
    class Plain(torch.nn.Module):
        latent_dim = 2

        def forward(self, z):
            return z

    with pytest.raises(ValueError, match=r"TorchScript Plain\) has no decode\(\) \(mark it"):
        check_generator(torch.jit.script(Plain()))


def test_default_output_of_a_spec():
    assert default_output("planted:3", "sdr") == Path("modules_out/planted_3/sdr")
    assert default_output("/tmp/x/g.pt", "sdr") == Path("modules_out/tmp_x_g.pt/sdr")
    assert default_output("pkg.gen:make", "m") == Path("modules_out/pkg.gen_make/m")


# ------------------------------------------------------------------------------ the verbs
def _cage(outside, tmp_path, capsys, spec: str, *extra: str) -> dict:
    argv = ["cage", "--generator", spec, "--data", str(outside / "data"), "--pairs", "c:e"]
    argv += ["--permutations", "10", "--num-latents", "200", "--out", str(tmp_path / "cage")]
    assert main([*argv, "--device", "cpu", "--json", "--no-progress", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_cage_verb_on_a_torchscript_file_inverts(outside, tmp_path, capsys):
    spec = str(outside / "decoder.pt")
    payload = _cage(outside, tmp_path, capsys, spec, "--invert-steps", "40", "--invert-lr", "0.2")
    latents = payload["latents"]
    assert latents["method"] == "inversion" and latents["steps"] == 40 and latents["lr"] == 0.2
    assert latents["recon_mse_mean"] < 0.1 * latents["pixel_variance"]
    assert payload["comparison"] is not None  # the DAG came from the data's meta.json
    assert (tmp_path / "cage" / "counterfactuals_c_e.png").is_file()


def test_cage_verb_on_a_factory_with_encode_encodes(outside, tmp_path, capsys):
    payload = _cage(outside, tmp_path, capsys, f"{outside}/gens.py:with_encoder")
    assert payload["latents"] == {"method": "encoder"}
    assert [p["cause"] for p in payload["pairs"]] == ["c"]


def test_modules_and_sdr_verbs_on_a_factory(outside, tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(outside))
    assert main(["modules", "--generator", "gens:decoder_only", "--list-layers", "--json"]) == 0
    assert "up1" in [row["name"] for row in json.loads(capsys.readouterr().out)]
    mods = tmp_path / "mods"
    argv = ["modules", "--generator", "gens:with_encoder", "--layer", "up1", "--k", "2"]
    argv += ["--pairs", "8", "--out", str(mods), "--json", "--device", "cpu"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["k"] == 2 and sorted(sum(result["modules"].values(), [])) == list(range(8))
    out = tmp_path / "sdr"
    argv = ["sdr", "--generator", f"{outside}/gens.py:with_encoder", "--samples", "8"]
    assert main([*argv, "--out", str(out), "--json", "--device", "cpu"]) == 0
    trained = json.loads(capsys.readouterr().out)["trained"]
    assert trained["decoder"]["count"] > 0 and trained["encoder"]["count"] > 0
    # the second conv of each side (the first one's input is z's map or the image): up1 → to_rgb,
    # encoder.0 → encoder.2
    assert list(trained["decoder_layers"]) == ["to_rgb"]
    assert list(trained["encoder_layers"]) == ["2"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["modules", "--generator", "{pt}", "--list-layers"], "TorchScript module, which takes"),
        (["sdr", "--generator", "{pt}", "--out", "{tmp}/s"], "TorchScript module, which takes"),
        (["sdr", "--generator", "{root}/gens.py:decoder_only", "--out", "{tmp}/s"], "no encoder"),
        (["cage", "--generator", "{root}/gens.py:no_decode", "--data", "{root}/data"], "decode"),
        (["cage", "--generator", "{pt}"], "pass --data DIR"),
        (["cage", "{root}", "--generator", "{pt}"], "exactly one of RUN and --generator"),
        (["sdr"], "exactly one of RUN and --generator"),
    ],
)
def test_verbs_refuse_in_one_line(outside, tmp_path, capsys, argv, message):
    names = {"pt": str(outside / "decoder.pt"), "root": str(outside), "tmp": str(tmp_path)}
    argv = [a.format(**names) for a in argv]
    if argv[0] == "cage":
        argv += ["--pairs", "c:e", "--out", str(tmp_path / "c"), "--device", "cpu"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "s").exists() and not (tmp_path / "c").exists()  # nothing written


def test_cage_help_states_the_inversion_defaults(capsys):
    from causalscene.inversion import InversionConfig

    with pytest.raises(SystemExit):
        main(["cage", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    defaults = InversionConfig()
    for name in ("steps", "lr", "prior", "restarts"):
        assert f"(default {getattr(defaults, name):g})" in text, name
