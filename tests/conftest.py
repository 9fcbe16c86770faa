import os

import matplotlib
import pytest

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np  # noqa: E402
import pyro  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _pyro_clean():
    """Every test starts with an empty param store, validation on and a fixed seed."""
    pyro.clear_param_store()
    pyro.enable_validation(True)
    pyro.set_rng_seed(0)
    np.random.seed(0)
    yield
    pyro.clear_param_store()


@pytest.fixture
def dag_path():
    def get(name: str) -> str:
        from causalscene.dag import shipped_dag_path

        return str(shipped_dag_path(name))  # the package data, as an installed package finds it

    return get


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """``(run, data)``: a plain VAE trained for one epoch on 96 procedural faces (32 px), shared
    by the CAGE tests."""
    from causalscene import procgen
    from causalscene.model import PlainVAE
    from causalscene.train import TrainConfig, fit

    root = tmp_path_factory.mktemp("tiny_plain_faces")
    data = procgen.make_dataset("faces", 96, 32, 0, root / "faces")
    run = root / "run"
    config = TrainConfig(
        data=str(data),
        dag="faces",
        out=str(run),
        epochs=1,
        latent_dim=4,
        base_channels=8,
        no_dag=True,
        device="cpu",
        progress=False,
        batch_size=32,
    )
    fit(PlainVAE(32, latent_dim=4, base_channels=8), str(data), config, out=run)
    return run, data
