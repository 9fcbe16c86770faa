"""CausalVAE / PlainVAE: the Pyro program's structure, exact enumeration vs the DAG queries,
missing labels, learned CPTs, the Generator views."""

from __future__ import annotations

import itertools

import numpy as np
import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import TraceEnum_ELBO

from causalscene import queries
from causalscene.dag import CausalDAG
from causalscene.model import CausalVAE, PlainVAE


def synth_data(dag: CausalDAG, n: int, size: int = 16, seed: int = 0):
    """Planted renderer: rendered node k paints cell k of a 4x4 grid, channel k % 3, with a grey
    level that encodes its state. Returns ``(images uint8 [n, size, size, 3], {label node: codes})``."""
    codes = dag.sample(n, seed=seed)
    images = np.zeros((n, size, size, 3), np.uint8)
    cell = size // 4
    for k, node in enumerate(dag.rendered_nodes):
        r, c = divmod(k, 4)
        level = (40 + codes[node] * 215 // (dag.cardinality(node) - 1)).astype(np.uint8)
        images[:, r * cell : (r + 1) * cell, c * cell : (c + 1) * cell, k % 3] = level[
            :, None, None
        ]
    return images, {m: codes[m] for m in dag.label_nodes}


def read_synth(dag: CausalDAG, images: np.ndarray) -> dict[str, np.ndarray]:
    """Inverse of :func:`synth_data`'s renderer (an oracle image probe)."""
    size = images.shape[1]
    cell = size // 4
    out = {}
    for k, node in enumerate(dag.rendered_nodes):
        r, c = divmod(k, 4)
        patch = images[:, r * cell : (r + 1) * cell, c * cell : (c + 1) * cell, k % 3].astype(float)
        level = patch.mean(axis=(1, 2))
        card = dag.cardinality(node)
        out[node] = np.clip(np.rint((level - 40) * (card - 1) / 215), 0, card - 1).astype(np.int64)
    return out


@pytest.fixture
def rpg(dag_path):
    return CausalDAG.load(dag_path("rpg_fight"))


@pytest.fixture
def faces(dag_path):
    return CausalDAG.load(dag_path("faces"))


def _tensors(labels):
    return {k: torch.as_tensor(v) for k, v in labels.items()}


def test_sample_sites_are_dag_nodes_in_topological_order(rpg):
    model = CausalVAE(rpg, 16, 3, base_channels=4)
    images, labels = synth_data(rpg, 5)
    x = torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255
    guide = poutine.trace(model.guide).get_trace(x, _tensors(labels))
    trace = poutine.trace(poutine.replay(model.model, guide)).get_trace(x, _tensors(labels))
    sites = [n for n, s in trace.nodes.items() if s["type"] == "sample" and n != "data"]
    assert sites == [*rpg.nodes, "z", "x"]
    for node in rpg.label_nodes:
        assert trace.nodes[node]["is_observed"]
        assert torch.equal(trace.nodes[node]["value"], torch.as_tensor(labels[node]))
    for node in rpg.hidden_nodes:
        assert not trace.nodes[node]["is_observed"]
        assert trace.nodes[node]["infer"].get("enumerate") == "parallel"


def _brute_hidden_posterior(
    dag: CausalDAG, evidence_lik: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """p(hidden | soft evidence) by enumerating the whole joint (no pgmpy, no Pyro)."""
    names = dag.nodes
    shape = [dag.cardinality(n) for n in names]
    combos = np.array(list(itertools.product(*(range(s) for s in shape))))
    codes = {n: combos[:, i] for i, n in enumerate(names)}
    weight = dag.joint_probability(codes)
    for node, lik in evidence_lik.items():
        weight = weight * lik[codes[node]]
    weight = weight / weight.sum()
    return {h: np.bincount(codes[h], weight, dag.cardinality(h)) for h in dag.hidden_nodes}


def test_enumerated_hidden_posterior_equals_exact_query(rpg):
    """Two routes: Pyro's TraceEnum marginals of the hidden nodes (model with x, labels given)
    vs pgmpy variable elimination through causalscene.queries.condition."""
    model = CausalVAE(rpg, 16, 3, base_channels=4).double()
    images, labels = synth_data(rpg, 6, seed=3)
    x = torch.as_tensor(images).permute(0, 3, 1, 2).double() / 255
    marginals = TraceEnum_ELBO(max_plate_nesting=1).compute_marginals(
        model.model, model.guide, x, _tensors(labels)
    )
    worst = 0.0
    for h in rpg.hidden_nodes:
        support = torch.arange(rpg.cardinality(h), dtype=torch.float64).reshape(-1, 1)
        pyro_probs = marginals[h].log_prob(support).exp().T.numpy()
        for i in range(len(images)):
            evidence = {n: int(labels[n][i]) for n in rpg.label_nodes}
            exact = queries.condition(rpg, [h], evidence).probs
            worst = max(worst, float(np.abs(pyro_probs[i] - exact).max()))
    assert worst < 1e-6
    # and the front-end method agrees (float32 model)
    fast = CausalVAE(rpg, 16, 3, base_channels=4).infer_hidden(labels=labels)
    for h in rpg.hidden_nodes:
        exact = queries.condition(rpg, [h], {n: int(labels[n][0]) for n in rpg.label_nodes}).probs
        np.testing.assert_allclose(fast[h][0].numpy(), exact, atol=1e-5)


def test_infer_hidden_with_soft_evidence_matches_brute_force(rpg):
    """Unlabelled image: the classifier's q(r|x)/p(r) enters as virtual evidence; reference =
    enumeration of the full joint."""
    torch.manual_seed(1)
    model = CausalVAE(rpg, 16, 3, base_channels=4)
    images, _ = synth_data(rpg, 2, seed=5)
    got = model.infer_hidden(images)
    probs = model.classify(images)
    for i in range(2):
        lik = {}
        for node in rpg.rendered_nodes:
            marginal = queries.condition(rpg, [node]).probs
            lik[node] = probs[node][i].double().numpy() / marginal
        want = _brute_hidden_posterior(rpg, lik)
        for h in rpg.hidden_nodes:
            np.testing.assert_allclose(got[h][i].numpy(), want[h], atol=1e-5)


def test_missing_labels_are_imputed_per_example(rpg):
    model = CausalVAE(rpg, 16, 3, base_channels=4)
    images, labels = synth_data(rpg, 8)
    labels["action"] = labels["action"].copy()
    labels["action"][[1, 4]] = -1
    x = torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255
    tensors = _tensors(labels)
    guide = poutine.trace(model.guide).get_trace(x, tensors)
    drawn = guide.nodes["action"]["value"]
    seen = labels["action"] >= 0
    assert torch.equal(drawn[torch.as_tensor(seen)], torch.as_tensor(labels["action"][seen]))
    trace = poutine.trace(poutine.replay(model.model, guide)).get_trace(x, tensors)
    assert not trace.nodes["action"]["is_observed"]  # a latent site, pinned where observed
    # the observed rows' log-density is log p(label | parents): equal to the fully observed model
    loss = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(
        model.model, model.guide, x, tensors
    )
    assert torch.isfinite(loss)
    loss.backward()
    assert model.classifier.head.weight.grad is not None  # the classifier learns via the ELBO too


def test_aux_loss_ignores_missing(rpg):
    model = CausalVAE(rpg, 16, 3, base_channels=4)
    images, labels = synth_data(rpg, 6)
    x = torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255
    all_missing = {k: np.full_like(v, -1) for k, v in labels.items()}
    full = model.aux_loss(x, _tensors(labels)).detach()
    assert float(full) > 0
    assert float(model.aux_loss(x, _tensors(all_missing))) == 0.0


@pytest.mark.parametrize("missing", [False, True])
def test_consistency_loss_closed_form_and_gradients(rpg, missing):
    """With a classifier that reads nothing (zero head: uniform q), each node's cross-entropy is
    log(card) whatever was drawn: the loss is Σ log card. Gradients reach the encoder and the
    decoder, never the (frozen) classifier."""
    model = CausalVAE(rpg, 16, 3, base_channels=4)
    with torch.no_grad():
        model.classifier.head.weight.zero_()
        model.classifier.head.bias.zero_()
    images, labels = synth_data(rpg, 8)
    if missing:
        labels = {k: np.where(np.arange(8) % 2 == 0, -1, v) for k, v in labels.items()}
    x = torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255
    loss = model.consistency_loss(x, _tensors(labels))
    expected = sum(np.log(rpg.cardinality(n)) for n in rpg.rendered_nodes)
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-6)
    # an informative classifier: the loss now depends on what the decoder drew
    torch.manual_seed(0)
    with torch.no_grad():
        model.classifier.head.weight.normal_()
    loss = model.consistency_loss(x, _tensors(labels))
    loss.backward()
    assert all(p.grad is None for p in model.classifier.parameters())
    assert float(model.decoder.conv1.weight.grad.abs().sum()) > 0
    assert float(model.encoder.fc_loc.weight.grad.abs().sum()) > 0


def test_consistency_loss_intervenes_on_one_label_per_image(faces):
    """The decoder is asked for do(one node): per image, at most one rendered node's one-hot
    differs from the factual labels, and every node is the changed one somewhere in the batch."""
    model = CausalVAE(faces, 16, 3, base_channels=4)
    images, labels = synth_data(faces, 400)
    x = torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255
    seen = []
    hook = model.decoder.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach()))
    torch.manual_seed(0)
    with torch.no_grad():
        model.consistency_loss(x, _tensors(labels))
    hook.remove()
    (u,) = seen
    onehots, start = u[:, model.latent_dim :], 0
    changed = []
    for node in model.rendered:
        card = faces.cardinality(node)
        decoded = onehots[:, start : start + card].argmax(-1).numpy()
        changed.append(decoded != labels[node])
        start += card
    changed = np.stack(changed, axis=1)
    assert changed.sum(axis=1).max() == 1
    assert changed.any(axis=0).all()


