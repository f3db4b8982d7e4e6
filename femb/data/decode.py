"""The one decode step of the training input pipeline: encoded bytes → uint8 ``3×112×112`` face.

JPEGs (what RecordIO sets hold, and most image folders) are decoded by ``simplejpeg``
(libjpeg-turbo's TurboJPEG API) when it is installed: faster than going through PIL for a 112×112
face (benchmarks/bench_input_pipeline.py, figures in benchmarks/RESULTS.md), where PIL's
per-image overhead (file parsing, image objects, copies) outweighs the decode itself. A JPEG whose
longer side is at least 4×112 is decoded at 1/2, 1/4 or 1/8 scale in
the DCT domain, its longer side kept at 2×112 or more so that the letterbox's antialiased resize
still does the last 2× (pixels then differ from a full decode by less than a JPEG q95 round trip;
going down to 112 in the DCT domain would differ by up to 60 levels at edges). Smaller JPEGs decode
to the same pixels as PIL's (same library, same accurate DCT and upsampling). Anything else (PNG,
PGM, CMYK JPEGs, files ``simplejpeg`` refuses, or no ``simplejpeg``) goes through PIL, whose error
names the file.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from femb.data.transforms import (
    FACE_SIZE,
    decode_image,
    fit_to_face,
    load_image,
    to_face_uint8,
)

try:  # optional: a declared dependency, but a missing wheel must not stop femb
    import simplejpeg
except ImportError:  # pragma: no cover - depends on the platform
    simplejpeg = None

_JPEG_MAGIC = b"\xff\xd8\xff"
_DCT_FLOOR = 2 * FACE_SIZE
_FAST_COLORSPACES = ("YCbCr", "Gray")  # CMYK/YCCK JPEGs: PIL knows Adobe's inverted ink convention


def _fast_jpeg(data: bytes | memoryview) -> np.ndarray | None:
    """``H×W×3`` RGB uint8 decoded by libjpeg-turbo, or ``None`` when PIL should decode it."""
    if simplejpeg is None or bytes(data[:3]) != _JPEG_MAGIC:
        return None
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
        if colorspace not in _FAST_COLORSPACES:
            return None
        if height == width == FACE_SIZE:
            return simplejpeg.decode_jpeg(data, colorspace="RGB")
        # Scale down in the DCT domain by a power of two while the longer side stays >= 2×112.
        along_width = width >= height
        return simplejpeg.decode_jpeg(
            data,
            colorspace="RGB",
            min_width=_DCT_FLOOR if along_width else 0,
            min_height=0 if along_width else _DCT_FLOOR,
            min_factor=2,
        )
    except (ValueError, TypeError):  # TypeError: an older simplejpeg without these keywords
        return None  # PIL decodes it, or raises the error that names the file


def _chw(array: np.ndarray) -> torch.Tensor:
    """``H×W×3`` → the letterboxed ``3×112×112`` tensor (:func:`fit_to_face`'s pixels)."""
    height, width = array.shape[:2]
    if max(height, width) == FACE_SIZE:
        # No resize, only padding (ORL's 92×112, or already 112×112): place it in numpy, no PIL.
        out = np.zeros((3, FACE_SIZE, FACE_SIZE), dtype=np.uint8)
        top, left = (FACE_SIZE - height) // 2, (FACE_SIZE - width) // 2
        out[:, top : top + height, left : left + width] = array.transpose(2, 0, 1)
        return torch.from_numpy(out)
    from PIL import Image

    array = np.asarray(fit_to_face(Image.fromarray(array, mode="RGB")), dtype=np.uint8)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def decode_face(data: bytes | bytearray | memoryview | np.ndarray, name: str = "<bytes>") -> torch.Tensor:
    """Encoded image bytes → letterboxed uint8 ``3×112×112``; :class:`ImageLoadError` names ``name``."""
    if isinstance(data, np.ndarray):
        data = data.tobytes()
    array = _fast_jpeg(data)
    if array is not None:
        return _chw(array)
    return to_face_uint8(decode_image(data, name=name))


def load_face(path: str | os.PathLike) -> torch.Tensor:
    """An image file → letterboxed uint8 ``3×112×112``; :class:`ImageLoadError` names the file."""
    if simplejpeg is not None:
        try:
            with open(path, "rb") as file:
                head = file.read(3)
                if head == _JPEG_MAGIC:
                    array = _fast_jpeg(head + file.read())
                    if array is not None:
                        return _chw(array)
        except OSError:
            pass  # PIL's reader raises the error that names the file
    return to_face_uint8(load_image(path))
