"""Procedurally drawn face-like identities: a built-in dataset that needs no download.

Each identity is a fixed geometry (face outline and jaw, ears, hair style, eye spacing and
shape, eyebrows, nose, mouth, beard or moustache, a mole) with colours drawn from SMALL SHARED
palettes, so many identities share a skin, hair and eye colour and only geometry tells them
apart. Each image varies what a camera and a face vary: pose (rotation, shift, scale),
expression (smile, open mouth, raised brows, blink, gaze), glasses now and then, background and
clothing colour, a lighting gradient, a strong per-channel colour cast, contrast, blur and
noise. Per-image mean colour is therefore a poor identity cue (a mean-colour nearest-centroid
classifier is near chance), while geometry is learnable.

Determinism: image ``j`` of identity ``i`` depends only on ``(seed, i, j)``; identity
parameters only on ``(seed, i)``. ``identity_offset`` shifts which identities a dataset holds,
so a validation set can use identities disjoint from the training set.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

from femb.data.faces import LabelledFaces
from femb.data.transforms import FACE_SIZE

DEFAULT_NUM_IDENTITIES = 100
DEFAULT_IMAGES_PER_IDENTITY = 20

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


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *map(int, keys)]))


@dataclass(frozen=True)
class _Identity:
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
def _make_identity(seed: int, identity: int) -> _Identity:
    r = _rng(seed, 0x1D, identity)
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
    return _Identity(
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
    ident = _make_identity(seed, identity)
    r = _rng(seed, 0x1A, identity, index)
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


class SyntheticFaces(LabelledFaces):
    """``num_identities × images_per_identity`` drawn faces; ``__getitem__ -> (3×112×112 tensor, label)``.

    Sample ``k`` is image ``k % images_per_identity`` of label ``k // images_per_identity``, and
    label ``i`` is the global identity ``identity_offset + i``. Rendered images are cached as
    uint8 on first use when ``cache=True`` (37 KB each; call :meth:`preload` before forking
    DataLoader workers so they share one copy).
    """

    def __init__(
        self,
        num_identities: int = DEFAULT_NUM_IDENTITIES,
        images_per_identity: int = DEFAULT_IMAGES_PER_IDENTITY,
        seed: int = 0,
        train: bool = False,
        identity_offset: int = 0,
        cache: bool = True,
    ):
        if int(num_identities) < 1 or int(images_per_identity) < 1:
            raise ValueError(
                f"num_identities and images_per_identity must be positive, got "
                f"{num_identities} and {images_per_identity}"
            )
        if int(identity_offset) < 0:
            raise ValueError(f"identity_offset must be >= 0, got {identity_offset}")
        self.num_identities = int(num_identities)
        self.images_per_identity = int(images_per_identity)
        self.seed = int(seed)
        self.train = bool(train)
        self.identity_offset = int(identity_offset)
        self.cache = bool(cache)
        self.classes = [f"synthetic_{self.identity_offset + i:06d}" for i in range(self.num_identities)]
        self.labels = [i for i in range(self.num_identities) for _ in range(self.images_per_identity)]
        self._cache: dict[int, torch.Tensor] = {}

    @classmethod
    def parse(cls, spec: str, **kwargs) -> SyntheticFaces:
        """Same as :func:`synthetic_from_spec`."""
        return synthetic_from_spec(spec, **kwargs)

    @property
    def num_classes(self) -> int:
        return self.num_identities

    def __len__(self) -> int:
        return self.num_identities * self.images_per_identity

    def identity_of(self, index: int) -> int:
        """The global identity (including ``identity_offset``) of sample ``index``."""
        return self.identity_offset + index // self.images_per_identity

    def load_uint8(self, index: int) -> tuple[torch.Tensor, int]:
        """The uint8 ``3×112×112`` image and its label; no flip."""
        label = index // self.images_per_identity
        image = self._cache.get(index)
        if image is None:
            array = render_face(self.seed, self.identity_offset + label, index % self.images_per_identity)
            image = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
            if self.cache:
                self._cache[index] = image
        return image, label

    def preload(self) -> SyntheticFaces:
        """Render every image now (needs ``cache=True``)."""
        for index in range(len(self)):
            self.load_uint8(index)
        return self

    def __repr__(self) -> str:
        return (
            f"SyntheticFaces(num_identities={self.num_identities}, images_per_identity="
            f"{self.images_per_identity}, seed={self.seed}, identity_offset={self.identity_offset}, "
            f"train={self.train})"
        )


_SPEC = re.compile(r"^synthetic(?::(\d+)(?::(\d+))?)?$")


def is_synthetic_spec(spec: object) -> bool:
    """Whether ``spec`` names the built-in dataset (``synthetic``, ``synthetic:N``, ``synthetic:N:M``)."""
    return isinstance(spec, str) and (spec == "synthetic" or spec.startswith("synthetic:"))


def synthetic_from_spec(spec: str, **kwargs) -> SyntheticFaces:
    """``synthetic`` (100 identities × 20 images), ``synthetic:N`` (N identities) or
    ``synthetic:N:M`` (N identities × M images); other keyword arguments go to SyntheticFaces."""
    match = _SPEC.match(spec.strip()) if isinstance(spec, str) else None
    if match is None:
        raise ValueError(
            f"bad synthetic dataset spec {spec!r}; expected 'synthetic', 'synthetic:N' or 'synthetic:N:M'"
        )
    if match.group(1) is not None:
        kwargs["num_identities"] = int(match.group(1))
    if match.group(2) is not None:
        kwargs["images_per_identity"] = int(match.group(2))
    return SyntheticFaces(**kwargs)
