"""Cartoon faces with CelebA-like attributes (``dags/faces.yaml``).

What is drawn, per node (all nodes are rendered):

===============  ==========================================================================
node             picture
===============  ==========================================================================
``gender``       female: oval face, long hair falling beside the face, red lips;
                 male: wide square jaw, short hair, skin-toned lips
``age``          old: forehead wrinkles, lines beside the mouth, bags under the eyes, hair
                 (and eyebrows, beard) turned half grey, paler skin
``smiling``      yes: open smile (dark mouth with teeth) and happy closed eyes; no: a straight
                 closed mouth, open eyes
``mustache``     a thick moustache above the mouth, in the hair colour
``goatee``       a tuft of beard on the chin, in the hair colour
``bald``         no hair on top of the head (a shine instead); side hair stays
``blond_hair``   yellow hair; otherwise black, brown or auburn
``rosy_cheeks``  pink discs on the cheeks
``eyeglasses``   dark round rims around the eyes, with a bridge and temples
===============  ==========================================================================

Nuisance: face position (±6 % of the image) and size (0.84-1.1), skin tone, the shade of the
hair colour, clothes colour, eye spacing and size, mouth width, background colour and texture,
pixel noise.
"""

from __future__ import annotations

import numpy as np

from . import render as R

DAG_FILE = "faces.yaml"
MIN_SIZE = 24
DEFAULT_SIZE = 64

SKIN_LIGHT = np.array([0.98, 0.86, 0.74], np.float32)
SKIN_DARK = np.array([0.50, 0.33, 0.22], np.float32)
HAIR_DARK = np.array([[0.10, 0.08, 0.07], [0.33, 0.19, 0.09], [0.55, 0.22, 0.08]], np.float32)
HAIR_BLOND = np.array([0.96, 0.82, 0.36], np.float32)
GREY = np.array([0.80, 0.80, 0.80], np.float32)
WHITE = np.array([0.98, 0.98, 0.98], np.float32)
PUPIL = np.array([0.12, 0.10, 0.10], np.float32)
LIPSTICK = np.array([0.82, 0.10, 0.18], np.float32)
MOUTH = np.array([0.30, 0.05, 0.07], np.float32)
ROSY = np.array([1.00, 0.33, 0.45], np.float32)
FRAME = np.array([0.08, 0.08, 0.10], np.float32)


