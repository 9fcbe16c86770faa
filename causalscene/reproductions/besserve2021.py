"""Besserve, Sun, Janzing & Schölkopf, "A theory of independent mechanisms for extrapolation in
generative models", AAAI 2021: successive decoder layers are spectrally independent (``sdr``).

Uses the faces PlainVAE that ``modules-faces`` trains (:func:`.besserve2020.faces_vae`).
"""

from __future__ import annotations

from typing import Any

from causalscene.reproductions._base import Context, Measured, Reproduction
from causalscene.reproductions.besserve2020 import faces_vae

#: the decoder's SDR histogram mode must lie in this band around 1 (spectral independence)
MODE_BAND = (0.8, 1.25)


def sdr_faces(context: Context) -> Measured:
    """Decoder vs encoder SDR of the faces VAE, beside an untrained copy (the architecture alone)."""
    from causalscene.generators import check_generator
    from causalscene.sdr import analyse_sdr
    from causalscene.tensors import to_float_images

    trained_vae = faces_vae(context)
    model = check_generator(trained_vae.model, "faces VAE")
    n = context.pick(32, 512, 512)
    x = to_float_images(trained_vae.images[:n], context.device)
    baseline = _untrained_copy(model, context.seed)
    result = analyse_sdr(
        model, context.out / "sdr", images=x, samples=n, seed=context.seed, baseline=baseline
    )
    trained, untrained = result["trained"], result["untrained"]
    measured: dict[str, Any] = {
        "decoder": trained["decoder"],
        "encoder": trained["encoder"],
        "untrained": untrained,
        "per_layer": {"decoder": trained["decoder_layers"], "encoder": trained["encoder_layers"]},
        "trained_vs_untrained_decoder_log10_std": [
            trained["decoder"]["log10_std"],
            untrained["decoder"]["log10_std"],
        ],
        "note": "transposed convs are read as zero-insertion + convolution; the untrained copy"
        " shows what the architecture alone gives",
    }
    dec, enc = trained["decoder"], trained["encoder"]
    holds = MODE_BAND[0] <= dec["mode"] <= MODE_BAND[1] and enc["log10_std"] > dec["log10_std"]
    return measured, holds


def _untrained_copy(model: Any, seed: int) -> Any:
    """A copy of ``model`` with every submodule's parameters reset (seeded)."""
    import copy

    import torch

    baseline = copy.deepcopy(model)
    torch.manual_seed(seed)
    for module in baseline.modules():
        if module is not baseline and hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return baseline


# ------------------------------------------------------------------------ stretch-extrapolation

#: the horizontal stretch of the paper's Fig. 4
STRETCH = 1.5
#: ``TrainConfig.sdr_weight`` of the penalised run: ``sdr_weight * sdr_penalty(decoder)`` is added
#: to each step's loss (a -ELBO per image, thousands of nats at 32 px, so the weight is large)
STRETCH_SDR_WEIGHT = 1000.0


def stretch_width(maps: Any, factor: float = STRETCH) -> Any:
    """``maps [B, C, h, w]`` stretched ``factor`` × along the width about its centre, same shape.

    Bilinear resize (``F.interpolate``, ``align_corners=False``; the height unchanged) to width
    ``W' = round(factor * w)``, then the centre ``w`` columns, ``(W' - w) // 2`` onwards. For
    ``factor = 1.5`` and widths 4, 8, 16, … the crop starts at the same image-space offset at
    every layer, so a hidden map and the image are stretched about the same centre.
    """
    import torch.nn.functional as F

    if factor < 1:
        raise ValueError(f"stretch factor must be >= 1 (a crop, no padding), got {factor}")
    h, w = maps.shape[-2:]
    wide = round(factor * w)
    stretched = F.interpolate(maps, size=(h, wide), mode="bilinear", align_corners=False)
    start = (wide - w) // 2
    return stretched[..., start : start + w]


def stretch_distortion(generator: Any, layer: str, z: Any, factor: float = STRETCH) -> float:
    """Relative MSE between ``generator(z)`` with ``layer``'s output stretched and the stretched
    image: ``mean((G_stretched(z) - stretch(G(z)))²) / var(stretch(G(z)))`` (population variance)
    over the whole batch
    (every image, channel and pixel), in eval mode without gradients."""
    import torch

    from causalscene.modularity import _activation, _layer_module, _run_replaced

    module = _layer_module(generator, layer)
    was_training = generator.training
    generator.eval()
    try:
        with torch.no_grad():
            target = stretch_width(generator(z), factor)
            hidden = stretch_width(_activation(generator, module, z), factor)
            images = _run_replaced(generator, module, z, hidden)
    finally:
        generator.train(was_training)
    return float((images - target).square().mean() / target.var(correction=0))


