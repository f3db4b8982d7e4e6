"""Image decoding and the one tensor format every femb model sees.

A face tensor is float32 ``3×112×112``, RGB, ``(x - 127.5) / 127.5`` (so values lie in [-1, 1]).

Non-square images are letterboxed: resized so that the longer side is 112 (aspect ratio kept),
then padded symmetrically with black. Nothing of the face is cropped away (ORL's 92×112 faces
keep hair and chin) and the padding is the same constant for every image, so it carries no
identity. Already-aligned 112×112 images (InsightFace sets) pass through untouched.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter, UnidentifiedImageError

from femb.errors import one_line

FACE_SIZE = 112
MEAN = 127.5
STD = 127.5
# ITU-R 601 luma weights, a (3, 1) column so that ``pixels @ LUMA`` maps H×W×3 to H×W×1.
LUMA = np.array([[0.299], [0.587], [0.114]], dtype=np.float32)


# What decoding a file that is not a usable image raises. PIL's refusal of an image past its pixel
# limit (a decompression bomb: a small file declaring billions of pixels) is no OSError: without it
# here such a file would end a run as an internal error instead of counting as a bad image.
# SyntaxError: PIL raises it for some malformed headers (e.g. broken PNG chunks).
IMAGE_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError)


class ImageLoadError(ValueError):
    """A file (or encoded buffer) that cannot be decoded as an image; the message names it."""


def load_image(path: str | os.PathLike) -> Image.Image:
    """Decode an image file of any mode (grayscale, PGM, palette, RGBA, 16-bit, ...) to PIL RGB."""
    try:
        with Image.open(path) as img:
            img.load()
            return _to_rgb(img)
    except IMAGE_ERRORS as error:
        raise ImageLoadError(f"cannot read image {path}: {one_line(error)}") from None


def decode_image(data: bytes | bytearray | memoryview | np.ndarray, name: str = "<bytes>") -> Image.Image:
    """Decode an encoded image (JPEG/PNG/... bytes) to PIL RGB; ``name`` goes into the error message."""
    if isinstance(data, np.ndarray):
        data = data.tobytes()
    try:
        with Image.open(io.BytesIO(bytes(data))) as img:
            img.load()
            return _to_rgb(img)
    except IMAGE_ERRORS as error:
        raise ImageLoadError(f"cannot decode image {name}: {one_line(error)}") from None


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img.copy()
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit / integer / float grayscale: scale the actual range to 8 bits instead of clipping.
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        img = Image.fromarray(arr.round().astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Transparent areas become black, like the letterbox padding.
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (0, 0, 0))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


def fit_to_face(img: Image.Image, size: int = FACE_SIZE) -> Image.Image:
    """Letterbox an RGB image to ``size×size``: keep the aspect ratio, pad with black, centred."""
    if img.mode != "RGB":
        img = _to_rgb(img)
    width, height = img.size
    if (width, height) == (size, size):
        return img
    scale = size / max(width, height)
    new_w = max(1, round(width * scale))
    new_h = max(1, round(height * scale))
    if (new_w, new_h) != (width, height):
        img = img.resize((new_w, new_h), Image.Resampling.BILINEAR, reducing_gap=3.0)
    canvas = Image.new("RGB", (size, size), (0, 0, 0))
    canvas.paste(img, ((size - new_w) // 2, (size - new_h) // 2))
    return canvas


def to_face_uint8(img: Image.Image | np.ndarray) -> torch.Tensor:
    """The letterboxed 112×112 image as a uint8 ``3×112×112`` tensor (compact, for caches)."""
    if isinstance(img, np.ndarray):
        img = _array_to_pil(img)
    arr = np.asarray(fit_to_face(img), dtype=np.uint8)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def _array_to_pil(arr: np.ndarray) -> Image.Image:
    if arr.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image array (H×W×3 or H×W), got dtype {arr.dtype}")
    if arr.ndim == 2:
        return Image.fromarray(arr, mode="L").convert("RGB")
    if arr.ndim == 3 and arr.shape[2] == 3:
        return Image.fromarray(np.ascontiguousarray(arr), mode="RGB")
    if arr.ndim == 3 and arr.shape[2] == 4:
        return _to_rgb(Image.fromarray(np.ascontiguousarray(arr), mode="RGBA"))
    raise ValueError(f"expected an image array of shape H×W×3 (or H×W), got {arr.shape}")


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``[...,3,H,W]`` → float32 ``(x - 127.5) / 127.5``."""
    if images.device.type == "cpu" and not images.requires_grad:
        # numpy, single-threaded: for one image torch's thread pool costs more than the arithmetic.
        array = images.numpy().astype(np.float32)
        array -= np.float32(MEAN)
        array /= np.float32(STD)
        return torch.from_numpy(array)
    return (images.to(torch.float32) - MEAN) / STD