def render(labels, size: int, rng: np.random.Generator, dag=None) -> tuple[np.ndarray, dict]:
    """Draw faces for ``{node: int codes [n]}`` (state 1 = male / old / yes). Returns
    ``(uint8 [n, size, size, 3], {})``."""
    if size < 24:
        raise ValueError(f"faces: image size must be at least 24 pixels, got {size}")
    g = np.asarray(labels["gender"]).astype(bool)  # male
    n = len(g)
    old = np.asarray(labels["age"]).astype(bool)
    smile = np.asarray(labels["smiling"]).astype(bool)
    mustache = np.asarray(labels["mustache"]).astype(np.float32)
    goatee = np.asarray(labels["goatee"]).astype(np.float32)
    bald = np.asarray(labels["bald"]).astype(bool)
    blond = np.asarray(labels["blond_hair"]).astype(bool)
    rosy = np.asarray(labels["rosy_cheeks"]).astype(np.float32)
    glasses = np.asarray(labels["eyeglasses"]).astype(np.float32)
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731

    # -- nuisance
    cx = rng.uniform(0.44, 0.56, n)
    cy = rng.uniform(0.47, 0.57, n)
    s = rng.uniform(0.84, 1.10, n)
    tone = rng.uniform(0.0, 1.0, n)[:, None]
    skin = f32(SKIN_LIGHT * (1 - tone) + SKIN_DARK * tone)
    skin = np.where(old[:, None], skin * 0.92 + 0.06, skin)
    hair = np.where(blond[:, None], HAIR_BLOND, HAIR_DARK[rng.integers(0, 3, n)])
    hair = hair * rng.uniform(0.85, 1.08, (n, 1))
    hair = f32(np.clip(np.where(old[:, None], 0.5 * hair + 0.5 * GREY, hair), 0, 1))
    brow = f32(hair * 0.75)
    clothes = f32(rng.uniform(0.1, 0.9, (n, 3)))
    eye_dx = rng.uniform(0.085, 0.105, n)
    eye_r = rng.uniform(0.026, 0.034, n)
    mouth_w = rng.uniform(0.075, 0.095, n)

    # -- background: a two-colour vertical gradient with texture
    top = rng.uniform(0.25, 0.95, (n, 3))
    bottom = np.clip(top * rng.uniform(0.6, 1.0, (n, 1)), 0, 1)
    canvas = R.vertical_gradient(top, bottom, size, size)
    texture = R.smooth_noise(rng, n, size, size, cells=4)
    texture *= rng.uniform(0.02, 0.08, (n, 1, 1)).astype(np.float32)
    canvas += texture[..., None]

    # face frame: u = (x - cx) / s, v = (y - cy) / s, separable per image
    x, y = R.grid(size, size)
    u = (x - R.col(cx)) / R.col(s)  # [n, 1, W]
    v = (y - R.col(cy)) / R.col(s)  # [n, H, 1]
    pt = R.Painter(canvas, None, u, v, 1.0 / (size * s))
    female = (~g).astype(np.float32)
    male = g.astype(np.float32)
    has_top = (~bald).astype(np.float32)

    # long hair behind the head (female); for the bald, only beside and below the ears
    hair_top = np.where(bald, -0.06, -0.24)
    pt.box(0.0, (hair_top + 0.34) / 2, 0.30, (0.34 - hair_top) / 2, hair, female, radius=0.10)
    pt.ellipse(0.0, -0.13, 0.26, 0.19, hair, has_top)  # hair cap behind the face
    # neck and shoulders
    pt.box(0.0, 0.30, 0.075, 0.12, skin * 0.9)
    pt.ellipse(0.0, 0.56, 0.40, 0.22, clothes)
    # ears
    for side in (-1, 1):
        pt.ellipse(side * 0.235, 0.0, 0.04, 0.06, skin * 0.95)
    # face: oval (female) or square jaw (male)
    pt.ellipse(0.0, 0.0, 0.215, 0.28, skin, female)
    pt.box(0.0, 0.0, 0.235, 0.27, skin, male, radius=0.11)
    # male bald: hair kept on the sides, above the ears
    bald_male = (bald & g).astype(np.float32)
    for side in (-1, 1):
        pt.ellipse(side * 0.215, -0.07, 0.035, 0.07, hair, bald_male)
    pt.ellipse(-0.08, -0.21, 0.06, 0.03, WHITE, bald.astype(np.float32) * 0.55)  # shine
    # fringe over the forehead (not bald): long for women, short for men
    pt.ellipse(0.0, -0.235, 0.215, np.where(g, 0.06, 0.085), hair, has_top)
    # wrinkles (old): forehead lines, lines beside the mouth, bags under the eyes
    wrinkle = f32(skin * 0.55)
    oldf = old.astype(np.float32)
    for wy in (-0.155, -0.12):
        pt.segment(-0.10, wy, 0.10, wy, 0.0075, color=wrinkle, opacity=oldf)
    for side in (-1, 1):
        pt.segment(side * 0.10, 0.06, side * 0.125, 0.14, 0.007, color=wrinkle, opacity=oldf)
        pt.segment(
            side * eye_dx - 0.03,
            0.03,
            side * eye_dx + 0.03,
            0.03,
            0.006,
            color=wrinkle,
            opacity=oldf,
        )
    # rosy cheeks
    for side in (-1, 1):
        pt.ellipse(side * 0.14, 0.09, 0.07, 0.05, ROSY, rosy)
    # eyes (open; smiling: closed, happy "^" arcs) and eyebrows
    smiling_f, open_f = smile.astype(np.float32), (~smile).astype(np.float32)
    for side in (-1, 1):
        ex = side * eye_dx
        pt.ellipse(ex, -0.03, eye_r * 1.5, eye_r, WHITE, open_f)
        pt.circle(ex, -0.03, eye_r * 0.75, PUPIL, open_f)
        pt.arc(ex, -0.01, eye_r * 1.6, -np.pi + 0.5, -0.5, 0.011, PUPIL, smiling_f)
        pt.segment(ex - 0.04, -0.09, ex + 0.04, -0.095, 0.011, color=brow)
    # nose
    pt.segment(0.0, 0.0, 0.012, 0.055, 0.012, color=skin * 0.8)
    # mouth: a wide open grin (dark, with teeth) or a straight closed mouth
    lips = np.where(g[:, None], skin * 0.45, LIPSTICK).astype(np.float32)
    smilef, straight = smile.astype(np.float32), (~smile).astype(np.float32)
    pt.ellipse(0.0, 0.15, mouth_w * 1.1, 0.06, MOUTH, smilef)
    pt.box(0.0, 0.13, mouth_w * 1.2, 0.02, skin, smilef)  # cut the ellipse to its lower half
    pt.box(0.0, 0.158, mouth_w * 0.8, 0.009, WHITE, smilef)  # teeth
    pt.arc(0.0, 0.07, 0.14, np.pi / 2 - 0.62, np.pi / 2 + 0.62, 0.011, lips, smilef)
    pt.segment(-mouth_w, 0.16, mouth_w, 0.16, 0.016, color=lips, opacity=straight)
    # facial hair: a dark rim under a fill in the hair colour, visible on any skin tone;
    # the moustache sits between nose and mouth, so that it never hides the mouth
    rim, beard = f32(hair * 0.35), f32(hair * 0.75)
    for colour, grow in ((rim, 0.008), (beard, 0.0)):
        for side in (-1, 1):
            end = side * (mouth_w + 0.02)
            pt.segment(
                0.0, 0.075, end, 0.095, 0.022 + grow, 0.013 + grow, color=colour, opacity=mustache
            )
        pt.ellipse(0.0, 0.262, 0.062 + grow, 0.04 + grow, colour, goatee)
    # eyeglasses: rims, bridge, temples
    for side in (-1, 1):
        ex = side * eye_dx
        pt.ring_circle(ex, -0.03, 0.068, 0.011, FRAME, glasses)
        pt.segment(
            side * (eye_dx + 0.068), -0.04, side * 0.225, -0.05, 0.009, color=FRAME, opacity=glasses
        )
    pt.segment(
        -(eye_dx - 0.068), -0.035, eye_dx - 0.068, -0.035, 0.009, color=FRAME, opacity=glasses
    )

    R.add_uniform_noise(canvas, rng, rng.uniform(0.0, 0.04, n).astype(np.float32))
    return R.to_uint8(canvas), {}


def caption(labels) -> str:
    """A short caption from decoded labels (preview grids): the attributes that are 'yes'."""
    flags = [
        k
        for k in (
            "smiling",
            "mustache",
            "goatee",
            "bald",
            "blond_hair",
            "rosy_cheeks",
            "eyeglasses",
        )
        if labels[k] == "yes"
    ]
    short = {
        "smiling": "smile",
        "mustache": "mst",
        "goatee": "goat",
        "bald": "bald",
        "blond_hair": "blond",
        "rosy_cheeks": "rosy",
        "eyeglasses": "glasses",
    }
    text = f"{labels['gender']} {labels['age']}"
    words = [short[k] for k in flags]
    return text + "\n" + (" ".join(words) if words else "-")