def test_learned_cpt_sites_and_means(faces):
    model = CausalVAE(faces, 16, 3, base_channels=4, learn_cpts=True)
    model.data_size = 100
    images, labels = synth_data(faces, 4)
    x = torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255
    trace = poutine.trace(model.guide).get_trace(x, _tensors(labels))
    assert {f"cpt_{n}" for n in faces.nodes} <= set(trace.nodes)
    cpts = model.learned_cpts()
    for n in faces.nodes:
        assert cpts[n].shape == faces.cpt(n).shape
        np.testing.assert_allclose(cpts[n].sum(-1), 1.0, atol=1e-9)
    assert model.query_dag().cpt("gender").shape == (2,)


def test_learned_cpts_converge_to_label_frequencies(faces):
    """Dirichlet variational posterior mean → the labels' empirical frequencies (conjugacy:
    the exact posterior mean is (1 + count) / (K + n))."""
    model = CausalVAE(faces, 8, 1, base_channels=2, learn_cpts=True, cpt_prior=1.0)
    images, labels = synth_data(faces, 200, size=8, seed=7)
    model.data_size = 200
    x = torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255
    tensors = _tensors(labels)
    elbo = TraceEnum_ELBO(max_plate_nesting=1)
    params = list(model.cpt_concentration.parameters())
    opt = torch.optim.Adam(params, lr=0.2)
    for _ in range(100):
        opt.zero_grad()
        elbo.differentiable_loss(model.model, model.guide, x, tensors).backward()
        opt.step()
    got = model.learned_cpts()["gender"]
    counts = np.bincount(labels["gender"], minlength=2)
    exact = (1 + counts) / (2 + counts.sum())
    np.testing.assert_allclose(got, exact, atol=0.03)


