"""Drawing one synthetic face: an identity's geometry under a per-image pose, expression and camera.

Each image varies what a camera and a face vary: pose (rotation, shift, scale), expression
(smile, open mouth, raised brows, blink, gaze), glasses now and then, background and clothing
colour, a lighting gradient, a strong per-channel colour cast, contrast, blur and noise.
Per-image mean colour is therefore a poor identity cue (a mean-colour nearest-centroid classifier
is near chance), while geometry is learnable. Image ``j`` of identity ``i`` depends only on
``(seed, i, j)``.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from femb.data.synthetic_identity import make_identity, seeded_rng
from femb.data.transforms import FACE_SIZE

_CENTRE = (FACE_SIZE / 2, FACE_SIZE / 2 + 2)
_CIRCLE_T = np.linspace(0.0, 2.0 * math.pi, 28, endpoint=False)
_SMALL_T = np.linspace(0.0, 2.0 * math.pi, 14, endpoint=False)
_TRIG = {id(t): (np.cos(t), np.sin(t)) for t in (_CIRCLE_T, _SMALL_T)}
_GRID_Y, _GRID_X = np.mgrid[-1.0 : 1.0 : FACE_SIZE * 1j, -1.0 : 1.0 : FACE_SIZE * 1j].astype(np.float32)
# Sensor noise is cut from one fixed bank at a per-image offset: drawing 37k normals per image
# would cost more than drawing the whole face.
_NOISE_BANK = np.random.default_rng(0x5EED).standard_normal(
    (2 * FACE_SIZE, 2 * FACE_SIZE, 3), dtype=np.float32
)


def _ellipse(
    cx: float, cy: float, a: float, b: float, rot: float = 0.0, t: np.ndarray = _CIRCLE_T
) -> np.ndarray:
    cos_t, sin_t = _TRIG[id(t)] if id(t) in _TRIG else (np.cos(t), np.sin(t))
    x, y = a * cos_t, b * sin_t
    if rot:
        c, s = math.cos(rot), math.sin(rot)
        x, y = c * x - s * y, s * x + c * y
    return np.stack([x + cx, y + cy], axis=1)


def _colour(rgb: np.ndarray, factor: float = 1.0) -> tuple[int, int, int]:
    r, g, b = (min(255, max(0, int(c * factor))) for c in rgb.tolist())
    return r, g, b


def render_face(seed: int, identity: int, index: int) -> np.ndarray:
    """Image ``index`` of ``identity`` as a uint8 ``112×112×3`` RGB array; a pure function."""
    ident = make_identity(seed, identity)
    r = seeded_rng(seed, 0x1A, identity, index)
    u = r.uniform

    # Pose: one similarity transform applied to every point of the face.
    angle = math.radians(u(-12, 12))
    scale = u(0.88, 1.1)
    cos_a, sin_a = scale * math.cos(angle), scale * math.sin(angle)
    pose = np.array([[cos_a, sin_a], [-sin_a, cos_a]])
    offset = np.array([_CENTRE[0] + u(-5, 5), _CENTRE[1] + u(-5, 5)])

    def place(points: np.ndarray) -> list[float]:
        return (points @ pose + offset).ravel().tolist()

    def width(w: float) -> int:
        return max(1, round(w * scale))

    background = r.uniform(15, 240, 3)
    img = Image.new("RGB", (FACE_SIZE, FACE_SIZE), _colour(background))
    draw = ImageDraw.Draw(img)
    rx, ry, skin = ident.rx, ident.ry, ident.skin
    side = rx + ident.hair_side

    # Clothing (colour varies per image) and neck.
    draw.polygon(place(_ellipse(0, 1.55 * ry + 22, 2.1 * rx, 28)), fill=_colour(r.uniform(20, 235, 3)))
    draw.polygon(
        place(
            np.array(
                [[-0.42 * rx, 0.5 * ry], [0.42 * rx, 0.5 * ry], [0.5 * rx, 1.7 * ry], [-0.5 * rx, 1.7 * ry]]
            )
        ),
        fill=_colour(skin, 0.82),
    )

    top_arc = np.linspace(math.pi, 2 * math.pi, 15)
    arc = np.stack([side * np.cos(top_arc), (ry + ident.hair_top) * np.sin(top_arc)], axis=1)
    if ident.hair_style == 2:  # long hair, behind the head
        flare = 3 + 0.15 * ident.hair_length
        back = np.vstack([[[-side - flare, ident.hair_length]], arc, [[side + flare, ident.hair_length]]])
        draw.polygon(place(back), fill=_colour(ident.hair, 0.85))

    for sign in (-1.0, 1.0):
        draw.polygon(
            place(_ellipse(sign * rx * 0.97, ident.eye_y + 3, ident.ear_w, ident.ear_h, t=_SMALL_T)),
            fill=_colour(skin, 0.9),
        )

    # Face outline: an ellipse whose lower half narrows towards the chin by the jaw factor.
    fx, fy = rx * np.cos(_CIRCLE_T), ry * np.sin(_CIRCLE_T)
    fx = np.where(fy > 0, fx * (1 - ident.jaw * np.sin(_CIRCLE_T) ** 2), fx)
    face = np.stack([fx, fy], axis=1)
    draw.polygon(place(face), fill=_colour(skin))

    if ident.hair_style:
        xs = np.linspace(rx, -rx, 13)
        fringe = ident.fringe_y + (ident.hair_side_y - ident.fringe_y) * np.abs(xs / rx) ** ident.fringe_power
        fringe -= ident.parting_depth * np.clip(1 - np.abs(xs - ident.parting_x) / (0.25 * rx), 0, None)
        cap = np.vstack(
            [[[-side, ident.hair_side_y]], arc, [[side, ident.hair_side_y]], np.stack([xs, fringe], axis=1)]
        )
        draw.polygon(place(cap), fill=_colour(ident.hair))

    if ident.beard:
        chin = face[face[:, 1] > ident.mouth_y - 6] * 1.03
        draw.polygon(place(chin[np.argsort(np.arctan2(chin[:, 1], chin[:, 0]))]), fill=_colour(ident.hair))
    if ident.mole is not None:
        mx, my, mr = ident.mole
        draw.polygon(place(_ellipse(mx, my, mr, mr, t=_SMALL_T)), fill=(70, 45, 35))

    # Eyes, brows: per-image blink, gaze and brow raise are the expression.
    openness = min(1.0, u(0.35, 1.3))
    gaze = u(-0.3, 0.3) * ident.eye_w
    brow_raise = u(-1.5, 3.0)
    for sign in (-1.0, 1.0):
        cx, cy, tilt = sign * ident.eye_dx, ident.eye_y, sign * ident.eye_tilt
        eye_h = ident.eye_h * openness
        draw.polygon(place(_ellipse(cx, cy, ident.eye_w, eye_h, tilt, _SMALL_T)), fill=(236, 234, 228))
        iris_r = min(ident.iris_r * ident.eye_h, eye_h)
        draw.polygon(place(_ellipse(cx + gaze, cy, iris_r, iris_r, t=_SMALL_T)), fill=_colour(ident.iris))
        draw.polygon(
            place(_ellipse(cx + gaze, cy, 0.45 * iris_r, 0.45 * iris_r, t=_SMALL_T)), fill=(10, 10, 10)
        )
        lid = _ellipse(cx, cy, ident.eye_w, eye_h, tilt, np.linspace(math.pi, 2 * math.pi, 7))
        draw.line(place(lid), fill=_colour(skin, 0.35), width=1)
        bx = np.linspace(-0.5, 0.5, 5)
        brow_y = (
            cy
            - ident.brow_gap
            - brow_raise
            - ident.brow_arch * (1 - 4 * bx**2)
            + ident.brow_angle * bx * ident.brow_len
        )
        brow = np.stack([cx + sign * bx * ident.brow_len, brow_y], axis=1)
        draw.line(place(brow), fill=_colour(ident.hair, 0.8), width=width(ident.brow_width), joint="curve")

    nose_top, nose_bottom, nw = ident.eye_y + 2, ident.eye_y + ident.nose_len, ident.nose_w
    if ident.nose_style == 0:
        draw.polygon(
            place(np.array([[0, nose_top], [-nw, nose_bottom], [nw, nose_bottom]])), fill=_colour(skin, 0.86)
        )
    else:
        bridge = np.array([[0.3 * nw, nose_top + 2], [0.6 * nw, nose_bottom], [-0.5 * nw, nose_bottom + 1]])
        draw.line(place(bridge), fill=_colour(skin, 0.6), width=1)
    for sign in (-1.0, 1.0):
        draw.polygon(
            place(_ellipse(sign * 0.5 * nw, nose_bottom, 1.3, 0.9, t=_SMALL_T)), fill=_colour(skin, 0.45)
        )

    if ident.moustache:
        mw = ident.mouth_w
        tache = np.array(
            [
                [-mw, ident.mouth_y - 1],
                [-0.8 * mw, ident.mouth_y - 5],
                [0.8 * mw, ident.mouth_y - 5],
                [mw, ident.mouth_y - 1],
            ]
        )
        draw.polygon(place(tache), fill=_colour(ident.hair))

    # Mouth: smile bends the centre line, an open mouth separates the lips.
    smile = u(-0.4, 1.0)
    gap = u(0, 6) if r.random() < 0.3 else 0.0
    mx = np.linspace(-ident.mouth_w, ident.mouth_w, 9)
    bulge = 1 - (mx / ident.mouth_w) ** 2
    centre = ident.mouth_y + 3 * smile * bulge
    upper_top = centre - gap / 2 * bulge - ident.lip * np.sqrt(bulge)
    lower_bottom = centre + gap / 2 * bulge + 1.2 * ident.lip * np.sqrt(bulge)
    draw.polygon(
        place(np.vstack([np.stack([mx, upper_top], 1), np.stack([mx[::-1], lower_bottom[::-1]], 1)])),
        fill=_colour(ident.lip_colour),
    )
    if gap > 1.0:
        inner = np.vstack(
            [
                np.stack([mx, centre - gap / 2 * bulge], 1),
                np.stack([mx[::-1], (centre + gap / 2 * bulge)[::-1]], 1),
            ]
        )
        draw.polygon(place(inner), fill=(60, 20, 25))
    else:
        draw.line(place(np.stack([mx, centre], 1)), fill=_colour(ident.lip_colour, 0.55), width=1)

    if r.random() < ident.glasses_rate:
        frame = _colour(r.uniform(0, 120, 3))
        for sign in (-1.0, 1.0):
            ring = _ellipse(sign * ident.eye_dx, ident.eye_y, ident.eye_w + 3, ident.eye_w + 1, t=_SMALL_T)
            draw.line(place(np.vstack([ring, ring[:1]])), fill=frame, width=width(1.5))
        bridge = np.array(
            [[-ident.eye_dx + ident.eye_w + 3, ident.eye_y], [ident.eye_dx - ident.eye_w - 3, ident.eye_y]]
        )
        draw.line(place(bridge), fill=frame, width=width(1.5))

    if r.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(u(0.4, 1.2)))

    # Photometric variation, strong enough that mean colour says little about identity.
    arr = np.asarray(img, dtype=np.float32)
    light_dir = u(0, 2 * math.pi)
    light = 1.0 + u(0, 0.6) * (math.cos(light_dir) * _GRID_X + math.sin(light_dir) * _GRID_Y)
    contrast = u(0.7, 1.2)
    gains = (contrast * math.exp(r.normal(0, 0.25)) * np.exp(r.normal(0, 0.18, 3))).astype(np.float32)
    oy, ox = r.integers(0, FACE_SIZE, 2)
    noise = _NOISE_BANK[oy : oy + FACE_SIZE, ox : ox + FACE_SIZE]
    arr = arr * (light[:, :, None] * gains)
    arr += noise * np.float32(u(1, 8)) + np.float32(128.0 * (1.0 - contrast))
    return np.clip(arr, 0, 255).astype(np.uint8)
