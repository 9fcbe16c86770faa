"""Vectorised drawing primitives: every function draws on a whole batch at once (numpy).

Conventions
-----------
* Coordinates are in *image units*: ``x`` runs left to right and ``y`` top to bottom over
  ``[0, 1]``; pixel ``(i, j)`` has its centre at ``((j + 0.5) / W, (i + 0.5) / H)``. Shapes are
  therefore resolution independent; anti-aliasing uses a one-pixel ramp.
* A *batch* of ``N`` images is drawn at once. Shape parameters are scalars or arrays of shape
  ``[N]`` (one value per image); :func:`col` turns them into ``[N, 1, 1]`` so they broadcast
  against coordinate grids ``[1, H, W]`` or ``[N, H, W]``.
* Shapes are signed distance functions (SDF, negative inside), turned into coverage in ``[0, 1]``
  by :func:`coverage` and painted with :func:`over` (premultiplied "over" compositing, Porter &
  Duff 1984), so layers can be drawn onto a transparent RGBA sprite or onto an opaque image.
* Colours are float RGB in ``[0, 1]``: a ``[3]`` array for every image, or ``[N, 3]``.

Rendering cost is dominated by full-size float passes, so the hot paths work in place on
``float32`` buffers and sample noise as ``int8`` (``numpy``'s Gaussian sampler is the slowest
operation at these sizes).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "col",
    "grid",
    "rotate",
    "sdf_circle",
    "sdf_ellipse",
    "sdf_box",
    "sdf_segment",
    "sdf_arc",
    "sdf_triangle",
    "coverage",
    "ring",
    "over",
    "new_sprites",
    "smooth_noise",
    "vertical_gradient",
    "paste_sprites",
    "add_uniform_noise",
    "to_uint8",
    "box_downsample",
    "Painter",
]

Float = np.ndarray | float


def col(value: Float) -> np.ndarray:
    """``[N]`` (or scalar) → ``[N, 1, 1]`` float32, broadcastable against ``[N, H, W]`` grids."""
    array = np.asarray(value, np.float32)
    return array.reshape(-1, 1, 1) if array.ndim else array


def grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates ``x: [1, 1, W]``, ``y: [1, H, 1]`` in image units."""
    x = ((np.arange(width, dtype=np.float32) + 0.5) / width).reshape(1, 1, width)
    y = ((np.arange(height, dtype=np.float32) + 0.5) / height).reshape(1, height, 1)
    return x, y


def rotate(x: np.ndarray, y: np.ndarray, cx: Float, cy: Float, angle: Float):
    """Coordinates turned by ``-angle`` about ``(cx, cy)``.

    Evaluating a shape at the returned coordinates draws it turned by ``+angle`` radians in the
    mathematical sense of the frame: counter-clockwise when ``y`` points up, clockwise on screen
    when ``y`` points down.
    """
    c, s = col(np.cos(angle)), col(np.sin(angle))
    dx, dy = x - col(cx), y - col(cy)
    return col(cx) + c * dx + s * dy, col(cy) - s * dx + c * dy


def sdf_circle(x, y, cx: Float, cy: Float, r: Float) -> np.ndarray:
    """Exact signed distance to a disc."""
    return np.sqrt((x - col(cx)) ** 2 + (y - col(cy)) ** 2) - col(r)


def sdf_ellipse(x, y, cx: Float, cy: Float, rx: Float, ry: Float, angle: Float = 0.0) -> np.ndarray:
    """Approximate signed distance to an ellipse (exact on the axes; first-order elsewhere)."""
    if np.any(np.asarray(angle) != 0):
        x, y = rotate(x, y, cx, cy, angle)
    rx, ry = col(rx), col(ry)
    u, v = (x - col(cx)) / rx, (y - col(cy)) / ry
    k = np.sqrt(u * u + v * v)
    # divide by the gradient norm of k so that the ramp is about one pixel wide everywhere.
    grad = np.sqrt((u / rx) ** 2 + (v / ry) ** 2) / np.maximum(k, 1e-6)
    return (k - 1.0) / np.maximum(grad, 1e-6)


def sdf_box(
    x,
    y,
    cx: Float,
    cy: Float,
    half_w: Float,
    half_h: Float,
    angle: Float = 0.0,
    radius: Float = 0.0,
) -> np.ndarray:
    """Signed distance to a (rotated, optionally rounded) rectangle."""
    if np.any(np.asarray(angle) != 0):
        x, y = rotate(x, y, cx, cy, angle)
    r = col(radius)
    qx = np.abs(x - col(cx)) - col(half_w) + r
    qy = np.abs(y - col(cy)) - col(half_h) + r
    outside = np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2)
    return outside + np.minimum(np.maximum(qx, qy), 0) - r


