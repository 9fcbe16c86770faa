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


REPRODUCTIONS = [
    Reproduction(
        "sdr",
        claim="Successive conv layers of a trained VAE decoder are spectrally independent (SDR "
        "histogram mode near 1) while the encoder's SDRs spread more widely.",
        source="Besserve, Sun, Janzing, Schölkopf, AAAI 2021, Sec. 5 / appendix (SDR histograms)",
        fn=sdr_faces,
    )
]
