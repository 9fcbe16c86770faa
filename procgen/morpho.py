"""Thickness → intensity digits (``dags/morpho.yaml``), after Morpho-MNIST.

Castro et al., "Morpho-MNIST: quantitative assessment and diagnostics for representation
learning", JMLR 20(178), 2019: the stroke thickness of a real handwritten digit is set by
morphological dilation or erosion of its binarised image at 4× upsampled resolution
(``SetThickness``: radius ``|target - current| / 2``), the image is reduced back, and its
intensity is scaled so that the median of its stroke pixels hits a target (``SetIntensity``).
Thickness is measured as Morpho-MNIST does: ``2 × mean(distance map on the skeleton) / 4`` on the
4× upsampled, half-range-thresholded image (section 3.1 of the paper).

Here the DAG's discrete states are turned into continuous targets: ``thin`` → U(1.2, 2.2) px,
``thick`` → U(3.4, 4.6) px (at 28 px; proportional at other sizes); ``dim`` → median stroke
intensity U(95, 150), ``bright`` → U(195, 250) (of 255). The measured thickness and intensity of
every final image are stored beside the labels (``thickness_measured`` in pixels of the output
image, ``intensity_measured`` in 0-255).

Digits come from scikit-learn's bundled ``load_digits()`` (1,797 digits of 8 × 8, offline) by
default, or from MNIST idx files given as ``mnist=PATH`` (the images file, ``.gz`` or not; the
labels file is found beside it). Differences from Morpho-MNIST, stated: the skeleton is a
Zhang-Suen thinning (Morpho-MNIST uses ``skimage``'s ``medial_axis``; ``skimage`` is not a
dependency); disks have real-valued radii (thresholds of the Euclidean distance map) instead of
integer ones; when erosion would break a stroke, the skeleton dilated to the target is added so
the digit stays connected.

Nuisance: the digit's position, size and slant (affine jitter), background level and texture,
pixel noise. Images are grey, stored as three equal channels.
"""

from __future__ import annotations

import gzip
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage

from . import render as R

DAG_FILE = "morpho.yaml"
MIN_SIZE = 16
DEFAULT_SIZE = 28
UPSCALE = 4
EXTRAS = {
    "thickness_measured": "mean stroke thickness in output pixels (Morpho-MNIST measure)",
    "intensity_measured": "median intensity (0-255) of stroke pixels of the output image",
}
THICKNESS_RANGES = ((1.2, 2.2), (3.4, 4.6))  # thin, thick; pixels at 28 px
INTENSITY_RANGES = ((95.0, 150.0), (195.0, 250.0))  # dim, bright
SUB_BATCH = 128