@pytest.mark.parametrize("likelihood", ["laplace", "gaussian", "cbernoulli"])
def test_likelihoods_give_finite_elbo(faces, likelihood):
    model = CausalVAE(faces, 16, 3, likelihood=likelihood, base_channels=4)
    images, labels = synth_data(faces, 4)
    x = torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255
    loss = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(
        model.model, model.guide, x, _tensors(labels)
    )
    assert torch.isfinite(loss)
    out = model.decode(
        torch.zeros(2, 3), {n: torch.zeros(2, dtype=torch.long) for n in faces.rendered_nodes}
    )
    assert out.shape == (2, 3, 16, 16) and float(out.min()) >= 0 and float(out.max()) <= 1


def test_bad_arguments(faces):
    with pytest.raises(ValueError, match="likelihood"):
        CausalVAE(faces, 16, 3, likelihood="poisson")
    with pytest.raises(ValueError, match="image_size"):
        CausalVAE(faces, 24, 3)
    model = CausalVAE(faces, 16, 3, base_channels=4)
    with pytest.raises(ValueError, match="unknown node 'hat'"):
        model.check_labels({"hat": [0]}, 1)
    with pytest.raises(ValueError, match="'gender'"):
        model.check_labels({"gender": [2]}, 1)


def test_plain_vae_is_a_generator():
    vae = PlainVAE(16, 5, base_channels=4)
    z = vae.sample_latents(3, seed=2)
    assert z.shape == (3, 5) and torch.equal(z, vae.sample_latents(3, seed=2))
    images = vae(z)
    assert images.shape == (3, 3, 16, 16)
    assert torch.equal(images, vae.decode(z))
    assert vae.encode(images).shape == (3, 5)
    assert vae.encode(torch.zeros(2, 16, 16, 3, dtype=torch.uint8)).shape == (2, 5)
    assert hasattr(vae.decoder, "conv1") and hasattr(vae.decoder, "fc")


