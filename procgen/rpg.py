"""The fight scene of the causal scene generation tutorial (``dags/rpg_fight.yaml``).

An *actor* on the left faces a *reactor* on the right. What is drawn, per rendered node:

========================  =====================================================================
node                      picture
========================  =====================================================================
``actor``, ``reactor``    satyr (slim, horned head, goat legs, spear) or golem (bulky blocky
                          stone body, small square head with glowing eyes, stone club)
``actor_type``,           palette and detail: satyr type1 brown fur, type2 white fur + beard,
``reactor_type``          type3 black fur, red skin, big horns + tail; golem type1 grey stone,
                          type2 green stone with moss, type3 sandstone with glowing cracks
``action`` (actor)        attack: weapon thrust forward (lunge); taunt: both arms raised;
                          walk: mid-stride, arms swinging
``reaction`` (reactor)    dying: collapsed on the ground; hurt: recoiling, with a yellow hit
                          flash; idle: standing; attack: weapon thrust forward
========================  =====================================================================

Hidden nodes (strength, defense, attack skill) are never drawn: :func:`render` only reads the
rendered nodes, so they reach the image through ``action`` and ``reaction`` alone.

Nuisance (the continuous variation a VAE latent can model): horizontal and vertical position of
each figure, figure scale (7 levels, 0.88-1.12), two pose variants of every combination (small
limb and weapon angle changes), lighting of each figure, sky and ground colours, horizon height,
ground texture and pixel noise.

Speed: every (creature, type, pose, scale, variant) figure is rendered once per image size as an
anti-aliased sprite (2× supersampled) with the vectorised primitives of :mod:`.render`;
a batch of scenes is then a background pass plus two batched sprite pastes.
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import numpy as np

from . import render as R

DAG_FILE = "rpg_fight.yaml"
MIN_SIZE = 24
DEFAULT_SIZE = 64

CREATURES = ("satyr", "golem")
TYPES = ("type1", "type2", "type3")
POSES = ("attack", "taunt", "walk", "dying", "hurt", "idle")
SCALES = np.linspace(0.88, 1.12, 7)
VARIANTS = 2
#: figure height (feet to top of head) at scale 1, as a fraction of the image height
FIGURE_HEIGHT = 0.42
#: sprite extent in figure heights: x from -BACK to +FRONT, y from -BELOW to +ABOVE
BACK, FRONT, BELOW, ABOVE = 0.58, 0.80, 0.08, 1.35
SUPERSAMPLE = 2

# pose table: lean (forward +), front/back leg swing, front arm upper/lower, back arm upper/lower,
# weapon angle. Angles in radians from straight down, positive towards the front (+x).
_P = np.pi
POSE_TABLE = {
    #         lean  legF  legB  armF1  armF2  armB1  armB2  weapon
    "attack": (0.25, 0.60, -0.40, 1.50, 1.57, -0.70, -0.30, 1.57),
    "taunt": (-0.08, 0.25, -0.25, _P - 0.6, _P - 0.3, -(_P - 0.6), -(_P - 0.3), _P - 0.3),
    "walk": (0.06, 0.75, -0.70, -0.60, -0.30, 0.60, 0.95, 2.40),
    "dying": (0.0, 0.06, -0.06, 0.35, 0.55, -0.25, 0.10, 1.57),
    "hurt": (-0.42, 0.32, -0.05, 1.95, 2.40, -1.90, -2.30, -2.30),
    "idle": (0.0, 0.07, -0.07, 0.12, 0.35, -0.10, 0.08, _P - 0.06),
}

# palettes [type] -> colour
SATYR_FUR = np.array([[0.47, 0.29, 0.12], [0.92, 0.91, 0.87], [0.10, 0.08, 0.08]], np.float32)
SATYR_SKIN = np.array([[0.88, 0.68, 0.48], [0.98, 0.84, 0.80], [0.82, 0.20, 0.16]], np.float32)
SATYR_HORN = np.array([[0.93, 0.88, 0.72], [0.40, 0.36, 0.36], [0.20, 0.18, 0.18]], np.float32)
GOLEM_STONE = np.array([[0.60, 0.63, 0.70], [0.30, 0.48, 0.30], [0.88, 0.58, 0.28]], np.float32)
GOLEM_EYES = np.array([[0.30, 0.95, 1.00], [1.00, 0.95, 0.20], [1.00, 0.25, 0.10]], np.float32)
GOLEM_CRACK = np.array([[0.25, 0.25, 0.28], [0.18, 0.25, 0.15], [1.00, 0.45, 0.05]], np.float32)
MOSS = np.array([0.35, 0.85, 0.20], np.float32)
SPEAR_SHAFT = np.array([0.42, 0.27, 0.12], np.float32)
METAL = np.array([0.86, 0.87, 0.92], np.float32)
CLUB = np.array([0.36, 0.30, 0.26], np.float32)
FLASH = np.array([1.00, 0.95, 0.35], np.float32)
FLASH_CORE = np.array([1.00, 1.00, 0.92], np.float32)
BLACK = np.array([0.05, 0.04, 0.04], np.float32)


def _dir(angle):
    """Unit vector of an angle measured from straight down, positive towards +x (y up)."""
    return np.sin(angle), -np.cos(angle)


def _turn(px, py, ox, oy, angle):
    """Rotate points counter-clockwise (y up) by ``angle`` about ``(ox, oy)``."""
    c, s = np.cos(angle), np.sin(angle)
    dx, dy = px - ox, py - oy
    return ox + c * dx - s * dy, oy + s * dx + c * dy


class _Figure:
    """Joint positions of a batch of figures and the transform from body to sprite frame.

    Body frame: units of figure height, ``x`` forward, ``y`` up, feet at ``y = 0``. ``lean``
    turns the body about the hip; ``dying`` lays it on its back. The transform is applied to
    points; boxes also receive the extra angle :attr:`angle`.
    """

    def __init__(self, pose_index, hip_height, rng_jitter):
        table = np.array([POSE_TABLE[p] for p in POSES], np.float32)[pose_index]
        table = table + rng_jitter
        (self.lean, self.leg_f, self.leg_b, self.arm_f1, self.arm_f2, self.arm_b1, self.arm_b2) = (
            table[:, i] for i in range(7)
        )
        self.weapon = table[:, 7]
        self.dying = np.asarray(pose_index) == POSES.index("dying")
        self.hip = hip_height
        # lean forward = clockwise (y up); dying = fall backwards (counter-clockwise 90°).
        self.angle = np.where(self.dying, np.pi / 2 - 0.04, -self.lean).astype(np.float32)
        self.pivot_y = np.where(self.dying, 0.0, hip_height).astype(np.float32)

    def place(self, px, py, lift=0.0):
        """Body-frame points → posed points (lean about the hip; dying: lying on the ground)."""
        x, y = _turn(px, py, 0.0, self.pivot_y, self.angle)
        # lying: shift so the body is centred and rests on the ground (``lift`` = half thickness)
        x = np.where(self.dying, x + 0.50, x)
        y = np.where(self.dying, y + lift, y)
        return x, y


def _limb(start_x, start_y, angle, length):
    dx, dy = _dir(angle)
    return start_x + length * dx, start_y + length * dy


def _draw_satyr(pt: R.Painter, t, f: _Figure):
    n = len(t)
    fur, skin, horn = SATYR_FUR[t], SATYR_SKIN[t], SATYR_HORN[t]
    big = (t == 2).astype(np.float32)
    P = lambda x, y: f.place(np.broadcast_to(x, (n,)), np.broadcast_to(y, (n,)), 0.07)  # noqa: E731
    hip = f.hip
    pt.ellipse(0.05 * f.dying, 0.0, np.where(f.dying, 0.52, 0.26), 0.035, BLACK, 0.28)  # shadow

    def goat_leg(swing, color):
        pts = [(np.zeros(n), np.full(n, hip))]
        c, s = np.cos(swing), np.sin(swing)
        for ox, oy in ((0.07, -0.17), (-0.08, -0.15), (0.03, -0.11)):
            px, py = pts[-1]
            pts.append((px + c * ox - s * oy, py + s * ox + c * oy))
        posed = [P(*q) for q in pts]
        for (a, b), (ra, rb) in zip(
            zip(posed, posed[1:]), ((0.058, 0.036), (0.030, 0.024), (0.022, 0.02))
        ):
            pt.segment(*a, *b, ra, rb, color=color)
        pt.circle(*posed[-1], 0.03, BLACK)  # hoof

    def spear(hand):
        # turns with the body; dropped flat on the ground when the figure is lying
        dx, dy = _dir(f.weapon + f.angle)
        gx, gy = np.where(f.dying, 0.18, hand[0]), np.where(f.dying, 0.02, hand[1])
        dx, dy = np.where(f.dying, 1.0, dx), np.where(f.dying, 0.0, dy)
        fx, fy = gx + 0.30 * dx, gy + 0.30 * dy
        pt.segment(gx - 0.22 * dx, gy - 0.22 * dy, fx, fy, 0.014, color=SPEAR_SHAFT)
        nx, ny = -dy, dx
        tip = (fx + 0.11 * dx, fy + 0.11 * dy)
        pt.triangle(tip, (fx + 0.04 * nx, fy + 0.04 * ny), (fx - 0.04 * nx, fy - 0.04 * ny), METAL)

    def arm(a1, a2, color, weapon):
        sx, sy = np.zeros(n), np.full(n, hip + 0.26)
        ex, ey = _limb(sx, sy, a1, 0.16)
        hx, hy = _limb(ex, ey, a2, 0.15)
        S, E, H = P(sx, sy), P(ex, ey), P(hx, hy)
        if weapon:
            spear(H)
        pt.segment(*S, *E, 0.028, 0.024, color=color)
        pt.segment(*E, *H, 0.024, 0.02, color=color)
        pt.circle(*H, 0.026, color)

    goat_leg(f.leg_b, fur * 0.72)  # far side first, in shade
    arm(f.arm_b1, f.arm_b2, skin * 0.72, weapon=False)
    pt.segment(*P(-0.04, hip + 0.04), *P(-0.20, hip + 0.10), 0.018, 0.01, color=fur, opacity=big)
    pt.segment(*P(0.0, hip), *P(0.01, hip + 0.30), 0.068, 0.058, color=skin)  # bare chest
    pt.segment(*P(0.0, hip), *P(0.0, hip + 0.07), 0.080, color=fur)  # furry hips
    goat_leg(f.leg_f, fur)
    pt.triangle(
        P(-0.03, hip + 0.42), P(-0.15, hip + 0.46), P(-0.035, hip + 0.38), skin * 0.9
    )  # ear
    pt.circle(*P(0.035, hip + 0.405), 0.085, skin)  # head
    k = 1.0 + 0.45 * big  # type3: big horns
    h0, h1 = P(0.0, hip + 0.47), P(-0.06 * k, hip + 0.47 + 0.09 * k)
    h2 = P(-0.02 * k, hip + 0.47 + 0.17 * k)
    pt.segment(*h0, *h1, 0.030, 0.020, color=horn)
    pt.segment(*h1, *h2, 0.020, 0.008, color=horn)
    pt.circle(*P(0.085, hip + 0.42), 0.016, BLACK)  # eye
    beard = (t == 1).astype(np.float32)
    pt.triangle(P(0.03, hip + 0.35), P(0.11, hip + 0.36), P(0.07, hip + 0.22), fur, beard)
    arm(f.arm_f1, f.arm_f2, skin, weapon=True)


def _draw_golem(pt: R.Painter, t, f: _Figure):
    n = len(t)
    stone, eyes, crack = GOLEM_STONE[t], GOLEM_EYES[t], GOLEM_CRACK[t]
    P = lambda x, y: f.place(np.broadcast_to(x, (n,)), np.broadcast_to(y, (n,)), 0.17)  # noqa: E731
    hip, turn = f.hip, f.angle
    pt.ellipse(0.0, 0.0, np.where(f.dying, 0.55, 0.32), 0.04, BLACK, 0.3)  # shadow

    def leg(swing, color):
        c, s = np.cos(swing), np.sin(swing)
        fx, fy = s * 0.27, hip - c * 0.27
        pt.segment(*P(0.0, hip), *P(fx, fy), 0.085, 0.075, color=color)
        pt.box(*P(fx + 0.05, fy - 0.02), 0.10, 0.045, color * 0.9, angle=turn, radius=0.02)

    def club(hand):
        dx, dy = _dir(f.weapon + f.angle)
        gx, gy = np.where(f.dying, 0.25, hand[0]), np.where(f.dying, 0.05, hand[1])
        dx, dy = np.where(f.dying, 1.0, dx), np.where(f.dying, 0.0, dy)
        pt.segment(
            gx - 0.08 * dx, gy - 0.08 * dy, gx + 0.22 * dx, gy + 0.22 * dy, 0.025, color=CLUB
        )
        pt.box(
            gx + 0.30 * dx,
            gy + 0.30 * dy,
            0.11,
            0.075,
            CLUB * 1.25,
            angle=np.arctan2(dy, dx),
            radius=0.025,
        )

    def arm(a1, a2, color, weapon):
        sx, sy = np.full(n, 0.02), np.full(n, hip + 0.37)
        ex, ey = _limb(sx, sy, a1, 0.19)
        hx, hy = _limb(ex, ey, a2, 0.17)
        S, E, H = P(sx, sy), P(ex, ey), P(hx, hy)
        if weapon:
            club(H)
        pt.segment(*S, *E, 0.075, 0.065, color=color)
        pt.segment(*E, *H, 0.065, 0.06, color=color)
        pt.circle(*H, 0.08, color * 0.92)  # fist

    leg(f.leg_b, stone * 0.70)
    arm(f.arm_b1, f.arm_b2, stone * 0.70, weapon=False)
    pt.box(*P(0.0, hip + 0.24), 0.17, 0.20, stone, angle=turn, radius=0.05)  # torso block
    for (x0, y0), (x1, y1) in (
        ((-0.08, 0.33), (0.02, 0.22)),
        ((0.02, 0.22), (-0.02, 0.12)),
        ((0.09, 0.38), (0.12, 0.28)),
    ):
        pt.segment(*P(x0, hip + y0), *P(x1, hip + y1), 0.014, color=crack)
    leg(f.leg_f, stone)
    pt.box(*P(0.05, hip + 0.50), 0.08, 0.075, stone * 0.95, angle=turn, radius=0.02)  # head
    pt.box(*P(0.10, hip + 0.51), 0.028, 0.016, eyes, angle=turn)  # glowing eyes
    moss = (t == 1).astype(np.float32)
    for mx, my, mr in ((0.00, 0.58, 0.045), (-0.12, 0.42, 0.05), (0.08, 0.12, 0.04)):
        pt.circle(*P(mx, hip + my), mr, MOSS, moss)
    arm(f.arm_f1, f.arm_f2, stone, weapon=True)


def _draw_flash(pt: R.Painter, show):
    """Hit flash: an eight-ray star at the front of the chest (not turned with the body)."""
    for k in range(4):
        dx, dy = 0.17 * np.cos(k * np.pi / 4), 0.17 * np.sin(k * np.pi / 4)
        pt.segment(0.30 - dx, 0.62 - dy, 0.30 + dx, 0.62 + dy, 0.028, color=FLASH, opacity=show)
    pt.circle(0.30, 0.62, 0.07, FLASH_CORE, show)


def sprite_shape(size: int) -> tuple[int, int, int]:
    """``(height, width, feet_row)`` of the figure sprites at an image size, in pixels."""
    unit = FIGURE_HEIGHT * size * SCALES.max()
    height = int(np.ceil((ABOVE + BELOW) * unit))
    width = int(np.ceil((BACK + FRONT) * unit))
    feet = int(round(ABOVE * unit))
    return height, width, feet


@lru_cache(maxsize=4)
def sprites(size: int) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """All figure sprites facing right: premultiplied ``rgb [K, h, w, 3]``, ``alpha [K, h, w]``.

    Index of (creature c, type t, pose p, scale s, variant v):
    ``(((c * 3 + t) * 6 + p) * len(SCALES) + s) * VARIANTS + v``.
    """
    height, width, feet = sprite_shape(size)
    ss = SUPERSAMPLE
    c, t, p, s, v = (
        a.ravel()
        for a in np.meshgrid(
            np.arange(2),
            np.arange(3),
            np.arange(len(POSES)),
            np.arange(len(SCALES)),
            np.arange(VARIANTS),
            indexing="ij",
        )
    )
    jitter_rng = np.random.default_rng(20240601)  # fixed: variants are part of the renderer
    jitter = jitter_rng.uniform(-0.09, 0.09, size=(VARIANTS, 8)).astype(np.float32)
    jitter[0] = 0.0
    rgb_all = np.zeros((len(c), height * ss, width * ss, 3), np.float32)
    alpha_all = np.zeros((len(c), height * ss, width * ss), np.float32)
    col_px = (np.arange(width * ss, dtype=np.float32) + 0.5) / ss
    row_px = (np.arange(height * ss, dtype=np.float32) + 0.5) / ss
    # paint one (creature, pose) group at a time: each shape's bounding box over the group is
    # tight (the poses differ), so far fewer pixels are evaluated than for the whole bank
    for creature, pose in itertools.product((0, 1), range(len(POSES))):
        idx = np.flatnonzero((c == creature) & (p == pose))
        unit = (FIGURE_HEIGHT * size * SCALES[s[idx]]).astype(np.float32)  # pixels per body unit
        origin_x = BACK * FIGURE_HEIGHT * size * SCALES.max()
        xb = (col_px[None, None, :] - origin_x) / unit[:, None, None]
        yb = (feet - row_px[None, :, None]) / unit[:, None, None]
        rgb, alpha = R.new_sprites(len(idx), height * ss, width * ss)
        painter = R.Painter(rgb, alpha, xb, yb, 1.0 / (unit * ss))
        figure = _Figure(p[idx], 0.45 if creature == 0 else 0.34, jitter[v[idx]])
        (_draw_satyr if creature == 0 else _draw_golem)(painter, t[idx], figure)
        _draw_flash(painter, (p[idx] == POSES.index("hurt")).astype(np.float32))
        rgb_all[idx], alpha_all[idx] = rgb, alpha
    rgb_small = R.box_downsample(rgb_all, ss).astype(np.float32)
    alpha_small = R.box_downsample(alpha_all, ss).astype(np.float32)
    return rgb_small, alpha_small, {"height": height, "width": width, "feet": feet}


def sprite_index(creature, kind, pose, scale, variant) -> np.ndarray:
    return (((creature * 3 + kind) * len(POSES) + pose) * len(SCALES) + scale) * VARIANTS + variant


def _pose_codes(states, names) -> np.ndarray:
    return np.array([POSES.index(name) for name in names])[states]


def render(labels, size: int, rng: np.random.Generator, dag=None) -> tuple[np.ndarray, dict]:
    """Draw fight scenes for the labels ``{node: int codes [n]}`` (state order of the DAG file).

    Only ``actor, actor_type, action, reactor, reactor_type, reaction`` are read.

    Returns:
        ``images``: uint8 ``[n, size, size, 3]``; ``extras``: ``{}`` (no measured columns).
    """
    if size < 24:
        raise ValueError(f"rpg: image size must be at least 24 pixels, got {size}")
    actions = ("attack", "taunt", "walk")
    reactions = ("dying", "hurt", "idle", "attack")
    actor = np.asarray(labels["actor"])
    n = len(actor)
    rgb_bank, alpha_bank, geo = sprites(size)
    w, feet = geo["width"], geo["feet"]
    flipped_rgb, flipped_alpha = rgb_bank[:, :, ::-1], alpha_bank[:, :, ::-1]

    # -- background: a sky gradient and a ground colour that depend on the row only, then a
    # smooth texture on the ground. One spare row and column (discarded at the end) receive
    # sprite pixels that fall off the image.
    full = size + 1
    _, y = R.grid(full, full)
    y = y * (full / size)  # image units of the real image
    sky_top = np.array([0.42, 0.62, 0.92], np.float32) + rng.uniform(-0.12, 0.12, (n, 3)).astype(
        np.float32
    )
    sky_low = (
        sky_top * 0.55 + np.float32(0.42) + rng.uniform(-0.05, 0.05, (n, 1)).astype(np.float32)
    )
    # grounds: grass, earth, slate; darker and less saturated than the figures' palettes
    ground_base = np.array([[0.33, 0.50, 0.22], [0.42, 0.34, 0.24], [0.34, 0.35, 0.37]], np.float32)
    ground = ground_base[rng.integers(0, 3, n)] + rng.uniform(-0.06, 0.06, (n, 3)).astype(
        np.float32
    )
    horizon = rng.uniform(0.52, 0.68, n).astype(np.float32)
    t = np.clip(y / R.col(horizon), 0.0, 1.0)[..., None]  # [n, H, 1, 1]
    rows = (
        np.clip(sky_top, 0, 1)[:, None, None] * (1 - t) + np.clip(sky_low, 0, 1)[:, None, None] * t
    )
    ground_cov = R.coverage(R.col(horizon) - y, 1.0 / size)  # [n, H, 1]
    rows += ground_cov[..., None] * (np.clip(ground, 0, 1)[:, None, None] - rows)
    texture = R.smooth_noise(rng, n, full, full, cells=max(2, size // 8))
    texture *= ground_cov * rng.uniform(0.03, 0.10, (n, 1, 1)).astype(np.float32)
    canvas = np.empty((n, full, full, 3), np.float32)
    np.add(rows, texture[..., None], out=canvas)

    # -- figures: actor body around x = 0.2 S, reactor (mirrored sprite) around x = 0.8 S
    origin = BACK / (BACK + FRONT) * w  # body axis, in sprite columns (facing right)
    feet_y = rng.uniform(0.82, 0.95, n) * size
    scale = rng.integers(0, len(SCALES), (2, n))
    variant = rng.integers(0, VARIANTS, (2, n))
    gain = rng.uniform(0.85, 1.10, (2, n)).astype(np.float32)
    body_x = np.stack([rng.uniform(0.15, 0.25, n), rng.uniform(0.75, 0.85, n)]) * size
    act = sprite_index(
        actor,
        np.asarray(labels["actor_type"]),
        _pose_codes(labels["action"], actions),
        scale[0],
        variant[0],
    )
    rea = sprite_index(
        np.asarray(labels["reactor"]),
        np.asarray(labels["reactor_type"]),
        _pose_codes(labels["reaction"], reactions),
        scale[1],
        variant[1],
    )
    top = np.round(feet_y - feet).astype(int) + rng.integers(-1, 2, (2, n))
    left_actor = np.round(body_x[0] - origin).astype(int)
    left_reactor = np.round(body_x[1] - (w - origin)).astype(int)
    R.paste_sprites(canvas, rgb_bank, alpha_bank, act, top[0], left_actor, gain[0])
    R.paste_sprites(canvas, flipped_rgb, flipped_alpha, rea, top[1], left_reactor, gain[1])
    canvas = canvas[:, :size, :size]
    R.add_uniform_noise(canvas, rng, rng.uniform(0.0, 0.04, n).astype(np.float32))
    return R.to_uint8(canvas), {}


def prepare(size: int, **options) -> None:
    """Render the sprite bank once (before worker processes fork, so they share it)."""
    sprites(size)


def caption(labels) -> str:
    """A short caption from decoded labels (preview grids)."""
    return (
        f"{labels['actor']}{labels['actor_type'][-1]} {labels['action']}\n"
        f"{labels['reactor']}{labels['reactor_type'][-1]} {labels['reaction']}"
    )