def sdf_segment(
    x, y, ax: Float, ay: Float, bx: Float, by: Float, ra: Float, rb: Float | None = None
):
    """Signed distance to a capsule from ``a`` to ``b`` whose radius goes from ``ra`` to ``rb``
    (a limb, a horn, a weapon). Linear radius interpolation along the projection (approximate
    for strongly tapered capsules, exact for constant radius)."""
    ax, ay, bx, by = col(ax), col(ay), col(bx), col(by)
    px, py = x - ax, y - ay
    ex, ey = bx - ax, by - ay
    h = np.clip((px * ex + py * ey) / np.maximum(ex * ex + ey * ey, 1e-12), 0.0, 1.0)
    d = np.sqrt((px - ex * h) ** 2 + (py - ey * h) ** 2)
    radius = col(ra) if rb is None else col(ra) + (col(rb) - col(ra)) * h
    return d - radius


def sdf_arc(
    x, y, cx: Float, cy: Float, r: Float, start: Float, stop: Float, width: Float
) -> np.ndarray:
    """Signed distance to a stroked circular arc (a smile, a wrinkle, an eyebrow).

    Angles in radians from +x towards +y (downwards on screen), ``start < stop``, spanning less
    than a full turn; the stroke has half-width ``width`` and round ends.
    """
    cx, cy, r = col(cx), col(cy), col(r)
    dx, dy = x - cx, y - cy
    theta = np.arctan2(dy, dx)
    start, stop = col(start), col(stop)
    mid, half = (start + stop) / 2, (stop - start) / 2
    rel = np.abs(np.mod(theta - mid + np.pi, 2 * np.pi) - np.pi)
    on_arc = np.abs(np.sqrt(dx * dx + dy * dy) - r)
    ends = []
    for angle in (start, stop):
        ex, ey = cx + r * np.cos(angle), cy + r * np.sin(angle)
        ends.append(np.sqrt((x - ex) ** 2 + (y - ey) ** 2))
    d = np.where(rel <= half, on_arc, np.minimum(ends[0], ends[1]))
    return d - col(width)


def sdf_triangle(x, y, p0, p1, p2) -> np.ndarray:
    """Signed distance (exact outside near edges, a lower bound inside) to a triangle.

    ``p0, p1, p2`` are ``(x, y)`` pairs of scalars or ``[N]`` arrays.
    """
    pts = [(col(px), col(py)) for px, py in (p0, p1, p2)]
    # orientation, so that "inside" is on the same side of every edge
    (x0, y0), (x1, y1), (x2, y2) = pts
    sign = np.sign((x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0))
    sign = np.where(sign == 0, 1.0, sign).astype(np.float32)
    dist, inside = None, None
    for (ax, ay), (bx, by) in zip(pts, pts[1:] + pts[:1]):
        ex, ey = bx - ax, by - ay
        length = np.sqrt(ex * ex + ey * ey) + 1e-12
        side = sign * ((x - ax) * ey - (y - ay) * ex) / length  # > 0 outside this edge
        seg = sdf_segment(x, y, ax, ay, bx, by, 0.0)
        dist = seg if dist is None else np.minimum(dist, seg)
        inside = side if inside is None else np.maximum(inside, side)
    return np.where(inside <= 0, -dist, dist)


def coverage(sdf: np.ndarray, pixel: Float) -> np.ndarray:
    """Anti-aliased coverage in ``[0, 1]``: a linear ramp one pixel (``pixel`` units) wide."""
    cov = 0.5 - sdf / col(pixel)
    np.clip(cov, 0.0, 1.0, out=cov)
    return cov.astype(np.float32, copy=False)


def ring(sdf: np.ndarray, half_width: Float) -> np.ndarray:
    """The outline of a shape: ``|sdf| - half_width`` (glasses frames, wrinkles)."""
    return np.abs(sdf) - col(half_width)


def _colour(color, n: int) -> np.ndarray:
    color = np.asarray(color, np.float32)
    if color.ndim == 1:
        color = np.broadcast_to(color, (n, color.shape[0]))
    return color.reshape(n, 1, 1, -1)