def stretch_extrapolation(context: Context) -> Measured:
    """A faces PlainVAE trained twice from the same seed, without and with the SDR penalty; at
    each epoch's end the stretch distortion of every decoder conv on fixed prior latents."""
    from causalscene.datasets import load_arrays
    from causalscene.procgen import make_dataset

    data = context.out / "data"
    size = context.pick(32, 32, 64)
    n_images = context.pick(64, 2000, 20000)
    make_dataset("faces", n_images, size, seed=context.seed, out=data, overwrite=True)
    images, labels = load_arrays(data)
    runs = {
        name: _stretch_run(context, (images, labels), size, weight, name)
        for name, weight in (("no_penalty", 0.0), ("sdr_penalty", STRETCH_SDR_WEIGHT))
    }
    means = {name: _layer_means(run["distortion"]) for name, run in runs.items()}
    measured: dict[str, Any] = {
        "stretch": STRETCH,
        "sdr_weight": STRETCH_SDR_WEIGHT,
        "latents": context.pick(16, 64, 256),
        "latent_seed": context.seed,
        "image_size": size,
        "runs": runs,
        "mean_over_layers": means,
        "note": "distortion = mean((G with layer output stretched - stretched G)^2) / var(stretched"
        " G) on fixed prior latents; stretch = bilinear resize of the width by 1.5, centre crop."
        " The penalty is a weighted term in every step's loss, not interleaved as in the paper",
    }
    _plot_stretch(runs, context.out / "stretch_distortion.png")
    plain = means["no_penalty"]
    holds = means["sdr_penalty"][-1] < plain[-1] and plain[-1] > plain[0]
    return measured, holds


def _layer_means(curves: dict[str, list[float]]) -> list[float]:
    """The mean over layers of per-epoch curves, per epoch."""
    per_epoch = zip(*curves.values())
    return [sum(values) / len(values) for values in per_epoch]


def _stretch_run(
    context: Context, dataset: Any, size: int, sdr_weight: float, name: str
) -> dict[str, Any]:
    """Train one PlainVAE (seeded) in ``context.out / f"run_{name}"``; the distortion per decoder
    conv before training (``at_init``) and at each epoch's end, and the SDR penalty then."""
    from causalscene.model import PlainVAE
    from causalscene.sdr import sdr_penalty
    from causalscene.train import TrainConfig, fit
    from causalscene.utils import set_seed

    base = context.pick(4, 16, 32)
    config = TrainConfig(
        out=str(context.out / f"run_{name}"),
        epochs=context.pick(2, 10, 30),
        batch_size=32,
        latent_dim=16,
        base_channels=base,
        no_dag=True,
        seed=context.seed,
        progress=False,
        device=context.device,
        aux_weight=0.0,
        sdr_weight=sdr_weight,
    )
    set_seed(context.seed)
    model = PlainVAE(size, latent_dim=16, base_channels=base).to(context.device)
    decoder: Any = model.decoder
    layers = [f"decoder.{n}" for n in decoder.names]
    z = model.sample_latents(context.pick(16, 64, 256), seed=context.seed)

    def distortions(net: Any) -> dict[str, float]:
        return {layer: stretch_distortion(net, layer, z) for layer in layers}

    curves: dict[str, list[float]] = {layer: [] for layer in layers}
    penalty: list[float] = []

    def at_epoch_end(run: Any, record: dict[str, Any]) -> None:
        for layer, value in distortions(run.model).items():
            curves[layer].append(value)
        penalty.append(float(sdr_penalty(run.model.decoder).detach()))

    at_init = distortions(model)
    history = fit(model, dataset, config, out=config.out, epoch_callbacks=[at_epoch_end])
    return {
        "sdr_weight": sdr_weight,
        "at_init": at_init,
        "distortion": curves,
        "sdr_penalty": penalty,
        "train_elbo": [record["train_elbo"] for record in history],
    }


def _plot_stretch(runs: dict[str, dict[str, Any]], path: Any) -> None:
    """Distortion vs epoch, one colour per layer; solid without, dashed with the penalty."""
    from causalscene.plots import plt
    from causalscene.utils import atomic_savefig

    fig, ax = plt.subplots(figsize=(5.0, 3.2))
    for style, (name, run) in zip(("-o", "--s"), runs.items()):
        for i, (layer, curve) in enumerate(run["distortion"].items()):
            epochs = range(1, len(curve) + 1)
            ax.plot(epochs, curve, style, ms=3, color=f"C{i}", label=f"{layer} ({name})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("stretch distortion (relative MSE)")
    ax.set_yscale("log")
    ax.legend(fontsize=6)
    ax.grid(color="#eeeeee")
    ax.set_title(f"hidden layer stretched {STRETCH}x vs stretched output", fontsize=9)
    atomic_savefig(fig, path)


REPRODUCTIONS = [
    Reproduction(
        "sdr",
        claim="Successive conv layers of a trained VAE decoder are spectrally independent (SDR "
        "histogram mode near 1) while the encoder's SDRs spread more widely.",
        source="Besserve, Sun, Janzing, Schölkopf, AAAI 2021, Sec. 5 / appendix (SDR histograms)",
        fn=sdr_faces,
    ),
    Reproduction(
        "stretch-extrapolation",
        claim="Stretching a decoder layer's maps 1.5x horizontally distorts the image (vs the "
        "stretched output) more as training goes on, and less with the SDR penalty: at the last "
        "epoch the distortion's mean over decoder convs is lower with the penalty than without, "
        "and without it the mean grows from the first epoch to the last.",
        source="Besserve, Sun, Janzing, Schölkopf, AAAI 2021, Sec. 4.1 / Fig. 4 (stretching)",
        fn=stretch_extrapolation,
    ),
]
