"""Counterfactual hybridization, influence maps and modules of a generator's layer.

After Besserve, Sun & Schölkopf, "Counterfactuals uncover the modular structure of deep generative
models", ICLR 2020 (arXiv:1812.03253).

A generator ``g`` maps a latent ``z: [B, D]`` to images ``x: [B, C, H, W]``. Cut it at a named layer
``l`` (a submodule from ``named_modules()`` whose output is a feature map ``[B, C_l, h, w]``):
``g = g_after ∘ g_before``. For a set of channels ``E`` of that layer and two latents ``z1, z2``
the *hybrid* is

    Y_E(z1, z2) = g_after( a(z1) with channels E replaced by a(z2)[E] ),   a = g_before,

computed with a forward hook (the generator's code is never copied). The *influence map* of ``E``
(eq. 2 of the paper) is the mean absolute change it causes, averaged over colour channels:

    I_E(p) = E_{z1, z2} [ mean_colour | Y_E(z1, z2)(p) - g(z1)(p) | ],   p a pixel.

Elementary influence maps are ``I_{c}`` for every single channel ``c``. Modules are groups of
channels with similar maps: each map is smoothed with a small box filter, binarised at its 75th
percentile, and the binary maps ``[C_l, h*w]`` are factorised by NMF of rank ``K`` (each channel is
assigned to the component of largest weight); k-means on the same binary maps is the comparison.
``K`` is chosen by split-half stability (the paper's supplement): cluster maps computed from two
disjoint halves of the latent pairs and measure how well the two clusterings agree.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from causalscene.generators import Generator, as_module, check_generator, device_of

log = logging.getLogger(__name__)

__all__ = [
    "LayerInfo",
    "ModuleClustering",
    "StabilityResult",
    "hookable_layers",
    "hybridize",
    "influence_map",
    "elementary_influence_maps",
    "binarize_maps",
    "cluster_modules",
    "cluster_stability",
    "module_hybrids",
    "PlantedModulesGenerator",
    "ModulesConfig",
    "parse_ks",
    "analyse_modules",
    "modules_of_run",
    "layers_of_run",
]


# --------------------------------------------------------------------------------------------
# layers


@dataclass(frozen=True)
class LayerInfo:
    """A layer whose output is a feature map: its name, class and output shape ``(C, h, w)``."""

    name: str
    kind: str
    channels: int
    height: int
    width: int


def _latent_dim(generator: Generator) -> int:
    """The protocol's ``latent_dim`` (``ValueError`` when missing)."""
    dim = getattr(generator, "latent_dim", None)
    if not isinstance(dim, int) or dim < 1:
        raise ValueError(
            f"{type(generator).__name__} has no latent_dim (an int >= 1): "
            "see causalscene.generators.Generator"
        )
    return dim


@torch.no_grad()
def hookable_layers(generator: Generator, z: torch.Tensor | None = None) -> list[LayerInfo]:
    """Every named submodule whose output is a 4-D feature map ``[B, C, h, w]``, in call order.

    One forward pass on two latents (``z`` or zeros of ``generator.latent_dim``) records the
    output shapes. Containers (``nn.Sequential``) are listed too when their output is a map.
    """
    if z is None:
        z = torch.zeros(2, _latent_dim(generator), device=device_of(generator))
    return _record_layers(as_module(generator), z)


def _record_layers(generator: nn.Module, z: torch.Tensor) -> list[LayerInfo]:
    """One hooked pass on ``z``: the first output shape of every submodule that gives a map."""
    found: dict[str, LayerInfo] = {}
    handles = []
    for name, module in generator.named_modules():
        if not name:
            continue

        def hook(mod: nn.Module, inputs: Any, output: Any, name: str = name) -> None:
            if isinstance(output, torch.Tensor) and output.dim() == 4 and name not in found:
                _, c, h, w = output.shape
                found[name] = LayerInfo(name, type(mod).__name__, int(c), int(h), int(w))

        handles.append(module.register_forward_hook(hook))
    try:
        was_training = generator.training
        generator.eval()
        generator(z)
        generator.train(was_training)
    finally:
        for handle in handles:
            handle.remove()
    return list(found.values())


def _layer_module(generator: nn.Module, layer: str) -> nn.Module:
    modules = dict(generator.named_modules())
    if layer not in modules or not layer:
        valid = ", ".join(info.name for info in hookable_layers(cast(Generator, generator)))
        raise ValueError(f"unknown layer '{layer}'; hookable layers: {valid}")
    return modules[layer]