# ------------------------------------------------------------------------------ sources
@lru_cache(maxsize=4)
def load_source(mnist: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Source digits: ``(images float32 [M, h, w] in [0, 1], digit int64 [M])``."""
    if mnist is None:
        from sklearn.datasets import load_digits

        data = load_digits()
        return (data.images / 16.0).astype(np.float32), data.target.astype(np.int64)
    images_path = Path(mnist)
    if images_path.is_dir():
        candidates = sorted(images_path.glob("*images*idx3*"))
        if not candidates:
            raise FileNotFoundError(f"--mnist {mnist}: no '*images*idx3*' file in that folder")
        images_path = candidates[0]
    if not images_path.is_file():
        raise FileNotFoundError(f"--mnist {mnist}: file not found")
    name = images_path.name
    if "images" not in name or "idx3" not in name:
        raise ValueError(
            f"--mnist {mnist}: expected an MNIST images file named like train-images-idx3-ubyte[.gz]"
        )
    labels_path = images_path.with_name(name.replace("images", "labels").replace("idx3", "idx1"))
    if not labels_path.is_file():
        raise FileNotFoundError(f"--mnist: labels file {labels_path} not found beside the images")
    images = read_idx(images_path)
    digits = read_idx(labels_path)
    if images.ndim != 3 or digits.ndim != 1 or len(images) != len(digits):
        raise ValueError(
            f"--mnist: {images_path} and {labels_path} do not form an image/label pair"
        )
    if digits.min() < 0 or digits.max() > 9:
        raise ValueError(f"--mnist: labels in {labels_path} are not digits 0-9")
    return (images / 255.0).astype(np.float32), digits.astype(np.int64)


def read_idx(path: str | Path, max_bytes: int = 1 << 31) -> np.ndarray:
    """Read an IDX file (LeCun's MNIST format), gzipped or not; unsigned-byte data only."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        header = handle.read(4)
        if len(header) != 4 or header[0] != 0 or header[1] != 0:
            raise ValueError(f"{path}: not an IDX file (bad magic number)")
        if header[2] != 0x08:
            raise ValueError(
                f"{path}: IDX data type 0x{header[2]:02x} unsupported (need unsigned byte)"
            )
        ndim = header[3]
        dims = [int.from_bytes(handle.read(4), "big") for _ in range(ndim)]
        total = int(np.prod(dims)) if dims else 0
        if total > max_bytes:
            raise ValueError(f"{path}: {total} bytes announced, above the limit")
        data = handle.read(total)
    if len(data) != total:
        raise ValueError(f"{path}: truncated (expected {total} bytes, got {len(data)})")
    return np.frombuffer(data, np.uint8).reshape(dims)


def check_options(size: int, mnist: str | Path | None = None) -> dict:
    """Validate generator options early (before any output is staged)."""
    if mnist is None:
        return {}
    load_source(str(mnist))
    return {"mnist": str(mnist)}


# --------------------------------------------------------------------------- morphology
def _zhang_suen_tables() -> tuple[np.ndarray, np.ndarray]:
    """Deletion look-up tables of the two Zhang-Suen sub-iterations, indexed by the 8-neighbour
    code ``sum(P_k << (k - 2))`` with P2..P9 = N, NE, E, SE, S, SW, W, NW (Zhang & Suen 1984)."""
    first, second = np.zeros(256, bool), np.zeros(256, bool)
    for code in range(256):
        p = [(code >> k) & 1 for k in range(8)]  # p[0] = P2 ... p[7] = P9
        b = sum(p)
        a = sum(1 for k in range(8) if p[k] == 0 and p[(k + 1) % 8] == 1)
        if not (2 <= b <= 6 and a == 1):
            continue
        p2, p4, p6, p8 = p[0], p[2], p[4], p[6]
        first[code] = p2 * p4 * p6 == 0 and p4 * p6 * p8 == 0
        second[code] = p2 * p4 * p8 == 0 and p2 * p6 * p8 == 0
    return first, second


_TABLES = _zhang_suen_tables()
_OFFSETS = ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))


def skeletonize(binary: np.ndarray, max_iter: int = 500) -> np.ndarray:
    """Zhang-Suen thinning of a batch ``[n, H, W]`` of binary images, vectorised over the batch.

    Works on the bounding box of all foreground pixels and, after each pass, only on the images
    that still changed.
    """
    binary = np.asarray(binary, bool)
    out = np.zeros_like(binary)
    rows, cols = np.flatnonzero(binary.any(axis=(0, 2))), np.flatnonzero(binary.any(axis=(0, 1)))
    if rows.size == 0:
        return out
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    image = np.pad(binary[:, r0:r1, c0:c1], ((0, 0), (1, 1), (1, 1))).astype(np.uint8)
    h, w = r1 - r0, c1 - c0
    active = np.arange(len(binary))
    for _ in range(max_iter):
        if active.size == 0:
            break
        work = image[active]
        changed = np.zeros(len(active), bool)
        for table in _TABLES:
            code = np.zeros((len(active), h, w), np.uint8)
            for bit, (dy, dx) in enumerate(_OFFSETS):
                code |= work[:, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] << bit
            inner = work[:, 1:-1, 1:-1]
            delete = table[code] & (inner == 1)
            changed |= delete.any(axis=(1, 2))
            inner[delete] = 0
        image[active] = work
        active = active[changed]
    out[:, r0:r1, c0:c1] = image[:, 1:-1, 1:-1].astype(bool)
    return out


def distance_inside(binary: np.ndarray) -> np.ndarray:
    """Euclidean distance of every foreground pixel to the background, per image ``[n, H, W]``."""
    return np.stack([ndimage.distance_transform_edt(b) for b in binary]).astype(np.float32)