def denormalize(images: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`normalize`, rounded and clamped to uint8 (for saving or showing images)."""
    return (images.detach().to(torch.float32) * STD + MEAN).round().clamp(0, 255).to(torch.uint8)


def to_face_tensor(img: Image.Image | np.ndarray) -> torch.Tensor:
    """PIL image (any mode) or uint8 ``H×W×3`` / ``H×W`` array → float32 face tensor ``3×112×112``."""
    return normalize(to_face_uint8(img))


def hflip(images: torch.Tensor) -> torch.Tensor:
    """Mirror left-right; works on one ``C×H×W`` image or a batch ``N×C×H×W``."""
    return torch.flip(images, dims=(-1,))


def random_hflip(
    image: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Mirror one image with probability ``p`` (training augmentation)."""
    if torch.rand((), generator=generator).item() < p:
        return hflip(image)
    return image


def image_files(folder: str | os.PathLike, extensions: tuple[str, ...]) -> list[Path]:
    """Image files under ``folder`` (recursively, hidden entries skipped), sorted for stable order."""
    suffixes = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions}
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in suffixes:
                found.append(Path(dirpath) / name)
    return sorted(found)


class FaceAugment:
    """Training augmentation for *aligned* faces: uint8 ``3×H×W`` in, normalised float ``3×H×W`` out.

    In order: a random resized crop that keeps the alignment (a shift of at most ``shift``
    pixels and a zoom within ±``zoom``, bilinear; uncovered border pixels are black, like the
    letterbox padding), a horizontal flip with probability ``flip``, a colour jitter
    (brightness, contrast and saturation factors drawn from ``[1 − x, 1 + x]``), a light Gaussian
    blur with probability ``blur`` (radius 0.3–1.0 px), with probability ``erase`` a random
    rectangle (2–15 % of the image) set to mid-grey, and with probability ``grayscale`` the face
    turned grey (ITU-R 601 luma in all three channels, for a target domain of grey photographs).
    ``0`` switches a part off.

    Every draw comes from torch's *global* generator, and the same number of draws (14) is made
    for every image whatever the outcome, so a training loop that seeds the global generator
    before each batch (femb's does, from seed, step and rank) replays the same augmentations on
    resume. The pixel work is PIL and numpy on uint8/float32 (about 0.3 ms an image on one core;
    the same in torch ops costs ten times more for one 112×112 image).
    """

    NAMES = ("shift", "zoom", "flip", "brightness", "contrast", "saturation", "blur", "erase", "grayscale")
    LIMITS = {"shift": 32.0, "zoom": 0.5}

    def __init__(
        self,
        shift: float = 4.0,
        zoom: float = 0.05,
        flip: float = 0.5,
        brightness: float = 0.2,
        contrast: float = 0.2,
        saturation: float = 0.2,
        blur: float = 0.1,
        erase: float = 0.0,
        grayscale: float = 0.0,
    ) -> None:
        values = (shift, zoom, flip, brightness, contrast, saturation, blur, erase, grayscale)
        for name, value in zip(self.NAMES, values, strict=True):
            high = self.LIMITS.get(name, 1.0)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= high:
                raise ValueError(f"augmentation {name}={value!r}: expected a number in [0, {high:g}]")
            setattr(self, name, float(value))

    @classmethod
    def off(cls) -> FaceAugment:
        """No augmentation at all, not even the flip."""
        return cls(**{name: 0.0 for name in cls.NAMES})

    def options(self) -> dict[str, float]:
        """The constructor arguments, by name."""
        return {name: getattr(self, name) for name in self.NAMES}

    def __repr__(self) -> str:
        return "FaceAugment(" + ", ".join(f"{k}={v:g}" for k, v in self.options().items()) + ")"

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """``image``: uint8 ``3×H×W`` (femb's cache format); returns the augmented face, normalised."""
        u = torch.rand(14).tolist()  # all draws up front: the stream never depends on outcomes
        pil = Image.fromarray(np.ascontiguousarray(image.numpy().transpose(1, 2, 0)), mode="RGB")
        if self.shift or self.zoom:
            pil = self._crop(pil, u[0:3])
        if u[7] < self.blur:
            pil = pil.filter(ImageFilter.GaussianBlur(radius=0.3 + 0.7 * u[8]))
        pixels = np.asarray(pil, dtype=np.float32) * np.float32(1.0 / 255.0)
        if u[3] < self.flip:
            pixels = pixels[:, ::-1]
        if self.brightness or self.contrast or self.saturation:
            pixels = self._jitter(pixels, u[4:7])
        if u[9] < self.erase:
            pixels = _erase(pixels, u[10:13])
        if u[13] < self.grayscale:
            pixels = np.repeat(pixels @ LUMA, 3, axis=2)
        array = pixels.transpose(2, 0, 1) * np.float32(2.0) - np.float32(1.0)  # [0, 1] → [-1, 1]
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))

    def _crop(self, pil: Image.Image, u: list[float]) -> Image.Image:
        width, height = pil.size
        scale = 1.0 + self.zoom * (2.0 * u[0] - 1.0)  # > 1 zooms in
        dx, dy = self.shift * (2.0 * u[1] - 1.0), self.shift * (2.0 * u[2] - 1.0)
        # PIL's affine maps output to input pixels: zoom about the centre, then shift.
        cx, cy = width / 2.0, height / 2.0
        coefficients = (1 / scale, 0.0, cx - cx / scale + dx, 0.0, 1 / scale, cy - cy / scale + dy)
        return pil.transform(pil.size, Image.Transform.AFFINE, coefficients, Image.Resampling.BILINEAR)

    def _jitter(self, pixels: np.ndarray, u: list[float]) -> np.ndarray:
        pixels = pixels * np.float32(1.0 + self.brightness * (2.0 * u[0] - 1.0))
        mean = pixels.mean()
        pixels = (pixels - mean) * np.float32(1.0 + self.contrast * (2.0 * u[1] - 1.0)) + mean
        grey = pixels @ LUMA
        pixels = (pixels - grey) * np.float32(1.0 + self.saturation * (2.0 * u[2] - 1.0)) + grey
        return np.clip(pixels, 0.0, 1.0)


def _erase(pixels: np.ndarray, u: list[float]) -> np.ndarray:
    """A rectangle of 2–15 % of the image (aspect ratio in [1/2, 2]) set to mid-grey."""
    height, width = pixels.shape[:2]
    area = (0.02 + 0.13 * u[0]) * height * width
    aspect = 2.0 ** (2.0 * u[1] - 1.0)
    h = min(height, max(1, round((area * aspect) ** 0.5)))
    w = min(width, max(1, round((area / aspect) ** 0.5)))
    # One draw places it: its integer part over the (rows × columns) of possible corners.
    top, left = divmod(int(u[2] * (height - h + 1) * (width - w + 1)), width - w + 1)
    pixels = pixels.copy()
    pixels[top : top + h, left : left + w] = 0.5
    return pixels