def _check_pairs(z1: torch.Tensor, z2: torch.Tensor) -> None:
    if z1.dim() != 2 or z1.shape != z2.shape:
        raise ValueError(
            f"z1 and z2 must both be [pairs, D], got {tuple(z1.shape)} and {tuple(z2.shape)}"
        )
    if z1.shape[0] < 1:
        raise ValueError("need at least one pair of latents (pairs >= 1)")


class _Capture:
    """Forward hook storing (and optionally stopping at) a layer's output."""

    class Stop(Exception):
        pass

    def __init__(self, stop: bool) -> None:
        self.stop = stop
        self.output: torch.Tensor | None = None

    def __call__(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        self.output = output
        if self.stop:
            raise _Capture.Stop


def _activation(generator: nn.Module, layer: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """The layer's output for ``z``; the pass stops at the layer."""
    capture = _Capture(stop=True)
    handle = layer.register_forward_hook(capture)
    try:
        generator(z)
    except _Capture.Stop:
        pass
    finally:
        handle.remove()
    if capture.output is None:
        raise ValueError("the layer was not called during the generator's forward pass")
    out = capture.output
    if out.dim() != 4:
        raise ValueError(f"layer output must be a feature map [B, C, h, w], got {tuple(out.shape)}")
    return out


def _run_replaced(
    generator: nn.Module,
    layer: nn.Module,
    z: torch.Tensor,
    replacement: torch.Tensor,
    state: dict[str, bool] | None = None,
) -> torch.Tensor:
    """Run ``generator`` with ``layer``'s output replaced by ``replacement``.

    The replacement may hold ``m * len(z)`` rows: the layers before ``layer`` then run once on
    ``z`` and the layers after it on the whole batch. Generators whose later code assumes the
    input's batch size fail that route; they are run again on ``z`` repeated ``m`` times (and
    ``state["repeat"]`` remembers it for the next call).
    """
    m, rem = divmod(replacement.shape[0], z.shape[0])
    if rem:
        raise ValueError("replacement rows must be a multiple of the latent rows")
    state = {} if state is None else state
    handle = layer.register_forward_hook(lambda mod, inp, out: replacement)
    try:
        if m > 1 and not state.get("repeat", False):
            try:
                images = generator(z)
                if images.shape[0] == replacement.shape[0]:
                    return images
            except RuntimeError:
                pass
            log.debug("generator needs the full batch upstream of the layer; repeating z")
            state["repeat"] = True
        return generator(z.repeat(m, 1) if m > 1 else z)
    finally:
        handle.remove()


def _channel_index(channels: Any, num_channels: int) -> torch.Tensor:
    index = torch.as_tensor(list(channels) if not isinstance(channels, torch.Tensor) else channels)
    index = index.long().reshape(-1)
    if index.numel() and (index.min() < 0 or index.max() >= num_channels):
        raise ValueError(f"channels must lie in [0, {num_channels}), got {index.tolist()}")
    return index


@torch.no_grad()
def hybridize(
    decoder: Generator, layer: str, channels: Any, z1: torch.Tensor, z2: torch.Tensor
) -> torch.Tensor:
    """Hybrid images ``Y_E(z1, z2)``: ``z1``'s pass with ``z2``'s activations of ``channels``.

    ``decoder`` is a Generator (``forward(z) -> x: [B, C, H, W]``), ``layer`` a name from
    ``decoder.named_modules()``, ``channels`` a list of channel indices ``E`` of that layer,
    ``z1, z2: [B, D]``. Returns ``x: [B, C, H, W]``. All channels give ``decoder(z2)`` (when the
    layer's output is all that reaches the image), none gives ``decoder(z1)``.
    """
    net = as_module(decoder)
    module = _layer_module(net, layer)
    _check_pairs(z1, z2)
    a1 = _activation(net, module, z1)
    a2 = _activation(net, module, z2)
    index = _channel_index(channels, a1.shape[1]).to(a1.device)
    hybrid = a1.clone()
    hybrid[:, index] = a2[:, index]
    return _run_replaced(net, module, z1, hybrid)


@torch.no_grad()
def influence_map(
    decoder: Generator, layer: str, channels: Any, z1: torch.Tensor, z2: torch.Tensor
) -> torch.Tensor:
    """Influence map of a channel set ``E`` (Besserve et al. 2020, eq. 2): ``[H, W]``.

    ``I_E = mean over pairs and colour channels of |Y_E(z1, z2) - decoder(z1)|``.
    """
    hybrid = hybridize(decoder, layer, channels, z1, z2)
    return (hybrid - as_module(decoder)(z1)).abs().mean(dim=(0, 1))


def _default_batch(device: torch.device) -> int:
    return 8192 if device.type == "cuda" else 1024


@torch.no_grad()
def elementary_influence_maps(
    decoder: Generator,
    layer: str,
    z1: torch.Tensor,
    z2: torch.Tensor,
    *,
    batch_size: int | None = None,
    num_groups: int | None = None,
    channels: Any = None,
) -> torch.Tensor:
    """Influence map of every single channel of ``layer``: ``[C_l, H, W]``.

    ``I_c = mean_{pairs, colour} |Y_{c}(z1, z2) - decoder(z1)|`` (eq. 2 with ``E = {c}``). The
    layer's activations are computed once for ``z1`` and ``z2``; hybrids for many channels × pairs
    go through the rest of the network together, ``batch_size`` images per forward pass (default
    8192 on CUDA, 1024 on CPU; at least one channel's pairs per pass).

    With ``num_groups = G`` the pairs are split into ``G`` consecutive groups of (nearly) equal size
    and the maps of each group are returned: ``[G, C_l, H, W]`` (for split-half stability).
    ``channels`` restricts the computation to some channels (default: all).
    """
    net = as_module(decoder)
    module = _layer_module(net, layer)
    _check_pairs(z1, z2)
    was_training = net.training
    net.eval()
    try:
        a1 = _activation(net, module, z1)
        a2 = _activation(net, module, z2)
        base = net(z1)
        num_pairs, num_channels = a1.shape[0], a1.shape[1]
        index = (
            torch.arange(num_channels)
            if channels is None
            else _channel_index(channels, num_channels)
        )
        groups = 1 if num_groups is None else int(num_groups)
        if groups < 1 or groups > num_pairs:
            raise ValueError(f"num_groups must lie in [1, pairs={num_pairs}], got {groups}")
        group_of = torch.div(torch.arange(num_pairs) * groups, num_pairs, rounding_mode="floor")
        group_of = group_of.to(a1.device)
        counts = torch.bincount(group_of, minlength=groups).to(base.dtype)
        budget = batch_size or _default_batch(a1.device)
        per_pass = max(1, budget // num_pairs)
        height, width = base.shape[-2:]
        maps = torch.zeros(groups, len(index), height, width, device=base.device, dtype=base.dtype)
        # does the generator accept a layer output with more rows than its input? (cheap probe)
        state: dict[str, bool] = {}
        _run_replaced(net, module, z1[:1], a1[:1].repeat(2, 1, 1, 1), state)
        for start in range(0, len(index), per_pass):
            chunk = index[start : start + per_pass].to(a1.device)
            m = len(chunk)
            hybrid = a1.unsqueeze(0).repeat(m, 1, 1, 1, 1)  # [m, P, C, h, w]
            rows = torch.arange(m, device=a1.device)
            hybrid[rows, :, chunk] = a2[:, chunk].permute(1, 0, 2, 3)
            images = _run_replaced(
                net, module, z1, hybrid.reshape(m * num_pairs, *a1.shape[1:]), state
            )
            diff = (images.reshape(m, num_pairs, *base.shape[1:]) - base).abs().mean(dim=2)
            summed = torch.zeros(m, groups, height, width, device=diff.device, dtype=diff.dtype)
            summed.index_add_(1, group_of, diff)
            maps[:, start : start + m] = (summed / counts.view(1, -1, 1, 1)).transpose(0, 1)
    finally:
        net.train(was_training)
    return maps[0] if num_groups is None else maps


# --------------------------------------------------------------------------------------------
# clustering


@dataclass
class ModuleClustering:
    """Modules of a layer: ``labels[c]`` in ``[0, K)``, templates ``[K, h, w]``, weights ``[C, K]``."""

    method: str
    k: int
    labels: np.ndarray
    templates: np.ndarray
    weights: np.ndarray
    binary_maps: np.ndarray = field(repr=False)

    def members(self, module: int) -> list[int]:
        return [int(c) for c in np.flatnonzero(self.labels == module)]


def binarize_maps(maps: Any, smooth: int = 3, quantile: float = 0.75) -> np.ndarray:
    """Box-smooth each map (``smooth × smooth``) and keep the pixels above its ``quantile``.

    ``maps: [C, h, w]`` → float ``{0, 1}`` array ``[C, h*w]`` (a constant map gives a zero row).
    """
    from scipy.ndimage import uniform_filter

    array = maps.detach().float().cpu().numpy() if hasattr(maps, "detach") else np.asarray(maps)
    array = array.astype(np.float64)
    if array.ndim != 3:
        raise ValueError(f"maps must be [channels, h, w], got shape {array.shape}")
    if smooth > 1:
        array = uniform_filter(array, size=(1, smooth, smooth), mode="nearest")
    flat = array.reshape(len(array), -1)
    thresholds = np.quantile(flat, quantile, axis=1, keepdims=True)
    return (flat > thresholds).astype(np.float64)


def _check_k(k: int, num_channels: int) -> None:
    if not isinstance(k, (int, np.integer)) or k < 2 or k > num_channels:
        raise ValueError(
            f"K must be an integer in [2, {num_channels}] (the channel count), got {k}"
        )


def _nmf(binary: np.ndarray, k: int, init: str, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    import warnings

    from sklearn.decomposition import NMF
    from sklearn.exceptions import ConvergenceWarning

    model = NMF(n_components=k, init=init, random_state=seed, max_iter=500, tol=1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        weights = model.fit_transform(binary)
    return weights, model.components_, float(model.reconstruction_err_)


def _cluster_binary(
    binary: np.ndarray,
    shape: tuple[int, ...],
    k: int,
    method: str,
    seed: int,
    init: str = "nndsvda",
    n_init: int = 4,
) -> ModuleClustering:
    """NMF (best of ``init`` and ``n_init - 1`` random starts) or k-means on binary maps."""
    if method == "nmf":
        best = _nmf(binary, k, init, seed)
        for restart in range(1, n_init):
            trial = _nmf(binary, k, "random", seed + 7919 * restart)
            if trial[2] < best[2] - 1e-9:
                best = trial
        weights, templates, _ = best
        labels = weights.argmax(axis=1)
    elif method == "kmeans":
        from sklearn.cluster import KMeans

        model = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(binary)
        labels = model.labels_
        templates = model.cluster_centers_
        weights = np.eye(k)[labels]
    else:
        raise ValueError(f"method must be 'nmf' or 'kmeans', got '{method}'")
    return ModuleClustering(
        method=method,
        k=int(k),
        labels=np.asarray(labels, dtype=np.int64),
        templates=np.asarray(templates).reshape(k, *shape),
        weights=np.asarray(weights),
        binary_maps=binary,
    )


def cluster_modules(
    maps: Any,
    k: int,
    *,
    method: str = "nmf",
    smooth: int = 3,
    quantile: float = 0.75,
    seed: int = 0,
    n_init: int = 4,
) -> ModuleClustering:
    """Group the channels of a layer into ``k`` modules from their elementary influence maps.

    ``maps: [C, h, w]``. Binary maps ``B = binarize_maps(maps)``; NMF ``B ≈ W H`` of rank ``k``
    (scikit-learn), channel ``c`` goes to ``argmax_k W[c, k]``; the rows of ``H`` are the module
    templates (Besserve et al. 2020, Sec. 3.3). NMF keeps the best (lowest reconstruction error)
    of an NNDSVDa start and ``n_init - 1`` random starts. ``method="kmeans"`` runs k-means on ``B``.
    """
    shape = tuple(maps.shape[-2:])
    _check_k(k, int(maps.shape[0]))
    binary = binarize_maps(maps, smooth, quantile)
    return _cluster_binary(binary, shape, k, method, seed, n_init=n_init)


@dataclass
class StabilityResult:
    """Split-half stability per K: mean label ARI and matched template cosine similarity."""

    ks: list[int]
    consistency: list[float]
    consistency_std: list[float]
    template_cosine: list[float]
    agreement: list[float]
    best_k: int
    method: str = "nmf"


def _matched(templates_a: np.ndarray, templates_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hungarian matching of two template sets by cosine similarity: (perm of b, cosines)."""
    from scipy.optimize import linear_sum_assignment

    a = templates_a.reshape(len(templates_a), -1)
    b = templates_b.reshape(len(templates_b), -1)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    cos = a @ b.T
    rows, cols = linear_sum_assignment(-cos)
    return cols, cos[rows, cols]


def cluster_stability(
    group_maps: Any,
    ks: Any,
    *,
    method: str = "nmf",
    num_splits: int = 10,
    channel_fraction: float = 0.8,
    smooth: int = 3,
    quantile: float = 0.75,
    seed: int = 0,
) -> StabilityResult:
    """Choose K by split-half stability (Besserve et al. 2020, supplement; Lange et al. 2004).

    ``group_maps: [G, C, h, w]`` are elementary influence maps from ``G >= 2`` disjoint groups of
    latent pairs (:func:`elementary_influence_maps` with ``num_groups``). For each of
    ``num_splits`` random splits, the groups are split into two halves A and B and each half also
    draws a random ``channel_fraction`` of the channels; the maps of each half are averaged and
    clustered with rank K (seeds differ per half). An arbitrary clustering (merging true modules
    when K is too small, splitting one when K is too large) then changes from half to half, and the
    true K is the stable one. Reported per K:
    ``consistency`` = mean adjusted Rand index between the halves' labels on their shared channels
    (chance corrected, so small K gets no free agreement), ``agreement`` = fraction of shared
    channels with the same label after matching the modules, ``template_cosine`` = mean cosine
    similarity of the matched templates. ``best_k`` maximises consistency; ties (e.g. one more
    component that NMF leaves empty reproduces the same labels) go to the higher template cosine.
    """
    array = _group_array(group_maps, channel_fraction)
    ks = [int(k) for k in ks]
    if not ks:
        raise ValueError("give at least one K")
    num_groups, num_channels = array.shape[:2]
    keep = max(2, int(round(channel_fraction * num_channels)))
    for k in ks:
        _check_k(k, keep)
    rng = np.random.default_rng(seed)
    splits = _draw_splits(rng, num_groups, num_channels, keep, num_splits)
    binaries = [
        [
            binarize_maps(array[groups][:, chans].mean(axis=0), smooth, quantile)
            for groups, chans in split
        ]
        for split in splits
    ]
    shape = tuple(array.shape[-2:])
    means, stds, cosines, agreements = [], [], [], []
    for k in ks:
        aris, cos_k, agree_k = _split_scores(splits, binaries, shape, k, method, seed)
        means.append(float(np.mean(aris)))
        stds.append(float(np.std(aris)))
        cosines.append(float(np.mean(cos_k)))
        agreements.append(float(np.mean(agree_k)))
        log.info("K=%d: consistency %.3f, template cosine %.3f", k, means[-1], cosines[-1])
    top = max(means)
    tied = [i for i, m in enumerate(means) if m >= top - 1e-9]
    best = ks[max(tied, key=lambda i: (cosines[i], -i))]
    return StabilityResult(ks, means, stds, cosines, agreements, best, method)


def _group_array(group_maps: Any, channel_fraction: float) -> np.ndarray:
    """``group_maps`` as a checked numpy array ``[G >= 2, C, h, w]``."""
    array = (
        group_maps.detach().float().cpu().numpy()
        if hasattr(group_maps, "detach")
        else np.asarray(group_maps, dtype=np.float64)
    )
    if array.ndim != 4 or array.shape[0] < 2:
        raise ValueError(f"group_maps must be [groups >= 2, C, h, w], got shape {array.shape}")
    if not 0.0 < channel_fraction <= 1.0:
        raise ValueError(f"channel_fraction must lie in (0, 1], got {channel_fraction}")
    return array


Split = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def _draw_splits(
    rng: np.random.Generator, num_groups: int, num_channels: int, keep: int, num_splits: int
) -> list[Split]:
    """``num_splits`` random splits: per half, (its pair groups, its ``keep`` sorted channels)."""
    splits = []
    for _ in range(num_splits):
        perm = rng.permutation(num_groups)
        chans = [np.sort(rng.choice(num_channels, keep, replace=False)) for _ in range(2)]
        splits.append(((perm[: num_groups // 2], chans[0]), (perm[num_groups // 2 :], chans[1])))
    return splits


def _split_scores(
    splits: list[Split],
    binaries: list[list[np.ndarray]],
    shape: tuple[int, ...],
    k: int,
    method: str,
    seed: int,
) -> tuple[list[float], list[float], list[float]]:
    """Per split at rank ``k``: label ARI on shared channels, matched template cosine, agreement."""
    from sklearn.metrics import adjusted_rand_score

    aris, cos_k, agree_k = [], [], []
    for s, split in enumerate(splits):
        ra, rb = (
            _cluster_binary(binaries[s][h], shape, k, method, seed + 2 * s + h + 1)
            for h in range(2)
        )
        shared, ia, ib = np.intersect1d(split[0][1], split[1][1], return_indices=True)
        la, lb = ra.labels[ia], rb.labels[ib]
        aris.append(float(adjusted_rand_score(la, lb)))
        perm_b, cos = _matched(ra.templates, rb.templates)
        cos_k.append(float(cos.mean()))
        relabel = np.empty(k, dtype=np.int64)
        relabel[perm_b] = np.arange(k)
        agree_k.append(float(np.mean(relabel[lb] == la)))
    return aris, cos_k, agree_k


@torch.no_grad()
def module_hybrids(
    decoder: Generator,
    layer: str,
    clustering: ModuleClustering,
    z1: torch.Tensor,
    z2: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """Hybrids of every module: ``{"original1": [n,C,H,W], "original2": ..., "hybrids": [K,n,C,H,W]}``.

    ``hybrids[k] = hybridize(decoder, layer, clustering.members(k), z1, z2)``: Original 1 with the
    channels of module ``k`` taken from Original 2.
    """
    _check_pairs(z1, z2)
    hybrids = [
        hybridize(decoder, layer, clustering.members(k), z1, z2) for k in range(clustering.k)
    ]
    net = as_module(decoder)
    return {"original1": net(z1), "original2": net(z2), "hybrids": torch.stack(hybrids)}


# --------------------------------------------------------------------------------------------
# planted modules (Model 1 of Besserve et al. 2020)


def region_masks(k: int, image_size: int, tiles: int = 4, seed: int = 0) -> torch.Tensor:
    """Partition an image into ``k`` regions: ``[k, H, W]`` in {0, 1}, summing to 1 everywhere.

    The image is cut into ``tiles × tiles`` square tiles dealt to the ``k`` regions in a random
    (seeded) order, each region getting ``tiles² // k`` or one more tile: regions are scattered, so
    no two regions are neighbours by construction.
    """
    if image_size % tiles:
        raise ValueError(f"image size {image_size} is not a multiple of tiles={tiles}")
    if not 1 <= k <= tiles * tiles:
        raise ValueError(f"k must lie in [1, {tiles * tiles}], got {k}")
    owners = np.arange(tiles * tiles) % k
    owner = np.random.default_rng(seed).permutation(owners).reshape(tiles, tiles)
    side = image_size // tiles
    pixel_owner = torch.as_tensor(np.kron(owner, np.ones((side, side), dtype=np.int64)))
    return (pixel_owner[None] == torch.arange(k)[:, None, None]).float()


class PlantedModulesGenerator(nn.Module):
    """A generator with ``k`` planted modules, each owning its own image region (Model 1).

    Latent ``z = [z_1; ...; z_k]``, ``z_j: [B, latent_per_module]``. Module ``j`` is a chain of
    grouped convolutions that sees only ``z_j`` and writes only inside its region ``R_j``
    (``region_masks``, scattered tiles): ``x = sigmoid(Σ_j 1[R_j] · rgb_j)``. Named layers: ``stem`` (``[B, k*m, 4, 4]``),
    ``hidden`` (the layer whose ``k*m`` channels carry the modules: channel ``c`` belongs to module
    ``c // m``), ``up``, ``to_rgb``. Weights are random with a fixed seed (no training needed).
    """

    masks: torch.Tensor  #: ``[k, H, W]`` region of each module (a buffer)

    def __init__(
        self,
        k: int = 4,
        channels_per_module: int = 8,
        latent_per_module: int = 4,
        image_size: int = 32,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if k < 1 or image_size % 8:
            raise ValueError("need k >= 1 and an image size divisible by 8")
        self.k, self.m, self.latent_dim = k, channels_per_module, k * latent_per_module
        self.image_size = image_size
        width = k * channels_per_module
        generator = torch.Generator().manual_seed(seed)
        self.stem = nn.ConvTranspose2d(self.latent_dim, width, 4, groups=k)
        self.hidden = nn.Conv2d(width, width, 3, padding=1, groups=k)
        self.up = nn.Upsample(scale_factor=image_size // 8, mode="bilinear", align_corners=False)
        self.refine = nn.Conv2d(width, width, 3, padding=1, groups=k)
        self.to_rgb = nn.Conv2d(width, 3 * k, 3, padding=1, groups=k)
        for module in (self.stem, self.hidden, self.refine, self.to_rgb):
            fan_in = module.weight[0].numel()
            bias = module.bias
            assert bias is not None
            with torch.no_grad():
                module.weight.copy_(
                    torch.randn(module.weight.shape, generator=generator) * (2.0 / fan_in) ** 0.5
                )
                bias.copy_(0.1 * torch.randn(bias.shape, generator=generator))
        self.register_buffer("masks", region_masks(k, image_size, seed=seed))

    def true_labels(self) -> np.ndarray:
        """Module of each channel of ``hidden``: ``[k * m]``."""
        return np.repeat(np.arange(self.k), self.m)

    def sample_latents(self, n: int, seed: int | None = None) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        return torch.randn(n, self.latent_dim, generator=generator).to(self.masks.device)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.stem(z[:, :, None, None]))  # [B, k*m, 4, 4]
        h = torch.relu(
            self.hidden(nn.functional.interpolate(h, scale_factor=2.0))
        )  # [B, k*m, 8, 8]
        h = torch.relu(self.refine(self.up(h)))
        rgb = self.to_rgb(h).reshape(-1, self.k, 3, self.image_size, self.image_size)
        return torch.sigmoid((rgb * self.masks[None, :, None]).sum(dim=1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.forward(z)


# --------------------------------------------------------------------------------------------
# the pipeline ``causalscene modules`` runs

DEFAULT_KS = (2, 3, 4, 5, 6)


@dataclass
class ModulesConfig:
    """Options of one modules analysis (the CLI's flags).

    ``ks``: the K to choose from by split-half stability (one K: no choice); ``None`` means
    :data:`DEFAULT_KS` up to the layer's channel count.
    """

    layer: str
    ks: tuple[int, ...] | None = DEFAULT_KS
    pairs: int = 256
    groups: int = 8
    splits: int = 10
    hybrids: int = 4
    seed: int = 0
    batch_size: int | None = None


def parse_ks(k: int | None, k_range: str | None) -> tuple[int, ...] | None:
    """``--k K`` → ``(K,)``; ``--k-range LO:HI`` → ``(LO, ..., HI)``; neither → ``None``."""
    if k is not None and k_range is not None:
        raise ValueError("give --k or --k-range, not both")
    if k is not None:
        return (k,)
    if k_range is None:
        return None
    lo, sep, hi = k_range.partition(":")
    try:
        ks = tuple(range(int(lo), int(hi) + 1)) if sep else (int(lo),)
    except ValueError:
        raise ValueError(f"--k-range must look like 2:6, got '{k_range}'") from None
    if not ks:
        raise ValueError(f"--k-range '{k_range}' is empty")
    return ks


def layers_of_run(run: str, device: str = "auto") -> list[LayerInfo]:
    """:func:`hookable_layers` of a run folder's generator (or ``planted:K``)."""
    from causalscene.generators import load_generator
    from causalscene.tensors import resolve_device

    generator, _ = load_generator(run, str(resolve_device(device)))
    return hookable_layers(generator)


def modules_of_run(
    run: str, config: ModulesConfig, out: Path | None = None, device: str = "auto"
) -> tuple[dict[str, Any], Path]:
    """``causalscene modules RUN``: :func:`analyse_modules` of a run folder's generator (or
    ``planted:K``, or ``module:factory``: :func:`~causalscene.generators.load_generator`) into ``out`` (default ``RUN/modules-LAYER``), with ``config.json`` beside
    ``modules.json``. Returns ``(result, out)``."""
    from causalscene.generators import default_output, load_generator
    from causalscene.tensors import resolve_device
    from causalscene.utils import set_seed, write_run_info

    generator, _ = load_generator(run, str(resolve_device(device)))
    config = _with_ks(generator, config)
    set_seed(config.seed)
    out = out or default_output(run, f"modules-{config.layer}")
    result = analyse_modules(generator, config, out)
    write_run_info(out, config, seed=config.seed)
    return result, out


def _with_ks(generator: Generator, config: ModulesConfig) -> ModulesConfig:
    """``config`` with ``ks=None`` made :data:`DEFAULT_KS` up to the layer's channels."""
    if config.ks is not None:
        return config
    channels = {i.name: i.channels for i in hookable_layers(generator)}.get(config.layer, 6)
    return replace(config, ks=tuple(k for k in DEFAULT_KS if k <= channels))


def analyse_modules(generator: Generator, config: ModulesConfig, out: Path) -> dict[str, Any]:
    """Influence maps, stability over K, NMF and k-means modules, hybrids; figures + modules.json.

    The elementary influence maps of ``config.pairs`` prior latent pairs (Besserve et al. 2020,
    eq. 2) are computed per pair group (:func:`elementary_influence_maps`); K is the one given,
    or the most stable (:func:`cluster_stability`); channels are grouped by NMF (k-means beside).
    Writes ``influence_mosaic.png``, ``templates.png``, ``hybrids.png``, ``stability.png`` (when
    K was chosen), ``influence_maps.npy`` (the pair-weighted mean maps ``[C, H, W]``) and
    ``modules.json`` (the returned dict).
    """
    from sklearn.metrics import adjusted_rand_score

    from causalscene import plots
    from causalscene.utils import atomic_write_json

    check_generator(generator)
    channels, ks = _check_modules_config(generator, config)
    out.mkdir(parents=True, exist_ok=True)
    latents = generator.sample_latents(2 * config.pairs, seed=config.seed)
    z1, z2 = latents[: config.pairs], latents[config.pairs :]
    group_maps, maps = _pair_group_maps(generator, config, z1, z2, stable=len(ks) > 1)
    stability = None
    if len(ks) > 1:
        stability = cluster_stability(group_maps, ks, num_splits=config.splits, seed=config.seed)
        best_k = stability.best_k
        plots.plot_stability_curve(stability, out / "stability.png")
    else:
        best_k = ks[0]
    nmf = cluster_modules(maps, best_k, seed=config.seed)
    kmeans = cluster_modules(maps, best_k, method="kmeans", seed=config.seed)
    _module_figures(generator, config, maps, nmf, z1, z2, out)
    result = {
        "layer": config.layer,
        "channels": channels,
        "pairs": config.pairs,
        "k": best_k,
        "k_chosen_by": "stability" if stability else "given",
        "nmf_labels": nmf.labels,
        "modules": {str(j): nmf.members(j) for j in range(best_k)},
        "kmeans_labels": kmeans.labels,
        "ari_nmf_vs_kmeans": float(adjusted_rand_score(nmf.labels, kmeans.labels)),
        "stability": asdict(stability) if stability else None,
        "figures": [p.name for p in sorted(out.glob("*.png"))],
    }
    atomic_write_json(out / "modules.json", result)
    return result


def _check_modules_config(generator: Generator, config: ModulesConfig) -> tuple[int, list[int]]:
    """The layer's channel count and the K to try; ``ValueError`` for flags that cannot work."""
    if config.pairs < 1:
        raise ValueError(f"--pairs must be >= 1, got {config.pairs}")
    layers = {info.name: info for info in hookable_layers(generator)}
    if config.layer not in layers:
        raise ValueError(f"unknown layer '{config.layer}'; hookable layers: {', '.join(layers)}")
    channels = layers[config.layer].channels
    ks = list(_with_ks(generator, config).ks or ())
    if not ks:
        raise ValueError(f"{config.layer} has {channels} channels: too few for K >= 2 modules")
    for k in ks:
        if k < 2 or k > channels:
            raise ValueError(f"K must lie in [2, {channels}] (channels of {config.layer}), got {k}")
    if len(ks) > 1 and config.pairs < 2:
        raise ValueError("choosing K by stability needs --pairs >= 2")
    return channels, ks


def _pair_group_maps(
    generator: Generator, config: ModulesConfig, z1: torch.Tensor, z2: torch.Tensor, stable: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Elementary maps per pair group ``[G, C, H, W]`` (``G = 1`` unless K is chosen by
    stability) and their mean over all pairs ``[C, H, W]`` (groups weighted by their size)."""
    groups = max(2, min(config.groups, config.pairs)) if stable else 1
    group_maps = elementary_influence_maps(
        generator, config.layer, z1, z2, num_groups=groups, batch_size=config.batch_size
    )
    counts = np.bincount(np.arange(config.pairs) * groups // config.pairs, minlength=groups)
    weights = torch.as_tensor(
        counts / counts.sum(), dtype=group_maps.dtype, device=group_maps.device
    )
    return group_maps, (group_maps * weights.view(-1, 1, 1, 1)).sum(dim=0)


def _module_figures(
    generator: Generator,
    config: ModulesConfig,
    maps: torch.Tensor,
    nmf: ModuleClustering,
    z1: torch.Tensor,
    z2: torch.Tensor,
    out: Path,
) -> None:
    """Mosaic of the maps, NMF templates, hybrids of the first pairs; ``influence_maps.npy``."""
    from causalscene import plots

    n_show = min(config.hybrids, config.pairs)
    hybrids = module_hybrids(generator, config.layer, nmf, z1[:n_show], z2[:n_show])
    plots.plot_influence_mosaic(
        maps,
        out / "influence_mosaic.png",
        labels=nmf.labels,
        title=f"elementary influence maps of {config.layer}",
    )
    plots.plot_module_templates(
        nmf.templates, out / "templates.png", title=f"NMF templates, K={nmf.k}"
    )
    plots.plot_module_hybrids(hybrids, out / "hybrids.png", n=n_show)
    np.save(out / "influence_maps.npy", maps.detach().cpu().numpy())
