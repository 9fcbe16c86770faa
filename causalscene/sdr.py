"""Spectral independence of successive convolution layers: the spectral density ratio (SDR).

After Besserve, Sun, Janzing & Schölkopf, "A theory of independent mechanisms for extrapolation in
generative models", AAAI 2021. For a filter ``h`` applied to a stationary map ``x`` with power
spectral density ``S_x``, the output's density is ``|ĥ|² S_x``. The SDR (the paper's eq. 8)

    ρ(h, x) = ⟨|ĥ(ω)|² S_x(ω)⟩ / ( ⟨|ĥ(ω)|²⟩ · ⟨S_x(ω)⟩ ),     ⟨·⟩ = mean over frequencies ω,

equals 1 when the filter's gain is spectrally "independent" of the map (it neither tunes to nor
avoids where the map has power), exceeds 1 when the filter amplifies the map's strong frequencies,
and is below 1 when it suppresses them. By Parseval, with ``y = h ⊛ x`` (circular convolution on the
map's grid), ``ρ = Σ y² / (Σ x² · Σ h²)`` for one map; ``S_x`` is averaged over samples.

Multichannel layers (the paper's appendix): a convolution with weight ``w: [O, I, k, k]`` applied to
activation maps ``x: [B, I, H, W]`` gives one SDR per (filter ``w[o, i]``, map ``x[:, i]``) pair.
A transposed convolution of stride ``s`` is zero-insertion upsampling followed by a convolution: its
filters act on the upsampled maps. The maps of a layer are its *input*, i.e. the (activated) output
of the previous convolution, so successive conv layers give the (filter, map) pairs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from causalscene.datasets import write_npz
from causalscene.generators import Generator, as_module, check_generator, device_of

log = logging.getLogger(__name__)

__all__ = [
    "spectral_density_ratio",
    "conv_filters",
    "layer_sdr",
    "weight_sdr",
    "sdr_penalty",
    "sdr_summary",
    "analyse_sdr",
    "sdr_of_run",
]

_CONVS = (nn.Conv2d, nn.ConvTranspose2d)


def _as_filters(filters: torch.Tensor) -> torch.Tensor:
    if filters.dim() == 2:
        return filters[None, None]
    if filters.dim() == 3:
        return filters[None]
    if filters.dim() != 4:
        raise ValueError(
            f"filters must be [k, k], [I, k, k] or [O, I, k, k], got {tuple(filters.shape)}"
        )
    return filters


def _as_maps(maps: torch.Tensor) -> torch.Tensor:
    if maps.dim() == 2:
        return maps[None, None]
    if maps.dim() == 3:
        return maps[:, None]  # [B, H, W]: B samples of one map
    if maps.dim() != 4:
        raise ValueError(f"maps must be [H, W], [B, H, W] or [B, I, H, W], got {tuple(maps.shape)}")
    return maps


def map_psd(maps: torch.Tensor, center: bool = False) -> torch.Tensor:
    """Power spectral density of each channel, averaged over samples: ``[B, I, H, W] → [I, H, W]``.

    ``S(ω) = mean_b |DFT(x_b)(ω)|² / (H W)``; ``center`` removes each map's spatial mean first.
    """
    maps = _as_maps(maps).float()
    if center:
        maps = maps - maps.mean(dim=(-2, -1), keepdim=True)
    h, w = maps.shape[-2:]
    return torch.fft.fft2(maps).abs().square().mean(dim=0) / (h * w)


def _sdr_from_psd(filters: torch.Tensor, psd: torch.Tensor, eps: float) -> torch.Tensor:
    """``filters: [O, I, k, k]``, ``psd: [O, I, H, W]`` (or broadcastable) → ``[O, I]``."""
    h, w = psd.shape[-2:]
    if filters.shape[-2] > h or filters.shape[-1] > w:
        raise ValueError(f"filters {tuple(filters.shape[-2:])} are larger than the maps ({h}, {w})")
    gain = torch.fft.fft2(filters.float(), s=(h, w)).abs().square()
    numerator = (gain * psd).mean(dim=(-2, -1))
    denominator = gain.mean(dim=(-2, -1)) * psd.mean(dim=(-2, -1))
    return numerator / (denominator + eps)


def spectral_density_ratio(
    filters: torch.Tensor, maps: torch.Tensor, *, center: bool = False, eps: float = 1e-12
) -> torch.Tensor:
    """SDR ``ρ(h, x)`` (Besserve et al. 2021, eq. 8) of each filter with its map; differentiable.

    ``filters: [k, k]`` with ``maps: [H, W]`` or ``[B, H, W]`` (samples of one map) → a scalar;
    ``filters: [O, I, k, k]`` with ``maps: [B, I, H, W]`` → ``[O, I]``, the SDR of filter
    ``w[o, i]`` with map ``i`` (its density averaged over the ``B`` samples). Filters are zero
    padded to the maps' grid ``H × W``; the DFT is circular.
    """
    maps4 = _as_maps(maps)
    filters4 = _as_filters(filters)
    if filters4.shape[1] != maps4.shape[1]:
        raise ValueError(
            f"filters have {filters4.shape[1]} input channels, maps have {maps4.shape[1]}"
        )
    out = _sdr_from_psd(filters4, map_psd(maps4, center)[None], eps)
    return out[0, 0] if filters.dim() == 2 else out


def _upsample_zeros(maps: torch.Tensor, stride: tuple[int, int]) -> torch.Tensor:
    """Zero-insertion upsampling ``[B, I, H, W] → [B, I, sH, sW]`` (what a transposed conv does)."""
    sh, sw = stride
    if sh == 1 and sw == 1:
        return maps
    b, i, h, w = maps.shape
    out = maps.new_zeros(b, i, h * sh, w * sw)
    out[..., ::sh, ::sw] = maps
    return out


Conv = nn.Conv2d | nn.ConvTranspose2d


def conv_filters(module: Conv) -> torch.Tensor:
    """A conv layer's filters as ``[O, I/groups, k, k]`` (transposed convs' weights reordered)."""
    weight = module.weight
    if isinstance(module, nn.ConvTranspose2d):
        g = module.groups
        i_total, o_per = weight.shape[:2]
        weight = weight.reshape(g, i_total // g, o_per, *weight.shape[2:]).transpose(1, 2)
        weight = weight.reshape(g * o_per, i_total // g, *weight.shape[-2:])
    return weight


def _pair_sdr(module: Conv, maps: torch.Tensor, center: bool, eps: float) -> torch.Tensor:
    """SDR of every (filter, input map) pair of one conv layer → ``[O, I/groups]``."""
    if isinstance(module, nn.ConvTranspose2d):
        sh, sw = module.stride
        maps = _upsample_zeros(maps, (sh, sw))
    filters = conv_filters(module)
    psd = map_psd(maps, center)  # [I, H, W]
    out_channels, in_per_group = filters.shape[:2]
    groups = module.groups
    group_of_output = torch.arange(out_channels, device=psd.device) // (out_channels // groups)
    index = group_of_output[:, None] * in_per_group + torch.arange(in_per_group, device=psd.device)
    return _sdr_from_psd(filters, psd[index], eps)


def layer_sdr(
    model: nn.Module,
    inputs: Any,
    *,
    skip_first: bool = True,
    center: bool = False,
    eps: float = 1e-12,
    min_power: float = 1e-10,
) -> dict[str, torch.Tensor]:
    """SDR of every (filter, activation map) pair of successive conv layers of ``model``.

    Runs ``model(inputs)`` once with hooks on every ``Conv2d``/``ConvTranspose2d``; for each layer,
    its input maps (the previous layer's activations, zero-upsampled for a transposed conv) and its
    filters give ``[O, I/groups]`` SDRs. ``skip_first`` drops the first conv called (its input is the
    network's input, not a conv layer's map). Pairs whose map carries (almost) no power
    (``mean S < min_power``, dead channels) are NaN. Returns ``{layer name: [O, I/groups]}`` in call
    order; gradients flow when the caller enables them.
    """
    names = {module: name for name, module in model.named_modules() if isinstance(module, _CONVS)}
    recorded: list[tuple[str, Conv, torch.Tensor]] = []

    def hook(module: Conv, args: Any) -> None:
        recorded.append((names[module], module, args[0]))

    handles = [module.register_forward_pre_hook(hook) for module in names]
    try:
        model(inputs) if not isinstance(inputs, (tuple, list)) else model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    if skip_first:
        recorded = recorded[1:]
    out: dict[str, torch.Tensor] = {}
    for name, module, maps in recorded:
        sdr = _pair_sdr(module, maps, center, eps)
        power = map_psd(maps, center).mean(dim=(-2, -1))
        filters_in = conv_filters(module).shape[1]
        groups = module.groups
        o = sdr.shape[0]
        index = (torch.arange(o, device=power.device) // (o // groups))[:, None] * filters_in
        index = index + torch.arange(filters_in, device=power.device)
        dead = power[index] < min_power
        out[name] = torch.where(dead, torch.full_like(sdr, float("nan")), sdr)
    return out


def _white_output_psd(module: Conv, size: int) -> torch.Tensor:
    """Density of each output channel of ``module`` fed independent white noise: ``[O, n, n]``."""
    filters = conv_filters(module)
    return torch.fft.fft2(filters.float(), s=(size, size)).abs().square().sum(dim=1)


def weight_sdr(module: nn.Module, size: int = 16, eps: float = 1e-12) -> dict[str, torch.Tensor]:
    """Data-free SDR of successive conv layers, from their weights alone; differentiable.

    For consecutive convs ``l → l+1`` (in registration order), the map of channel ``c`` is taken
    as layer ``l``'s response to independent white-noise inputs, ``S_c = Σ_j |ŵ_l[c, j]|²`` (the
    nonlinearity in between is ignored); a transposed conv ``l+1`` of stride ``s`` sees it zero
    upsampled, whose density on the fine grid is ``S_c`` tiled ``s × s``. Returns
    ``{"l->l+1": [O, I/groups]}`` on an ``size × size`` grid (of layer ``l+1``'s input).
    """
    convs = [(name, m) for name, m in module.named_modules() if isinstance(m, _CONVS)]
    out: dict[str, torch.Tensor] = {}
    for (name1, conv1), (name2, conv2) in zip(convs[:-1], convs[1:]):
        stride = conv2.stride if isinstance(conv2, nn.ConvTranspose2d) else (1, 1)
        coarse = size // stride[0]
        if coarse < max(conv1.kernel_size) or size < max(conv2.kernel_size):
            raise ValueError(f"grid size {size} too small for layers {name1}, {name2}")
        psd = _white_output_psd(conv1, coarse).repeat(1, stride[0], stride[1])  # [C, n, n]
        filters = conv_filters(conv2)
        if psd.shape[0] != filters.shape[1] * conv2.groups:
            continue  # not consecutive in the data flow (channel counts disagree)
        out_channels, in_per_group = filters.shape[:2]
        group = torch.arange(out_channels, device=psd.device) // (out_channels // conv2.groups)
        index = group[:, None] * in_per_group + torch.arange(in_per_group, device=psd.device)
        out[f"{name1}->{name2}"] = _sdr_from_psd(filters, psd[index], eps)
    return out


def sdr_penalty(module: nn.Module, inputs: Any = None, size: int = 16) -> torch.Tensor:
    """Differentiable penalty pushing successive layers towards spectral independence (SDR = 1).

    ``mean over (filter, map) pairs of (ρ - 1)²`` — the squared departure from 1 that the 2021
    paper's regulariser (eq. 13) penalises, averaged over all pairs of all successive conv layers.
    Without ``inputs`` the data-free :func:`weight_sdr` is used (what ``train.fit`` calls with
    ``sdr_weight > 0``); with ``inputs`` (e.g. latents for a decoder) the activation-based
    :func:`layer_sdr`. A module with fewer than two conv layers gives a zero tensor.
    """
    if inputs is None:
        values = list(weight_sdr(module, size=size).values())
    else:
        values = list(layer_sdr(module, inputs).values())
    values = [v[~torch.isnan(v)] for v in values]
    values = [v for v in values if v.numel()]
    if not values:
        param = next(module.parameters(), None)
        return torch.zeros((), device=param.device if param is not None else None)
    flat = torch.cat([v.reshape(-1) for v in values])
    return (flat - 1.0).square().mean()


def sdr_summary(values: Any, bins: int = 60, log_range: tuple[float, float] = (-1.5, 1.5)) -> dict:
    """Mode (of the log10-SDR histogram), median, mean, spread (std and IQR of log10 SDR), count."""
    if isinstance(values, dict):
        values = [v.detach().cpu().reshape(-1) for v in values.values()]
        array = torch.cat(values).numpy() if values else np.zeros(0)
    else:
        array = np.asarray(values, dtype=np.float64).reshape(-1)
    array = array[np.isfinite(array) & (array > 0)]
    if array.size == 0:
        raise ValueError("no finite positive SDR values to summarise")
    logs = np.log10(array)
    counts, edges = np.histogram(logs, bins=bins, range=log_range)
    top = int(np.argmax(counts))
    q25, q75 = np.percentile(logs, [25, 75])
    return {
        "count": int(array.size),
        "mode": float(10 ** ((edges[top] + edges[top + 1]) / 2)),
        "median": float(np.median(array)),
        "mean": float(array.mean()),
        "log10_std": float(logs.std()),
        "log10_iqr": float(q75 - q25),
        "fraction_within_1.5x": float(np.mean(np.abs(logs) < np.log10(1.5))),
    }


# --------------------------------------------------------------------------------------------
# the pipeline ``causalscene sdr`` runs


def sdr_of_run(
    run: str, out: Path | None = None, samples: int = 256, seed: int = 0, device: str = "auto"
) -> tuple[dict[str, Any], Path]:
    """``causalscene sdr RUN``: :func:`analyse_sdr` of a run folder's generator (or any spec
    :func:`~causalscene.generators.load_generator` reads; not TorchScript, which takes no hooks)
    into ``out`` (default ``RUN/sdr``), encoder maps from up to ``samples`` of the run's training
    images when its data folder is at hand, else of decoded samples. Returns ``(result, out)``."""
    from causalscene.generators import default_output, load_generator
    from causalscene.tensors import resolve_device
    from causalscene.utils import set_seed, write_run_info

    generator, config = load_generator(run, str(resolve_device(device)))
    as_module(generator, run)  # TorchScript and the like are refused before anything is written
    _encoder_trunk(generator)
    set_seed(seed)
    out = out or default_output(run, "sdr")
    images = _run_images(config, samples, generator)
    result = analyse_sdr(generator, out, images=images, samples=samples, seed=seed)
    write_run_info(out, {"run": run, "samples": samples}, seed=seed)
    return result, out


def _run_images(config: Any, n: int, generator: Generator) -> torch.Tensor | None:
    """Up to ``n`` training images of a run (float NCHW), or None when the data is not at hand."""
    data = getattr(config, "data", None)
    if not data or not Path(data).is_dir():
        return None
    from causalscene.datasets import load_arrays
    from causalscene.tensors import to_float_images

    images, _ = load_arrays(data)
    return to_float_images(images[:n], device_of(generator))


@torch.no_grad()
def analyse_sdr(
    generator: Generator,
    out: Path,
    images: torch.Tensor | None = None,
    samples: int = 256,
    seed: int = 0,
    baseline: Generator | None = None,
) -> dict[str, Any]:
    """Decoder vs encoder SDR of successive conv layers; histograms and sdr.json.

    Decoder maps come from ``samples`` prior latents, encoder maps from ``images`` (float NCHW in
    [0, 1]; default: decoded samples). ``baseline`` (an untrained copy) gives the same figures at
    initialisation, to tell what the architecture alone does. Writes ``sdr_{tag}.npz`` (the
    finite positive values, ``decoder`` and ``encoder``, that each summary is computed from),
    ``sdr_histograms.png`` and ``sdr.json`` (the returned dict: per tag, :func:`sdr_summary` of
    decoder and encoder, and per layer).
    """
    from causalscene import plots
    from causalscene.utils import atomic_write_json

    if samples < 1:
        raise ValueError(f"--samples must be >= 1, got {samples}")
    check_generator(generator)
    out.mkdir(parents=True, exist_ok=True)
    z = generator.sample_latents(samples, seed=seed)
    if images is None:
        images = as_module(generator)(z)
    result: dict[str, Any] = {}
    groups: dict[str, np.ndarray] = {}
    for tag, model in (("trained", generator), ("untrained", baseline)):
        if model is None:
            continue
        result[tag], dec, enc = _decoder_vs_encoder(model, z, images.to(z.device))
        groups[f"decoder ({tag})"] = dec
        groups[f"encoder ({tag})"] = enc
        write_npz(out / f"sdr_{tag}.npz", {"decoder": dec, "encoder": enc})
    plots.plot_sdr_histograms(groups, out / "sdr_histograms.png")
    atomic_write_json(out / "sdr.json", result)
    return result


def _decoder_vs_encoder(
    generator: Generator, z: torch.Tensor, images: torch.Tensor
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Summaries of the decoder's SDRs (on ``z``) and the encoder's (on ``images``), overall and
    per layer, with the decoder's and encoder's finite positive values."""
    decoder_sdr = layer_sdr(as_module(generator), z)
    encoder_sdr = layer_sdr(_encoder_trunk(generator), images)
    dec, enc = _sdr_values(decoder_sdr), _sdr_values(encoder_sdr)
    summary = {
        "decoder": sdr_summary(dec),
        "encoder": sdr_summary(enc),
        "decoder_layers": {k: sdr_summary({k: v}) for k, v in decoder_sdr.items()},
        "encoder_layers": {k: sdr_summary({k: v}) for k, v in encoder_sdr.items()},
    }
    return summary, dec, enc


def _sdr_values(sdrs: dict[str, torch.Tensor]) -> np.ndarray:
    """The finite positive SDRs of all layers, flattened (what :func:`sdr_summary` keeps)."""
    values = [v.detach().cpu().reshape(-1).numpy() for v in sdrs.values()]
    array = np.concatenate(values) if values else np.zeros(0)
    return array[np.isfinite(array) & (array > 0)]


def _encoder_trunk(generator: Generator) -> nn.Module:
    """The conv trunk of the generator's VAE encoder, or its own ``encoder`` submodule
    (``ValueError`` when it has none)."""
    vae = getattr(generator, "vae", generator)
    encoder = getattr(vae, "encoder", None)
    if not isinstance(encoder, nn.Module):
        raise ValueError(
            "this generator has no encoder to compare with: SDR needs a trained VAE run or a "
            "generator module with an `encoder` submodule (images -> latents)"
        )
    return getattr(encoder, "trunk", encoder)