def mean_thickness(
    binary: np.ndarray, scale: int, skeleton: np.ndarray | None = None
) -> np.ndarray:
    """Morpho-MNIST's thickness: ``2 × mean(distance map on the skeleton) / scale`` per image."""
    skeleton = skeletonize(binary) if skeleton is None else skeleton
    distance = distance_inside(binary)
    total = (distance * skeleton).sum(axis=(1, 2))
    count = skeleton.sum(axis=(1, 2))
    return np.where(count > 0, 2.0 * total / np.maximum(count, 1) / scale, 0.0)


def measure(images: np.ndarray, scale: int = UPSCALE) -> tuple[np.ndarray, np.ndarray]:
    """Measured ``(thickness [n] in pixels, intensity [n] in 0-255)`` of grey images ``[n, H, W]``.

    As Morpho-MNIST: upsample ``scale``× (cubic), threshold at half the image's range, thickness
    from skeleton and distance map; intensity = median of the thresholded pixels (native size).
    """
    grey = np.asarray(images, np.float32)
    # one image at a time: a 3-D zoom would also run the spline filter across the batch axis
    up = np.stack([ndimage.zoom(g, scale, order=3) for g in grey])
    lo = up.min(axis=(1, 2), keepdims=True)
    hi = up.max(axis=(1, 2), keepdims=True)
    thickness = mean_thickness(up >= lo + 0.5 * (hi - lo), scale)
    lo_n = grey.min(axis=(1, 2), keepdims=True)
    hi_n = grey.max(axis=(1, 2), keepdims=True)
    mask = grey >= lo_n + 0.5 * (hi_n - lo_n)
    intensity = np.array([np.median(g[m]) if m.any() else 0.0 for g, m in zip(grey, mask)])
    return thickness.astype(np.float32), intensity.astype(np.float32)


def set_thickness(binary: np.ndarray, target: np.ndarray, scale: int) -> np.ndarray:
    """Morpho-MNIST ``SetThickness`` on binary upsampled images: dilate or erode by
    ``radius = scale × |target - current| / 2`` (Euclidean disks via distance maps)."""
    skeleton = skeletonize(binary)
    current = mean_thickness(binary, scale, skeleton)
    radius = (scale * np.abs(target - current) / 2.0).astype(np.float32)
    out = np.empty_like(binary)
    for i, (b, r) in enumerate(zip(binary, radius)):
        if target[i] >= current[i]:
            out[i] = ndimage.distance_transform_edt(~b) <= r
        else:
            eroded = ndimage.distance_transform_edt(b) > r
            # keep the stroke connected where erosion would cut it: the skeleton dilated to the
            # target (a 1-pixel line dilated by ρ measures 2(ρ + 1) / scale)
            core = ndimage.distance_transform_edt(~skeleton[i]) <= max(
                scale * target[i] / 2.0 - 1.0, 0.0
            )
            out[i] = eroded | (core & b)
    return out


# ------------------------------------------------------------------------------ render
def _place(
    sources: np.ndarray, which: np.ndarray, hires: int, rng: np.random.Generator
) -> np.ndarray:
    """Affine-warp chosen source digits onto ``[n, hires, hires]`` (cubic, per-image jitter)."""
    n = len(which)
    src_h, src_w = sources.shape[1:]
    stack = sources[which]
    # the source's ink box (rows/cols with ink) is mapped onto ~74% of the output height
    ink = stack > 0.25
    rows_any, cols_any = ink.any(axis=2), ink.any(axis=1)
    r0 = np.argmax(rows_any, axis=1)
    r1 = src_h - np.argmax(rows_any[:, ::-1], axis=1)
    c0 = np.argmax(cols_any, axis=1)
    c1 = src_w - np.argmax(cols_any[:, ::-1], axis=1)
    box_h = np.maximum(r1 - r0, 1).astype(np.float32)
    centre_r = (r0 + r1) / 2.0 - 0.5
    centre_c = (c0 + c1) / 2.0 - 0.5
    target_h = hires * 0.74 * rng.uniform(0.9, 1.05, n)
    zoom = box_h / target_h  # source pixels per output pixel
    angle = rng.uniform(-0.2, 0.2, n)
    shear = rng.uniform(-0.15, 0.15, n)
    shift = rng.uniform(-0.07, 0.07, (2, n)) * hires
    out_r, out_c = np.meshgrid(
        np.arange(hires, dtype=np.float32), np.arange(hires, dtype=np.float32), indexing="ij"
    )
    dr = out_r[None] - (hires - 1) / 2.0 - shift[0][:, None, None]
    dc = out_c[None] - (hires - 1) / 2.0 - shift[1][:, None, None]
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    z, sh = zoom[:, None, None], shear[:, None, None]
    src_r = centre_r[:, None, None] + z * (cos * dr - sin * dc)
    src_c = centre_c[:, None, None] + z * (sin * dr + cos * dc + sh * dr)
    out = np.stack(
        [
            ndimage.map_coordinates(image, [r, c], order=3, mode="constant", cval=0.0)
            for image, r, c in zip(stack, src_r, src_c)
        ]
    )
    return out.astype(np.float32)


