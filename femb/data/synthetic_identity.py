"""The fixed geometry and colours of one synthetic identity, a pure function of ``(seed, identity)``.

Colours come from SMALL SHARED palettes, so many identities share a skin, hair and eye colour and
only geometry (face outline and jaw, ears, hair style, eye spacing and shape, eyebrows, nose,
mouth, beard or moustache, a mole) tells them apart. :mod:`femb.data.synthetic_render` draws them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

# Shared palettes: identities draw from these, so colour alone cannot tell them apart.
SKIN_TONES = np.array(
    [(255, 219, 180), (241, 194, 150), (224, 172, 125), (198, 134, 90), (161, 102, 64), (112, 70, 45)],
    dtype=np.float32,
)
HAIR_COLOURS = np.array(
    [(25, 20, 18), (70, 45, 30), (120, 80, 45), (185, 150, 95), (150, 60, 30), (140, 140, 140)],
    dtype=np.float32,
)
IRIS_COLOURS = np.array([(60, 40, 25), (100, 70, 40), (70, 110, 150), (80, 120, 80)], dtype=np.float32)
LIP_TINTS = np.array([(190, 90, 90), (160, 80, 85), (200, 120, 110)], dtype=np.float32)


def seeded_rng(seed: int, *keys: int) -> np.random.Generator:
    """A generator that depends only on ``seed`` and ``keys``: what makes identities and images pure."""
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *map(int, keys)]))


@dataclass(frozen=True)
class Identity:
    """One identity's geometry and colours; lengths are pixels of the 112×112 face, before pose."""

    rx: float
    ry: float
    jaw: float
    skin: np.ndarray
    hair: np.ndarray
    hair_style: int  # 0 bald, 1 short, 2 long
    hair_top: float
    hair_side: float
    hair_side_y: float
    fringe_y: float
    fringe_power: float
    parting_x: float
    parting_depth: float
    hair_length: float
    ear_w: float
    ear_h: float
    eye_y: float
    eye_dx: float
    eye_w: float
    eye_h: float
    eye_tilt: float
    iris: np.ndarray
    iris_r: float
    brow_gap: float
    brow_len: float
    brow_width: float
    brow_angle: float
    brow_arch: float
    nose_len: float
    nose_w: float
    nose_style: int
    mouth_y: float
    mouth_w: float
    lip: float
    lip_colour: np.ndarray
    beard: bool
    moustache: bool
    mole: tuple[float, float, float] | None
    glasses_rate: float


@functools.lru_cache(maxsize=4096)
def make_identity(seed: int, identity: int) -> Identity:
    """The parameters of ``identity`` under ``seed`` (cached: every image of an identity reads them)."""
    r = seeded_rng(seed, 0x1D, identity)
    u = r.uniform
    rx, ry = u(25, 36), u(33, 44)
    skin = SKIN_TONES[r.integers(len(SKIN_TONES))] + r.normal(0, 6, 3)
    hair = HAIR_COLOURS[r.integers(len(HAIR_COLOURS))] + r.normal(0, 6, 3)
    hair_style = int(r.choice(3, p=[0.1, 0.55, 0.35]))
    eye_y = -u(0.02, 0.25) * ry
    eye_w = u(3.5, 7.0)
    nose_len = u(0.25, 0.45) * ry
    mouth_y = min(eye_y + nose_len + u(6, 13), 0.72 * ry)
    lip_colour = 0.5 * skin + 0.5 * LIP_TINTS[r.integers(len(LIP_TINTS))]
    mole = (u(-0.6, 0.6) * rx, u(-0.3, 0.6) * ry, u(1.0, 2.2)) if r.random() < 0.35 else None
    return Identity(
        rx=rx,
        ry=ry,
        jaw=u(0.0, 0.4),
        skin=skin,
        hair=hair,
        hair_style=hair_style,
        hair_top=u(3, 14),
        hair_side=u(1, 6),
        hair_side_y=u(-0.05, 0.15) * ry,
        fringe_y=-u(0.35, 0.8) * ry,
        fringe_power=u(0.6, 3.0),
        parting_x=u(-0.6, 0.6) * rx,
        parting_depth=u(0, 9),
        hair_length=u(0.3, 1.4) * ry,
        ear_w=u(2.5, 5.5),
        ear_h=u(5, 10),
        eye_y=eye_y,
        eye_dx=u(0.28, 0.46) * rx,
        eye_w=eye_w,
        eye_h=u(1.8, 3.6),
        eye_tilt=u(-0.25, 0.25),
        iris=IRIS_COLOURS[r.integers(len(IRIS_COLOURS))],
        iris_r=u(0.45, 0.85),
        brow_gap=u(4, 9),
        brow_len=u(0.9, 1.6) * eye_w,
        brow_width=u(1.0, 3.5),
        brow_angle=u(-0.3, 0.3),
        brow_arch=u(-1.0, 3.0),
        nose_len=nose_len,
        nose_w=u(3, 8),
        nose_style=int(r.integers(2)),
        mouth_y=mouth_y,
        mouth_w=u(6, 13),
        lip=u(1.2, 4.0),
        lip_colour=lip_colour,
        beard=bool(r.random() < 0.15),
        moustache=bool(r.random() < 0.15),
        mole=mole,
        glasses_rate=0.6 if r.random() < 0.15 else 0.05,
    )
