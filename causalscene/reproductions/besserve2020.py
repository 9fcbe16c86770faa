"""Besserve, Sun & Schölkopf, "Counterfactuals uncover the modular structure of deep generative
models", ICLR 2020: planted modules recovered (``modules-planted``) and modules of a VAE decoder
(``modules-faces``) or of a DCGAN generator (``modules-dcgan``, the paper's §4.1 network) trained
on faces that carry different attributes.

:func:`faces_vae` is the PlainVAE on procedural faces that ``modules-faces`` and ``sdr``
(:mod:`.besserve2021`) share: trained once per scale and seed, in a folder beside theirs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from causalscene.datasets import write_npz
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


# ------------------------------------------------------------------ hybrids-robustness / -quality

#: the modules of every decoder layer: NMF at this fixed K at every layer and scale (the paper's
#: hybrids use K = 3; a fixed K keeps the layers comparable and skips the stability search)
HYBRID_K = 3
#: a module carries an attribute when, where the originals disagree, its hybrids read as
#: Original 2 at least this often (read by the factorial probe, not by the classifier scored)
CARRIED_TRANSFER = 0.5
#: ``hybrids-robustness`` holds when the classifier keeps Original 1's class on at least this
#: share of the informative reads at the layer closest to the output ...
KEEP_AT_LAST_LAYER = 0.7
#: ... and that share varies across layers (max - min) by at least this much
KEEP_SPREAD_OVER_LAYERS = 0.1
#: ``hybrids-quality`` holds when every module's hybrids are within this factor of the originals'
#: Fréchet distance (d², as the FID) to real faces
QUALITY_FACTOR = 1.5


def decoder_layers(model: Any) -> list[str]:
    """The decoder's hookable conv layers, in call order, without the last (its channels are the
    image's colours, so its "modules" would be colour planes)."""
    from causalscene.modularity import hookable_layers

    kinds = ("Conv2d", "ConvTranspose2d")
    convs = [i.name for i in hookable_layers(model) if i.kind in kinds]
    return [name for name in convs if name.startswith("decoder.")][:-1]


def _layer_hybrids(context: Context, model: Any) -> Iterator[tuple[str, Any, dict[str, Any]]]:
    """For each of :func:`decoder_layers`: its NMF modules at K = :data:`HYBRID_K` (influence maps
    of ``analyse_modules`` in ``out/modules_<layer>``) and :func:`module_hybrids` of the same
    prior pairs (drawn with seed + 1), ``(layer, clustering, hybrids)``."""
    from causalscene.modularity import (
        ModulesConfig,
        analyse_modules,
        cluster_modules,
        module_hybrids,
    )

    n = context.pick(32, 256, 512)
    latents = model.sample_latents(2 * n, seed=context.seed + 1)
    z1, z2 = latents[:n], latents[n:]
    for layer in decoder_layers(model):
        folder = context.out / f"modules_{layer}"
        config = ModulesConfig(
            layer=layer, ks=(HYBRID_K,), pairs=context.pick(16, 128, 256), seed=context.seed
        )
        analyse_modules(model, config, folder)
        maps = np.load(folder / "influence_maps.npy")
        clustering = cluster_modules(maps, HYBRID_K, seed=context.seed)
        yield layer, clustering, module_hybrids(model, layer, clustering, z1, z2)


def _real_image_probe(context: Context, trained: TrainedVAE) -> tuple[Any, dict[str, float]]:
    """A classifier of every faces attribute trained *independently*, on the dataset's own images
    (observational, as a classifier of real photographs would be), and its accuracy on the
    held-out last images (the held-out split of :func:`_attribute_probe`)."""
    from causalscene.probes import ImageProbe

    images, labels = trained.images, trained.labels
    meta = json.loads((trained.data / "meta.json").read_text())
    cards = {name: len(meta["labels"][name]) for name in labels}
    cut = len(images) - context.pick(64, 500, 500)
    probe = ImageProbe(cards, images.shape[1]).fit(
        images[:cut],
        {k: v[:cut] for k, v in labels.items()},
        epochs=context.pick(2, 8, 8),
        seed=context.seed,
        device=context.device,
    )
    return probe, probe.accuracy(images[cut:], {k: v[cut:] for k, v in labels.items()})


def _reads(probe: Any, hybrids: dict[str, Any]) -> dict[str, np.ndarray]:
    """The probe's classes, attributes in ``probe.attributes`` order: ``original1``,
    ``original2`` ``[n, A]`` and ``hybrids`` ``[K, n, A]``."""

    def read(images: Any) -> np.ndarray:
        predicted = probe.predict(images)
        return np.stack([predicted[a] for a in probe.attributes], axis=-1)

    return {
        "original1": read(hybrids["original1"]),
        "original2": read(hybrids["original2"]),
        "hybrids": np.stack([read(h) for h in hybrids["hybrids"]]),
    }


