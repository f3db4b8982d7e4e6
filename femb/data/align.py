"""Five-point face alignment: the similarity transform to the ArcFace 112×112 template, and the warp.

Points are ``(x, y)`` pixel coordinates with pixel centres at integers (the convention of
landmark detectors and of InsightFace's templates), in the order left eye, right eye, nose tip,
left mouth corner, right mouth corner — "left" as seen in the image (smaller x for a frontal face).

The transform is the least-squares similarity (rotation, uniform scale, shift; no reflection)
of Umeyama (1991) from the five points to :data:`ARCFACE_DST`. The warp samples bilinearly and
fills what lies outside the source image with black.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from femb.data.errors import DataFormatError
from femb.data.transforms import FACE_SIZE

# ArcFace's destination points in a 112×112 crop (insightface's `arcface_dst`).
ARCFACE_DST = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)
NUM_POINTS = 5
# Relative spread under which points count as one point, or as lying on one line.
_DEGENERATE = 1e-6


def similarity_transform(src: np.ndarray, dst: np.ndarray = ARCFACE_DST) -> np.ndarray:
    """The 2×3 matrix ``M`` of the least-squares similarity with ``dst ≈ M @ [x, y, 1]``.

    ``src`` and ``dst``: ``N×2`` points (N ≥ 2; five landmarks in practice). ``ValueError`` when
    ``src`` holds non-finite values, all its points coincide, or they lie on one line (five
    landmarks of a face never do: such a transform would be a guess about the missing axis).
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.ndim != 2 or src.shape[1] != 2 or src.shape != dst.shape or len(src) < 2:
        raise ValueError(f"landmarks must be N×2 points like the destination {dst.shape}, got {src.shape}")
    if not np.isfinite(src).all():
        raise ValueError("landmarks hold a non-finite value (nan or inf)")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    spread = np.linalg.svd(src_c, compute_uv=False)
    reference = max(1.0, float(np.abs(src).max()))
    if spread[0] <= _DEGENERATE * reference:
        raise ValueError("degenerate landmarks: all points coincide")
    if spread[1] <= _DEGENERATE * spread[0]:
        raise ValueError("degenerate landmarks: the points lie on one line")
    covariance = dst_c.T @ src_c / len(src)
    u, singular, vt = np.linalg.svd(covariance)
    # Umeyama's sign correction keeps a rotation (det +1) where the best orthogonal map reflects.
    signs = np.array([1.0, 1.0 if np.linalg.det(u) * np.linalg.det(vt) > 0 else -1.0])
    rotation = u @ np.diag(signs) @ vt
    scale = float((singular * signs).sum() / (src_c**2).sum(axis=1).mean())
    shift = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, shift[:, None]])


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """The inverse of a 2×3 affine map, as a 2×3 matrix."""
    linear = np.linalg.inv(matrix[:, :2])
    return np.hstack([linear, -(linear @ matrix[:, 2])[:, None]])


def warp_affine(image: Image.Image | np.ndarray, matrix: np.ndarray, size: int = FACE_SIZE) -> np.ndarray:
    """``image`` warped by the 2×3 map ``matrix`` (source → output pixel centres) into a
    ``size×size`` uint8 RGB array; bilinear, black outside the source."""
    picture = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8))
    if picture.mode != "RGB":
        picture = picture.convert("RGB")
    back = invert_affine(np.asarray(matrix, dtype=np.float64))
    # PIL samples at pixel centres x + 0.5 in coordinates where pixel i spans [i, i + 1):
    # shift the integer-centred map into that frame on both sides.
    offset = back[:, 2] + 0.5 - back[:, :2] @ np.array([0.5, 0.5])
    data = (back[0, 0], back[0, 1], offset[0], back[1, 0], back[1, 1], offset[1])
    warped = picture.transform(
        (size, size), Image.Transform.AFFINE, data, resample=Image.Resampling.BILINEAR, fillcolor=(0, 0, 0)
    )
    return np.asarray(warped, dtype=np.uint8)


def align_face(image: Image.Image | np.ndarray, landmarks: np.ndarray, size: int = FACE_SIZE) -> np.ndarray:
    """The ``size×size`` uint8 RGB face aligned from its five landmarks (``5×2`` or ten numbers)."""
    points = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    if points.shape != (NUM_POINTS, 2):
        raise ValueError(f"five landmarks (ten numbers) are needed, got {points.size} numbers")
    destination = ARCFACE_DST * (size / FACE_SIZE)
    return warp_affine(image, similarity_transform(points, destination), size)


@dataclass(frozen=True)
class LandmarkEntry:
    """One line of a landmarks file: an image path, its five points and where the line is."""

    path: str
    points: np.ndarray  # 5×2
    line: int
    score: float | None = None


def parse_landmark_line(text: str, source: str, line: int, score: bool | None = None) -> LandmarkEntry | None:
    """One landmarks line: ``path x1 y1 … x5 y5 [score]``; None for a blank or ``#`` line.

    ``score``: True requires the eleventh number (a detector score), False forbids it, None
    allows either. A bad line raises :class:`DataFormatError` naming ``source:line``.
    """
    fields = text.split()
    if not fields or fields[0].startswith("#"):
        return None
    numbers = fields[1:]
    allowed = {True: (11,), False: (10,), None: (10, 11)}[score]
    where = f"{source}:{line}"
    if len(numbers) not in allowed:
        wanted = " or ".join(str(n) for n in allowed)
        raise DataFormatError(
            f"{where}: expected an image path and {wanted} numbers (x1 y1 … x5 y5"
            f"{'' if score is False else ' [score]'}), got {len(numbers)} fields after the path"
        )
    try:
        values = np.array([float(value) for value in numbers], dtype=np.float64)
    except ValueError:
        bad = next(value for value in numbers if not _is_float(value))
        raise DataFormatError(f"{where}: {bad!r} is not a number") from None
    if not np.isfinite(values).all():
        raise DataFormatError(f"{where}: landmarks and score must be finite numbers")
    detector = float(values[10]) if len(values) == 11 else None
    return LandmarkEntry(fields[0], values[:10].reshape(NUM_POINTS, 2), line, detector)


def read_landmarks(path: str | os.PathLike, score: bool | None = None) -> list[LandmarkEntry]:
    """Every entry of a landmarks file (see :func:`parse_landmark_line` for one line's format)."""
    return list(iter_landmarks(path, score))


def iter_landmarks(path: str | os.PathLike, score: bool | None = None) -> Iterator[LandmarkEntry]:
    source = Path(path)
    try:
        handle = source.open(encoding="utf-8")
    except FileNotFoundError:
        raise DataFormatError(f"{source}: no such landmarks file") from None
    with handle:
        try:
            for number, text in enumerate(handle, start=1):
                entry = parse_landmark_line(text, str(source), number, score)
                if entry is not None:
                    yield entry
        except UnicodeDecodeError:
            raise DataFormatError(f"{source}: not a UTF-8 text file") from None


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


__all__ = [
    "ARCFACE_DST",
    "LandmarkEntry",
    "align_face",
    "invert_affine",
    "iter_landmarks",
    "parse_landmark_line",
    "read_landmarks",
    "similarity_transform",
    "warp_affine",
]