def render(labels, size: int, rng: np.random.Generator, dag=None, mnist: str | None = None):
    """Digits for ``{digit, thickness, intensity: int codes [n]}``; returns
    ``(uint8 [n, size, size, 3], {"thickness_measured": [n], "intensity_measured": [n]})``."""
    if size < 16:
        raise ValueError(f"morpho: image size must be at least 16 pixels, got {size}")
    digit = np.asarray(labels["digit"])
    thick = np.asarray(labels["thickness"])
    bright = np.asarray(labels["intensity"])
    n = len(digit)
    sources, source_digit = load_source(None if mnist is None else str(mnist))
    members = [np.flatnonzero(source_digit == d) for d in range(10)]
    for d in np.unique(digit):
        if members[d].size == 0:
            raise ValueError(f"morpho: no source image of digit {d}")
    pick = np.array([members[d][rng.integers(members[d].size)] for d in digit], np.int64)
    ranges = np.array(THICKNESS_RANGES, np.float32)[thick]
    target_thickness = rng.uniform(ranges[:, 0], ranges[:, 1]) * size / 28.0
    ranges = np.array(INTENSITY_RANGES, np.float32)[bright]
    target_intensity = rng.uniform(ranges[:, 0], ranges[:, 1])
    background = rng.uniform(0.0, 30.0, n).astype(np.float32)
    noise = rng.uniform(0.0, 8.0, n).astype(np.float32)
    images = np.empty((n, size, size), np.float32)
    for start in range(0, n, SUB_BATCH):
        part = slice(start, min(n, start + SUB_BATCH))
        hires = _place(sources, pick[part], size * UPSCALE, rng)
        lo = hires.min(axis=(1, 2), keepdims=True)
        hi = hires.max(axis=(1, 2), keepdims=True)
        binary = hires >= lo + 0.5 * (hi - lo)
        shaped = set_thickness(binary, target_thickness[part], UPSCALE)
        grey = R.box_downsample(shaped.astype(np.float32), UPSCALE)  # area anti-aliasing
        # SetIntensity: scale so that the median of the stroke pixels is the target
        mask = grey >= 0.5
        median = np.array(
            [np.median(g[m]) if m.any() else 1.0 for g, m in zip(grey, mask)], np.float32
        )
        images[part] = np.clip(grey * (target_intensity[part] / median)[:, None, None], 0, 255)
    # nuisance: background level and texture, pixel noise (the digit stays on top)
    texture = R.smooth_noise(rng, n, size, size, cells=3) * 6.0
    base = R.col(background) + texture
    images = np.maximum(images, base)
    images += (rng.uniform(-1.0, 1.0, images.shape).astype(np.float32)) * R.col(noise)
    out = np.clip(np.round(images), 0, 255).astype(np.uint8)
    thickness, intensity = measure(out.astype(np.float32))
    return np.repeat(out[..., None], 3, axis=-1), {
        "thickness_measured": thickness,
        "intensity_measured": intensity,
    }


def caption(labels) -> str:
    return f"{labels['digit']} {labels['thickness']}\n{labels['intensity']}"


def prepare(size: int, mnist: str | None = None) -> None:
    """Load the source digits once, before worker processes fork (they share them)."""
    load_source(None if mnist is None else str(mnist))