def transfer_rates(reads: dict[str, np.ndarray]) -> np.ndarray:
    """``[K, A]``: P(hybrid_k reads as Original 2 | the originals read differently), NaN where
    fewer than :data:`MIN_DISAGREEING_PAIRS` pairs differ."""
    differ = reads["original1"] != reads["original2"]  # [n, A]
    took = reads["hybrids"] == reads["original2"][None]  # [K, n, A]
    counts = differ.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = (took & differ[None]).sum(1) / counts
    return np.where(counts >= MIN_DISAGREEING_PAIRS, rates, np.nan)


def keep_counts(reads: dict[str, np.ndarray], carried: np.ndarray) -> dict[str, np.ndarray]:
    """Per module ``[K]``: reads of the attributes it does not carry (``carried [K, A]``) where the
    originals differ (``informative``) and all of them (``all``), and how many of each keep
    Original 1's class (``kept_informative``, ``kept_all``)."""
    o1, o2, h = reads["original1"], reads["original2"], reads["hybrids"]
    free = ~carried[:, None, :]  # [K, 1, A]
    informative = free & (o1 != o2)[None]
    kept = h == o1[None]
    return {
        "informative": informative.sum((1, 2)),
        "kept_informative": (kept & informative).sum((1, 2)),
        "all": np.broadcast_to(free, h.shape).sum((1, 2)),
        "kept_all": (kept & free).sum((1, 2)),
    }


def _share(kept: Any, total: Any) -> float:
    return float(kept / total) if total else float("nan")


def _robustness_at(real: dict, factorial: dict, attributes: list[str]) -> dict:
    """One layer's entry: per module the attributes it carries (factorial ψ) and the real-image
    classifier's keep shares; pooled over modules."""
    carried = transfer_rates(factorial) >= CARRIED_TRANSFER  # NaN: not carried
    counts = keep_counts(real, carried)
    modules = {
        f"module {j}": {
            "carried": [a for a, c in zip(attributes, carried[j]) if c],
            "informative_reads": int(counts["informative"][j]),
            "keep_where_originals_differ": _share(
                counts["kept_informative"][j], counts["informative"][j]
            ),
            "keep_all_reads": _share(counts["kept_all"][j], counts["all"][j]),
        }
        for j in range(len(carried))
    }
    return {
        "modules": modules,
        "informative_reads": int(counts["informative"].sum()),
        "keep_where_originals_differ": _share(
            counts["kept_informative"].sum(), counts["informative"].sum()
        ),
        "keep_all_reads": _share(counts["kept_all"].sum(), counts["all"].sum()),
    }


def hybrids_robustness(context: Context) -> Measured:
    """Module hybrids at every decoder layer of the faces VAE, read by a classifier trained on
    the dataset's real faces: how often it keeps Original 1's class on the attributes the
    exchanged module does not carry (which it carries: a factorial-design probe ψ decides).

    ``holds`` (fixed before any number was seen): at the decoder layer closest to the output the
    classifier keeps Original 1's class on at least :data:`KEEP_AT_LAST_LAYER` (0.7) of the reads
    where the originals' classes differ, and that share varies over the layers (max - min) by at
    least :data:`KEEP_SPREAD_OVER_LAYERS` (0.1).
    """
    from causalscene.generators import check_generator

    trained = faces_vae(context)
    model = check_generator(trained.model, "faces VAE")
    classifier, accuracy = _real_image_probe(context, trained)
    psi, psi_accuracy = _attribute_probe(context, trained)
    layers: dict[str, Any] = {}
    for layer, _, hybrids in _layer_hybrids(context, model):
        real, factorial = _reads(classifier, hybrids), _reads(psi, hybrids)
        write_npz(context.out / f"reads_{layer}.npz", _prefixed(real, factorial))
        layers[layer] = _robustness_at(real, factorial, classifier.attributes)
    shares = [entry["keep_where_originals_differ"] for entry in layers.values()]
    measured = {
        "k": HYBRID_K,
        "k_chosen_by": "fixed",
        "attributes": classifier.attributes,
        "classifier_heldout_accuracy_on_real_faces": accuracy,
        "factorial_probe_heldout_accuracy_on_real_faces": psi_accuracy,
        "layers": layers,
        "layer_closest_to_output": list(layers)[-1],
        "keep_at_last_layer": shares[-1],
        "keep_spread_over_layers": float(np.max(shares) - np.min(shares)),
        "note": "keep = P(classifier(hybrid) = classifier(Original 1)) over the reads of attributes"
        " the exchanged module does not carry, where classifier(Original 1) != classifier(Original"
        " 2); the classifier learned from the dataset's faces, the carried attributes (transfer"
        f" >= {CARRIED_TRANSFER}) are read by a probe of a factorial design; reads_<layer>.npz"
        " holds every read",
    }
    holds = (
        measured["keep_at_last_layer"] >= KEEP_AT_LAST_LAYER
        and measured["keep_spread_over_layers"] >= KEEP_SPREAD_OVER_LAYERS
    )
    return measured, holds


