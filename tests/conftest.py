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