def over(
    rgb: np.ndarray, alpha: np.ndarray | None, cov: np.ndarray, color, opacity: Float = 1.0
) -> None:
    """Paint ``color`` with coverage ``cov`` over a batch, in place (premultiplied "over").

    Args:
        rgb: ``[N, H, W, 3]`` float32 premultiplied colour (an opaque image when ``alpha`` is None).
        alpha: ``[N, H, W]`` float32 accumulated opacity of a sprite, or None.
        cov: ``[N, H, W]`` (or broadcastable) coverage of the new layer.
        color: ``[3]`` or ``[N, 3]`` RGB in [0, 1].
        opacity: scalar or ``[N]`` multiplier of the coverage (0 hides the layer in that image).
    """
    n = rgb.shape[0]
    a = np.broadcast_to(cov * col(opacity), rgb.shape[:3])
    a4 = a[..., None]
    # rgb <- rgb (1 - a) + a c, with one temporary
    delta = _colour(color, n) - rgb
    delta *= a4
    rgb += delta
    if alpha is not None:
        alpha += a * (1.0 - alpha)


def new_sprites(n: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A transparent batch: premultiplied rgb ``[n, H, W, 3]`` and alpha ``[n, H, W]``."""
    return np.zeros((n, height, width, 3), np.float32), np.zeros((n, height, width), np.float32)


def smooth_noise(rng: np.random.Generator, n: int, height: int, width: int, cells: int = 4):
    """Smooth value noise ``[n, H, W]`` in about ``[-1, 1]``: a ``cells × cells`` random lattice
    per image, bilinearly interpolated as two small matrix products (cheap at any size)."""
    lattice = rng.uniform(-1.0, 1.0, size=(n, cells + 1, cells + 1)).astype(np.float32)
    ry = _interp_matrix(height, cells)
    rx = _interp_matrix(width, cells)
    return np.einsum("hc,ncd,wd->nhw", ry, lattice, rx, optimize=True).astype(np.float32)


def _interp_matrix(size: int, cells: int) -> np.ndarray:
    pos = (np.arange(size, dtype=np.float32) + 0.5) / size * cells
    lo = np.clip(np.floor(pos).astype(int), 0, cells - 1)
    frac = pos - lo
    m = np.zeros((size, cells + 1), np.float32)
    m[np.arange(size), lo] = 1.0 - frac
    m[np.arange(size), lo + 1] = frac
    return m


def vertical_gradient(top, bottom, height: int, width: int, split: Float = 1.0) -> np.ndarray:
    """Opaque ``[N, H, W, 3]`` background: ``top`` → ``bottom`` colour over ``y ∈ [0, split]``."""
    top, bottom = np.asarray(top, np.float32), np.asarray(bottom, np.float32)
    n = max(top.shape[0] if top.ndim == 2 else 1, bottom.shape[0] if bottom.ndim == 2 else 1)
    _, y = grid(height, width)
    t = np.clip(y / col(split), 0.0, 1.0)[..., None]  # [N or 1, H, 1, 1]
    out = _colour(top, n) * (1.0 - t) + _colour(bottom, n) * t
    return np.ascontiguousarray(np.broadcast_to(out, (n, height, width, 3)), dtype=np.float32)


def paste_sprites(
    canvas: np.ndarray,
    sprite_rgb: np.ndarray,
    sprite_alpha: np.ndarray,
    which: np.ndarray,
    top: np.ndarray,
    left: np.ndarray,
    gain: np.ndarray | None = None,
) -> None:
    """Composite one sprite per image into ``canvas`` at integer offsets, in place.

    The canvas has one *spare* last row and column, which the caller discards: sprite pixels
    that fall outside the real ``[H - 1, W - 1]`` area are sent there, so sprites may be cut by
    the image border at any offset (batched scatter without per-image clipping).

    Args:
        canvas: ``[N, H, W, 3]`` float32 opaque images (the last row and column are spare).
        sprite_rgb, sprite_alpha: a bank of ``[K, h, w, 3]`` premultiplied sprites and ``[K, h, w]``.
        which: ``[N]`` index into the bank; ``top``, ``left``: ``[N]`` integer offsets (any).
        gain: optional ``[N]`` brightness multiplier of the sprite's colour (lighting nuisance).
    """
    n, height, width = canvas.shape[:3]
    h, w = sprite_alpha.shape[1:]
    rows = np.asarray(top)[:, None] + np.arange(h)  # [N, h]
    cols = np.asarray(left)[:, None] + np.arange(w)  # [N, w]
    rows = np.where((rows >= 0) & (rows < height - 1), rows, height - 1)
    cols = np.where((cols >= 0) & (cols < width - 1), cols, width - 1)
    # flat pixel indices [N, h, w]: one 1-D gather and one 1-D scatter
    flat = ((np.arange(n)[:, None] * height + rows) * width)[:, :, None] + cols[:, None, :]
    pixels = canvas.reshape(-1, 3)
    region = pixels[flat]  # [N, h, w, 3] (a copy)
    rgb = sprite_rgb[which]
    if gain is not None:
        rgb *= col(gain)[..., None]
    region *= 1.0 - sprite_alpha[which][..., None]
    region += rgb
    pixels[flat] = region


def add_uniform_noise(images: np.ndarray, rng: np.random.Generator, amplitude: Float) -> None:
    """Add per-pixel noise, uniform on ``±amplitude`` (per image ``[N]`` or scalar), in place.

    Sampled as int8 (fast) and scaled; the distribution is uniform on 255 levels.
    """
    noise = rng.integers(-127, 128, size=images.shape, dtype=np.int8).astype(np.float32)
    noise *= (col(amplitude) / 127.0)[..., None] if np.ndim(amplitude) else amplitude / 127.0
    images += noise


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Float images in [0, 1] → uint8 (rounded, clipped); modifies ``images``."""
    images *= 255.0
    images += 0.5
    np.clip(images, 0.0, 255.0, out=images)
    return images.astype(np.uint8)


def box_downsample(images: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor × factor`` blocks of ``[N, H, W, ...]`` (exact area anti-aliasing)."""
    if factor == 1:
        return images
    n, h, w = images.shape[:3]
    rest = images.shape[3:]
    view = images.reshape(n, h // factor, factor, w // factor, factor, *rest)
    return view.mean(axis=(2, 4))


class Painter:
    """Draws shapes onto a batch, evaluating each one only where it can have an effect.

    The coordinate grids must be separable and monotone: ``x: [N or 1, 1, W]`` and
    ``y: [N or 1, H, 1]`` (a per-image scale and offset of :func:`grid` is). Each shape is given
    a bounding box from its parameters, so it is evaluated on the union (over the batch) of the
    rows and columns it can touch; a shape whose ``opacity`` is zero for most images is evaluated
    on the other images only. The result equals painting every shape over the whole batch.

    Args:
        rgb: ``[N, H, W, 3]`` float32 (premultiplied if ``alpha`` is given), painted in place.
        alpha: ``[N, H, W]`` float32 or None (opaque target).
        x, y: coordinate grids as above; ``pixel``: the size of a pixel in those units
            (scalar or ``[N]``), which sets the anti-aliasing ramp.
    """

    def __init__(self, rgb, alpha, x, y, pixel):
        self.rgb, self.alpha = rgb, alpha
        self.x, self.y = x, y
        self.n = rgb.shape[0]
        self.pixel = np.broadcast_to(np.asarray(pixel, np.float32), (self.n,))

    # -- shapes --------------------------------------------------------------------------
    def circle(self, cx, cy, r, color, opacity: Float = 1.0) -> None:
        box = (_sub(cx, r), _add(cx, r), _sub(cy, r), _add(cy, r))
        self.shape(sdf_circle, (cx, cy, r), box, color, opacity)

    def ellipse(self, cx, cy, rx, ry, color, opacity: Float = 1.0, angle: Float = 0.0) -> None:
        big = np.maximum(rx, ry)
        box = (_sub(cx, big), _add(cx, big), _sub(cy, big), _add(cy, big))
        self.shape(sdf_ellipse, (cx, cy, rx, ry, angle), box, color, opacity)

    def box(
        self,
        cx,
        cy,
        half_w,
        half_h,
        color,
        opacity: Float = 1.0,
        angle: Float = 0.0,
        radius: Float = 0.0,
    ) -> None:
        reach = np.hypot(half_w, half_h)
        bounds = (_sub(cx, reach), _add(cx, reach), _sub(cy, reach), _add(cy, reach))
        self.shape(sdf_box, (cx, cy, half_w, half_h, angle, radius), bounds, color, opacity)

    def segment(self, ax, ay, bx, by, ra, rb=None, *, color, opacity: Float = 1.0) -> None:
        r = ra if rb is None else np.maximum(ra, rb)
        bounds = (
            _sub(np.minimum(ax, bx), r),
            _add(np.maximum(ax, bx), r),
            _sub(np.minimum(ay, by), r),
            _add(np.maximum(ay, by), r),
        )
        rb = ra if rb is None else rb
        self.shape(sdf_segment, (ax, ay, bx, by, ra, rb), bounds, color, opacity)

    def triangle(self, p0, p1, p2, color, opacity: Float = 1.0) -> None:
        xs, ys = (p0[0], p1[0], p2[0]), (p0[1], p1[1], p2[1])
        bounds = (
            np.minimum(np.minimum(xs[0], xs[1]), xs[2]),
            np.maximum(np.maximum(xs[0], xs[1]), xs[2]),
            np.minimum(np.minimum(ys[0], ys[1]), ys[2]),
            np.maximum(np.maximum(ys[0], ys[1]), ys[2]),
        )
        fn = lambda x, y, a, b, c, d, e, f: sdf_triangle(x, y, (a, b), (c, d), (e, f))  # noqa: E731
        self.shape(fn, (*p0, *p1, *p2), bounds, color, opacity)

    def arc(self, cx, cy, r, start, stop, width, color, opacity: Float = 1.0) -> None:
        reach = _add(r, width)
        bounds = (_sub(cx, reach), _add(cx, reach), _sub(cy, reach), _add(cy, reach))
        self.shape(sdf_arc, (cx, cy, r, start, stop, width), bounds, color, opacity)

    def ring_circle(self, cx, cy, r, half_width, color, opacity: Float = 1.0) -> None:
        """The outline of a circle (glasses' rims)."""
        reach = _add(r, half_width)
        bounds = (_sub(cx, reach), _add(cx, reach), _sub(cy, reach), _add(cy, reach))
        fn = lambda x, y, a, b, c, w: ring(sdf_circle(x, y, a, b, c), w)  # noqa: E731
        self.shape(fn, (cx, cy, r, half_width), bounds, color, opacity)

    # -- the general case ----------------------------------------------------------------
    def shape(self, sdf_fn, params, bounds, color, opacity: Float = 1.0) -> None:
        """Paint ``sdf_fn(x, y, *params)`` whose inside lies within ``bounds``
        ``(x_lo, x_hi, y_lo, y_hi)`` (scalars or ``[N]``)."""
        opacity_arr = np.broadcast_to(np.asarray(opacity, np.float32), (self.n,))
        chosen = np.flatnonzero(opacity_arr > 0)
        if chosen.size == 0:
            return
        subset = chosen.size < 0.6 * self.n
        pick = (lambda v: _take(v, chosen, self.n)) if subset else (lambda v: v)
        x = self.x[chosen] if subset and self.x.shape[0] == self.n else self.x
        y = self.y[chosen] if subset and self.y.shape[0] == self.n else self.y
        pixel = self.pixel[chosen] if subset else self.pixel
        margin = col(pixel)
        x_lo, x_hi, y_lo, y_hi = (col(pick(np.broadcast_to(b, (self.n,)))) for b in bounds)
        cols = (
            (x >= np.minimum(x_lo, x_hi) - margin) & (x <= np.maximum(x_lo, x_hi) + margin)
        ).any(axis=(0, 1))
        rows = (
            (y >= np.minimum(y_lo, y_hi) - margin) & (y <= np.maximum(y_lo, y_hi) + margin)
        ).any(axis=(0, 2))
        c_idx, r_idx = np.flatnonzero(cols), np.flatnonzero(rows)
        if c_idx.size == 0 or r_idx.size == 0:
            return
        c0, c1, r0, r1 = c_idx[0], c_idx[-1] + 1, r_idx[0], r_idx[-1] + 1
        sdf = sdf_fn(x[..., c0:c1], y[:, r0:r1, :], *(pick(p) for p in params))
        cov = coverage(sdf, pixel)
        color = np.asarray(color, np.float32)
        if color.ndim == 2:
            color = pick(color)
        if subset:
            rgb = self.rgb[chosen, r0:r1, c0:c1]
            alpha = None if self.alpha is None else self.alpha[chosen, r0:r1, c0:c1]
            over(rgb, alpha, cov, color, opacity_arr[chosen])
            self.rgb[chosen, r0:r1, c0:c1] = rgb
            if alpha is not None:
                self.alpha[chosen, r0:r1, c0:c1] = alpha
        else:
            alpha = None if self.alpha is None else self.alpha[:, r0:r1, c0:c1]
            over(self.rgb[:, r0:r1, c0:c1], alpha, cov, color, opacity_arr)


def _add(a, b):
    return np.add(a, b)


def _sub(a, b):
    return np.subtract(a, b)


def _take(value, index: np.ndarray, n: int):
    array = np.asarray(value)
    if array.ndim >= 1 and array.shape[0] == n:
        return array[index]
    return value