def _prefixed(real: dict[str, np.ndarray], factorial: dict[str, np.ndarray]) -> dict:
    return {
        **{f"real_{k}": v for k, v in real.items()},
        **{f"psi_{k}": v for k, v in factorial.items()},
    }


def hybrids_quality(context: Context) -> Measured:
    """Fréchet distance d² (the FID's closed form, :func:`~causalscene.quality.frechet_distance`,
    in the features of a probe of the faces renderer's factorial design) to real held-out faces
    of the generated originals and of every module's hybrids at every decoder layer, each set of
    the same size; ``features.npz`` holds every set's features.

    ``holds``: every module's hybrids are within :data:`QUALITY_FACTOR` (1.5×) of the originals'
    d² to the real faces.
    """
    features, name = _quality_features(context)
    real = features.pop("real")
    distance = {key: _frechet(value, real) for key, value in features.items()}
    originals = distance.pop("originals")
    layers: dict[str, dict[str, float]] = {}
    for key, d in distance.items():
        layer, module = key.split(":")
        layers.setdefault(layer, {})[module] = d
    ratios = {
        layer: {m: d / originals for m, d in entry.items()} for layer, entry in layers.items()
    }
    max_ratio = max(r for entry in ratios.values() for r in entry.values())
    measured = {
        "k": HYBRID_K,
        "k_chosen_by": "fixed",
        "features": name,
        "real_images": len(real),
        "images_per_set": len(features["originals"]),
        "frechet_originals": originals,
        "frechet_hybrids": layers,
        "ratio_to_originals": ratios,
        "max_ratio": max_ratio,
    }
    return measured, max_ratio <= QUALITY_FACTOR


def _quality_features(context: Context) -> tuple[dict[str, np.ndarray], str]:
    """Features ``[N, 128]`` of the real held-out faces (``real``), the originals
    (``originals``) and each module's hybrids (``<layer>:module j``), saved to
    ``features.npz``; and the feature network's name."""
    from causalscene.generators import check_generator
    from causalscene.quality import feature_network, image_features, renderer_source

    trained = faces_vae(context)
    model = check_generator(trained.model, "faces VAE")
    source = renderer_source(trained.data)
    if source is None:
        raise ValueError(f"{trained.data}: not a procgen faces folder")
    network = feature_network(
        source,
        trained.images.shape[1],
        n_images=context.pick(256, 3000, 3000),
        epochs=context.pick(1, 4, 4),
        seed=context.seed,
        cache=context.out / "frechet_features.pt",
        device=context.device,
    )
    real = trained.images[-context.pick(64, 500, 1000) :]
    features: dict[str, Any] = {"real": image_features(network, real)}
    for layer, _, hybrids in _layer_hybrids(context, model):
        features["originals"] = image_features(network, hybrids["original1"])
        for j, images in enumerate(hybrids["hybrids"]):
            features[f"{layer}:module {j}"] = image_features(network, images)
    write_npz(context.out / "features.npz", features)
    return features, network.name


def _frechet(a: np.ndarray, b: np.ndarray) -> float:
    """d² between the Gaussians fitted to two feature sets (μ, unbiased Σ)."""
    from causalscene.quality import frechet_distance

    return frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


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
    Reproduction(
        "hybrids-robustness",
        claim="A classifier trained independently on real faces still recognises Original 1's "
        "class in module hybrids, depending on the layer intervened on: at the faces VAE decoder "
        "layer closest to the output (modules: NMF, K = 3), hybrids keep Original 1's class on at "
        "least 70% of the reads of attributes the exchanged module does not carry where the "
        "originals differ, and that share varies across decoder layers by at least 0.1.",
        source="Besserve, Sun, Schölkopf, ICLR 2020, Sec. 4.2 and Fig. 6 (robustness of "
        "classifiers to counterfactual hybrids)",
        fn=hybrids_robustness,
    ),
    Reproduction(
        "hybrids-quality",
        claim="Module hybrids only mildly degrade image quality: at every decoder layer of the "
        "faces VAE (modules: NMF, K = 3) every module's hybrids lie within 1.5x the Fréchet "
        "distance (d²) of the generated originals to real faces.",
        source="Besserve, Sun, Schölkopf, ICLR 2020, appendix Table 2 (FID of hybrids)",
        fn=hybrids_quality,
    ),
]