def test_causal_generator_view(rpg):
    torch.manual_seed(0)
    model = CausalVAE(rpg, 16, 3, base_channels=4)
    gen = model.as_generator()
    assert gen.latent_dim == 3 + sum(rpg.cardinality(n) for n in rpg.rendered_nodes)
    u = gen.sample_latents(64, seed=1)
    assert torch.equal(u, gen.sample_latents(64, seed=1))
    onehots = u[:, 3:]
    start = 0
    freq = {}
    for n in rpg.rendered_nodes:
        block = onehots[:, start : start + rpg.cardinality(n)]
        assert torch.equal(block.sum(-1), torch.ones(64))
        freq[n] = block.argmax(-1)
        start += rpg.cardinality(n)
    # decode(u) is the model's decode with the same z and node values
    np.testing.assert_allclose(
        gen(u).detach().numpy(), model.decode(u[:, :3], freq).numpy(), atol=1e-6
    )
    images = gen(u[:4]).detach()
    assert gen.encode(images).shape == (4, gen.latent_dim)
    assert gen.decoder is model.decoder
    assert len(gen.latent_names) == gen.latent_dim


def test_pyro_param_store_untouched(faces):
    """The model is a plain nn.Module: training goes through torch, not the global param store."""
    model = CausalVAE(faces, 16, 3, base_channels=4)
    images, labels = synth_data(faces, 3)
    x = torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255
    TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(
        model.model, model.guide, x, _tensors(labels)
    )
    assert len(pyro.get_param_store()) == 0


def test_trainer_hooks_of_a_causal_vae(rpg):
    """What ``causalscene.train.fit`` asks of a CausalVAE (TrainableVAE): its DAG for the labels,
    the data size that scales the CPT sites, the collapsed sites' constant, samples, run files."""
    from causalscene.generate import sample_images
    from causalscene.model import TrainableVAE

    torch.manual_seed(0)
    model = CausalVAE(rpg, 16, 3, base_channels=4)
    assert isinstance(model, TrainableVAE) and model.label_dag is rpg
    # log p(labels) of every label combination: a distribution (sums to 1), the exact query's
    nodes = rpg.label_nodes
    combos = list(itertools.product(*(range(rpg.cardinality(n)) for n in nodes)))
    labels = {n: torch.tensor([c[i] for c in combos]) for i, n in enumerate(nodes)}
    log_p = model.collapsed_log_p_labels(labels)
    assert torch.exp(log_p.double()).sum().item() == pytest.approx(1.0, abs=1e-5)
    joint = queries.condition(rpg, nodes).probs
    np.testing.assert_allclose(log_p.exp().numpy(), [joint[c] for c in combos], rtol=1e-5)
    learned = CausalVAE(rpg, 16, 3, base_channels=4, learn_cpts=True)
    assert learned.collapsed_log_p_labels(labels) is None  # CPT sites hold parameters
    # set_data_size scales the global CPT sites by batch / N
    learned.set_data_size(40)
    images, codes = synth_data(rpg, 4)
    x = torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255
    trace = poutine.trace(learned.guide).get_trace(x, _tensors(codes))
    assert trace.nodes[f"cpt_{rpg.nodes[0]}"]["scale"] == pytest.approx(4 / 40)
    # samples: rendered nodes from the DAG, z from the prior (generate.sample_images)
    expected, _ = sample_images(model, n=5, seed=3)
    assert torch.equal(model.sample(5, seed=3), expected) and expected.shape == (5, 3, 16, 16)
    files = model.run_files()
    assert set(files) == {"model.json", "dag.json"} and files["model.json"] == model.config()
    assert CausalDAG.from_dict(files["dag.json"]).nodes == rpg.nodes


def test_trainer_hooks_of_a_plain_vae(rpg):
    """A PlainVAE uses no labels: no DAG to check, no label sites to collapse, one run file, and
    ``reconstruct(x, labels)`` ignores the labels."""
    torch.manual_seed(0)
    vae = PlainVAE(16, 3, base_channels=4)
    images, labels = synth_data(rpg, 4)
    x = torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255
    assert vae.label_dag is None and vae.collapsed_log_p_labels(_tensors(labels)) is None
    vae.set_data_size(100)  # nothing to scale: the model is unchanged
    assert poutine.trace(vae.guide).get_trace(x).nodes["z"]["scale"] == 1.0
    assert vae.run_files() == {"model.json": vae.config()}
    with torch.no_grad():
        assert torch.equal(vae.reconstruct(x, _tensors(labels)), vae.decode(vae.encode(x)))
        assert torch.equal(vae.sample(2, seed=1), vae.decode(vae.sample_latents(2, seed=1)))
