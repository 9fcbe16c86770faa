"""``causalscene infer RUN --image one.png`` on a DAG with hidden nodes (rpg_fight).

A batch of one image used to fail inside Pyro (``error: a``): enumeration drops size-1 dims, so
the data plate of size 1 was unknown to ``compute_marginals``. The answer for one image must be
the answer that image gets inside a larger batch, and with every label given it must be the
exact p(hidden | labels) of the DAG (variable elimination, an independent route).
"""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image

from causalscene import procgen, queries
from causalscene.cli import main
from causalscene.generate import infer, load_causal, read_images


def _tiny_run(tmp_path, capsys):
    data = procgen.make_dataset("rpg", 32, 32, seed=0, out=tmp_path / "rpg")
    run = tmp_path / "run"
    flags = ["--epochs", "1", "--batch-size", "16", "--latent-dim", "2", "--base-channels", "4"]
    train = ["train", "--dag", "rpg", "--data", str(data), "--out", str(run), *flags]
    assert main([*train, "--no-progress"]) == 0
    capsys.readouterr()
    return run


def test_infer_one_rpg_image_through_the_cli(tmp_path, capsys):
    run = _tiny_run(tmp_path, capsys)
    model, _ = load_causal(run)
    assert model.dag.hidden_nodes, "the point of this test is a DAG with hidden nodes"
    pngs = []
    for i in range(2):
        pngs.append(tmp_path / f"img{i}.png")
        Image.fromarray((np.random.default_rng(i).random((32, 32, 3)) * 255).astype(np.uint8)).save(
            pngs[-1]
        )
    assert main(["infer", str(run), "--image", str(pngs[0]), "--json"]) == 0
    one = json.loads(capsys.readouterr().out)
    assert len(one) == 1 and set(one[0]["hidden"]) == set(model.dag.hidden_nodes)
    # the same image inside a batch of two gets the same answer
    pair = infer(model, read_images(pngs, model.image_size))
    for node, probs in one[0]["hidden"].items():
        np.testing.assert_allclose(list(probs.values()), pair["hidden"][node][0], atol=1e-6)
    for node, probs in one[0]["shows"].items():
        np.testing.assert_allclose(list(probs.values()), pair["rendered"][node][0], atol=1e-5)


def test_infer_hidden_for_one_labelled_row_is_exact(dag_path):
    from causalscene.dag import CausalDAG
    from causalscene.model import CausalVAE

    dag = CausalDAG.load(dag_path("rpg_fight"))
    model = CausalVAE(dag, 16, 2, base_channels=4)
    rng = np.random.default_rng(0)
    codes = {n: int(rng.integers(dag.cardinality(n))) for n in dag.rendered_nodes}
    labels = {n: torch.tensor([c]) for n, c in codes.items()}
    hidden = model.infer_hidden(labels=labels)
    for node in dag.hidden_nodes:
        exact = queries.condition(dag, [node], codes).probs
        np.testing.assert_allclose(hidden[node][0].numpy(), exact, atol=1e-6)
