"""Besserve, Sun & Schölkopf, "Counterfactuals uncover the modular structure of deep generative
models", ICLR 2020: planted modules recovered (``modules-planted``) and modules of a VAE decoder
(``modules-faces``) or of a DCGAN generator (``modules-dcgan``, the paper's §4.1 network) trained
on faces that carry different attributes.

:func:`faces_vae` is the PlainVAE on procedural faces that ``modules-faces`` and ``sdr``
(:mod:`.besserve2021`) share: trained once per scale and seed, in a folder beside theirs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from causalscene.reproductions._base import Context, Measured, Reproduction
from causalscene.reproductions._vae import TrainedVAE, plain_vae, procgen_dcgan

#: a transfer-rate spread (max - min over modules) at least this large makes an attribute
#: module-specific
SPECIFIC_SPREAD = 0.3
#: fewer pairs whose parents disagree on an attribute than this give a NaN transfer rate
MIN_DISAGREEING_PAIRS = 10


# ------------------------------------------------------------------------------ modules-planted


def modules_planted(context: Context) -> Measured:
    """Influence maps + NMF on :class:`PlantedModulesGenerator` for each true K."""
    true_ks = context.pick([3], [3, 4, 5], [3, 4, 5, 6, 8])
    measured: dict[str, Any] = {}
    for k in true_ks:
        measured[f"K={k}"] = _planted_at(context, k)
    per_k = list(measured.values())
    measured["min_ari_nmf_at_true_k"] = min(m["ari_nmf_at_true_k"] for m in per_k)
    measured["min_ari_kmeans_at_true_k"] = min(m["ari_kmeans_at_true_k"] for m in per_k)
    measured["stability_peaks_at_true_k"] = all(
        m["stability_best_k"] == k for k, m in zip(true_ks, per_k)
    )
    holds = measured["min_ari_nmf_at_true_k"] == 1.0 and measured["stability_peaks_at_true_k"]
    return measured, holds


def _planted_at(context: Context, k: int) -> dict[str, Any]:
    """One planted generator with ``k`` modules: ARI of NMF and k-means at the true K against the
    planted partition, and the K that split-half stability picks from ``2 .. k + 3``."""
    from sklearn.metrics import adjusted_rand_score

    from causalscene.modularity import ModulesConfig, PlantedModulesGenerator, analyse_modules

    seed = context.seed
    generator = PlantedModulesGenerator(
        k=k, channels_per_module=6, image_size=context.pick(16, 32, 32), seed=seed
    ).to(context.device)
    config = ModulesConfig(
        layer="hidden",
        ks=tuple(range(2, k + 4)),
        pairs=context.pick(16, 64, 256),
        splits=context.pick(2, 6, 6),
        seed=seed,
    )
    folder = context.out / f"planted_k{k}"
    result = analyse_modules(generator, config, folder)
    truth = generator.true_labels()
    at_true = _labels_at_k(folder, k, seed)
    stability = result["stability"]
    return {
        "ari_nmf_at_true_k": float(adjusted_rand_score(truth, at_true["nmf"])),
        "ari_kmeans_at_true_k": float(adjusted_rand_score(truth, at_true["kmeans"])),
        "stability_best_k": result["k"],
        "consistency": dict(zip(stability["ks"], stability["consistency"])),
        "template_cosine": dict(zip(stability["ks"], stability["template_cosine"])),
    }


def _labels_at_k(folder: Path, k: int, seed: int) -> dict[str, np.ndarray]:
    """NMF and k-means labels at rank ``k`` of the influence maps saved in ``folder``."""
    from causalscene.modularity import cluster_modules

    maps = np.load(folder / "influence_maps.npy")
    return {
        "nmf": cluster_modules(maps, k, seed=seed).labels,
        "kmeans": cluster_modules(maps, k, method="kmeans", seed=seed).labels,
    }


# ------------------------------------------------------------------------------ modules-faces


def faces_vae(context: Context) -> TrainedVAE:
    """The PlainVAE on procedural faces shared by ``modules-faces`` and ``sdr``: data and run in
    ``context.out.parent / _faces_vae_{scale}_seed{seed}``, reused when already there."""
    folder = context.out.parent / f"_faces_vae_{context.scale}_seed{context.seed}"
    return plain_vae(
        context,
        "faces",
        n_images=context.pick(256, 4000, 20000),
        image_size=context.pick(32, 32, 64),  # faces render at >= 24 px; the VAE wants 2^k
        epochs=context.pick(1, 12, 30),
        latent_dim=16,
        base_channels=context.pick(4, 16, 32),
        batch_size=64,
        folder=folder,
    )


def modules_faces(context: Context) -> Measured:
    """Modules of the faces VAE's first decoder conv; which attributes each module's hybrids move."""
    trained = faces_vae(context)
    return _modules_on_faces(context, trained, trained.model)


def faces_dcgan(context: Context) -> TrainedVAE:
    """A DCGAN on procedural faces (Radford et al.'s architecture and Adam settings; z of 100),
    in ``context.out.parent / _faces_dcgan_{scale}_seed{seed}``, reused when already there."""
    return procgen_dcgan(
        context,
        "faces",
        n_images=context.pick(256, 4000, 20000),
        image_size=context.pick(32, 32, 64),
        epochs=context.pick(1, 15, 30),
        base_channels=context.pick(4, 32, 64),
        folder=context.out.parent / f"_faces_dcgan_{context.scale}_seed{context.seed}",
    )


def modules_dcgan(context: Context) -> Measured:
    """Modules of the faces DCGAN generator's first stride-2 layer (``conv1``); which attributes
    each module's hybrids move — the analysis of ``modules-faces`` on G."""
    trained = faces_dcgan(context)
    gan: Any = trained.model  # a DCGAN; its Generator view is G
    measured, holds = _modules_on_faces(context, trained, gan.as_generator())
    if trained.history:
        measured["gan_last_epoch"] = {
            k: trained.history[-1][k] for k in ("loss_d", "loss_g", "d_real", "d_fake")
        }
    return measured, holds


def _modules_on_faces(context: Context, trained: TrainedVAE, generator: Any) -> Measured:
    """Influence maps, stability-chosen K and NMF modules of ``generator``'s ``conv1``, each
    module's attribute transfer (read by a probe of the faces attributes), ``holds``."""
    from causalscene.generators import check_generator
    from causalscene.modularity import ModulesConfig, analyse_modules, hookable_layers

    probe, probe_accuracy = _attribute_probe(context, trained)
    model = check_generator(generator, "faces generator")
    layer = [i.name for i in hookable_layers(model) if i.name.endswith("conv1")][0]
    config = ModulesConfig(
        layer=layer,
        ks=(2, 3, 4, 5, 6),
        pairs=context.pick(16, 128, 256),
        splits=context.pick(2, 6, 6),
        seed=context.seed,
    )
    result = analyse_modules(model, config, context.out / "modules")
    per_k = _transfer_by_k(context, model, layer, probe, result["k"])
    chosen = per_k[str(result["k"])]
    measured = {
        "layer": layer,
        "k": result["k"],
        "k_chosen_by": result["k_chosen_by"],
        "stability": dict(zip(result["stability"]["ks"], result["stability"]["consistency"])),
        "probe_heldout_accuracy_on_real_faces": probe_accuracy,
        "by_k": per_k,
        "note": "transfer_rate[module][attr] = P(probe(hybrid) = probe(Original 2) | probe(Original 1)"
        " != probe(Original 2)); the probe is trained on procedural faces of a factorial design"
        " (attributes uniform and independent) and read on decoded ones (NaN: fewer than 10 pairs"
        " disagree)",
    }
    holds = (
        len(chosen["attributes_with_module_specific_transfer"]) >= 2
        and chosen["distinct_controlling_modules"] >= 2
    )
    return measured, holds


def _attribute_probe(context: Context, trained: TrainedVAE) -> tuple[Any, dict[str, float]]:
    """ψ, an image probe of every faces attribute, and its accuracy on held-out dataset faces.

    ψ reads which attributes a hybrid took from each parent: it must not read one attribute off
    another (goatee off gender), so it learns from a factorial design of the same generator.
    """
    from causalscene.probes import ImageProbe, factorial_source, factorial_training_set

    images, labels = trained.images, trained.labels
    meta = json.loads((trained.data / "meta.json").read_text())
    cards = {name: len(meta["labels"][name]) for name in labels}
    held = slice(len(images) - context.pick(64, 500, 500), None)
    source = factorial_source(trained.data, meta["labels"])
    if source is None:
        raise ValueError(f"{trained.data}: not a procgen faces folder")
    probe_images, probe_labels = factorial_training_set(
        source, held.start, images.shape[1], context.seed
    )
    probe = ImageProbe(cards, images.shape[1]).fit(
        probe_images,
        {k: probe_labels[k] for k in labels},
        epochs=context.pick(1, 8, 8),
        seed=context.seed,
        device=context.device,
    )
    accuracy = probe.accuracy(images[held], {k: v[held] for k, v in labels.items()})
    return probe, accuracy


def _transfer_by_k(
    context: Context, model: Any, layer: str, probe: Any, chosen_k: int
) -> dict[str, Any]:
    """For K in {chosen, 3, 4}: module sizes, transfer rates and controls; hybrid figures."""
    from causalscene import plots
    from causalscene.modularity import cluster_modules

    out, seed = context.out, context.seed
    maps = np.load(out / "modules" / "influence_maps.npy")
    n = context.pick(64, 512, 512)
    latents = model.sample_latents(2 * n, seed=seed + 1)
    z1, z2 = latents[:n], latents[n:]
    shown = context.pick(2, 6, 6)  # example pairs per hybrid figure
    per_k: dict[str, Any] = {}
    for k in sorted({chosen_k, 3, 4}):
        clustering = cluster_modules(maps, k, seed=seed)
        transfer, hybrids = _transfer_matrix(model, layer, clustering, probe, z1, z2)
        show = {key: v[:shown] for key, v in hybrids.items() if key != "hybrids"}
        show["hybrids"] = hybrids["hybrids"][:, :shown]
        plots.plot_module_hybrids(show, out / f"faces_hybrids_k{k}.png", n=shown)
        plots.plot_module_templates(clustering.templates, out / f"faces_templates_k{k}.png")
        per_k[str(k)] = {
            "module_sizes": [len(clustering.members(j)) for j in range(k)],
            **_controls(transfer, probe.attributes),
        }
    return per_k


def _transfer_matrix(model, layer, clustering, probe, z1, z2):
    """``transfer[module j][attr]``: how often module j's hybrid reads as Original 2 where the
    originals disagree (NaN below :data:`MIN_DISAGREEING_PAIRS`); and the hybrids."""
    from causalscene.modularity import module_hybrids

    hybrids = module_hybrids(model, layer, clustering, z1, z2)
    p1 = probe.predict(hybrids["original1"])
    p2 = probe.predict(hybrids["original2"])
    transfer: dict[str, dict[str, float]] = {}
    for j in range(clustering.k):
        ph = probe.predict(hybrids["hybrids"][j])
        row = {}
        for attr in probe.attributes:
            differ = p1[attr] != p2[attr]
            if differ.sum() >= MIN_DISAGREEING_PAIRS:
                row[attr] = float(np.mean(ph[attr][differ] == p2[attr][differ]))
            else:
                row[attr] = float("nan")
        transfer[f"module {j}"] = row
    return transfer, hybrids


def _controls(transfer: dict[str, dict[str, float]], attributes: list[str]) -> dict[str, Any]:
    """Which module moves each attribute most, and how module-specific that is."""
    matrix = np.array([[transfer[m][a] for a in attributes] for m in transfer])
    controls = {}
    for a_i, attr in enumerate(attributes):
        col = matrix[:, a_i]
        if np.all(np.isnan(col)):
            continue
        controls[attr] = {
            "module": int(np.nanargmax(col)),
            "transfer": float(np.nanmax(col)),
            "spread": float(np.nanmax(col) - np.nanmin(col)),
        }
    specific = [a for a, c in controls.items() if c["spread"] >= SPECIFIC_SPREAD]
    return {
        "transfer_rate": transfer,
        "controls": controls,
        "attributes_with_module_specific_transfer": specific,
        "distinct_controlling_modules": len({controls[a]["module"] for a in specific}),
    }


REPRODUCTIONS = [
    Reproduction(
        "modules-planted",
        claim="On a generator whose K modules each own their own image region (Besserve et al. "
        "2020, Model 1), influence maps + NMF recover the partition of the channels exactly (ARI "
        "1.0) and split-half stability peaks at the true K.",
        source="Besserve, Sun, Schölkopf, ICLR 2020, Sec. 3 and supplement (cluster stability)",
        fn=modules_planted,
    ),
    Reproduction(
        "modules-faces",
        claim="Channels of a VAE decoder trained on faces form modules; exchanging one module "
        "between two faces moves some attributes of the second face into the hybrid and leaves "
        "others, and different modules carry different attributes.",
        source="Besserve, Sun, Schölkopf, ICLR 2020, Sec. 4 (hybrids of CelebA generators)",
        fn=modules_faces,
    ),
    Reproduction(
        "modules-dcgan",
        claim="Channels of a DCGAN generator (Radford et al. 2015) trained on faces form modules "
        "(NMF of their influence maps); exchanging one module between two generated faces moves "
        "some attributes of the second face into the hybrid and leaves others, and different "
        "modules carry different attributes.",
        source="Besserve, Sun, Schölkopf, ICLR 2020, Sec. 4.1 (modules and hybrids of a DCGAN "
        "trained on CelebA)",
        fn=modules_dcgan,
    ),
]
