"""Writing an image folder as an InsightFace RecordIO training set (what ``RecordIODataset`` reads)."""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from femb.data.errors import DataFormatError
from femb.data.imagefolder import ImageFolderDataset
from femb.data.recordio import RecordIOWriter
from femb.data.transforms import FACE_SIZE, IMAGE_ERRORS, fit_to_face, load_image

_WARN_FIRST = 5  # bad images named one by one in warnings; the rest are only counted


@dataclass
class PackSummary:
    images: int
    identities: int
    skipped: int
    first_bad: str | None


def encode_face(path: Path, quality: int = 95) -> bytes:
    """JPEG bytes of the 112×112 letterboxed face; an aligned 112×112 RGB JPEG is kept as it is
    (re-encoding would only lose detail)."""
    with Image.open(path) as img:
        if img.format == "JPEG" and img.size == (FACE_SIZE, FACE_SIZE) and img.mode == "RGB":
            img.load()  # a truncated JPEG fails here, not in training
            return path.read_bytes()
    buffer = io.BytesIO()
    fit_to_face(load_image(path)).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


class ExistingSetError(ValueError):
    """The output folder already holds a RecordIO set, and replacing it was not asked for."""

    def __init__(self, folder: str | os.PathLike, present: list[str]):
        self.folder = Path(folder)
        super().__init__(
            f"{folder}: already holds a RecordIO set ({', '.join(present)}); replaced only with overwrite"
        )


RECORDIO_FILES = ("train.rec", "train.idx", "property")


def pack_image_folder(
    image_folder: str | os.PathLike,
    out_dir: str | os.PathLike,
    quality: int = 95,
    on_image: Callable[[int, int], None] | None = None,
    overwrite: bool = False,
) -> PackSummary:
    """Write ``image_folder`` (one folder per identity) as an InsightFace RecordIO set in ``out_dir``.

    Images become 112×112 JPEGs (letterboxed like every femb image); unreadable ones are skipped
    and counted; identities with no readable image are left out. ``on_image(done, total)`` is called
    once per source image (progress bars). Nothing appears in ``out_dir`` until everything is written,
    and a set already there is replaced only with ``overwrite`` (as a run directory is).
    """
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"JPEG quality must lie in 1..100, got {quality}")
    present = [name for name in RECORDIO_FILES if os.path.lexists(Path(out_dir) / name)]
    if present and not overwrite:
        raise ExistingSetError(out_dir, present)
    source = ImageFolderDataset(image_folder)
    if source.num_classes < 2:
        raise DataFormatError(f"{image_folder} holds 1 identity; a training set needs at least 2")
    skipped, first_bad, label, last_class = 0, None, -1, None
    with RecordIOWriter(out_dir) as writer:
        for done, (path, class_index) in enumerate(source.samples, start=1):
            try:
                encoded = encode_face(path, int(quality))
            except IMAGE_ERRORS as error:  # ImageLoadError is a ValueError
                skipped += 1
                first_bad = first_bad or f"{path}: {' '.join(str(error).split())}"
                if skipped <= _WARN_FIRST:
                    warnings.warn(f"skipping a bad image: {path}", stacklevel=2)
            else:
                if class_index != last_class:
                    label, last_class = label + 1, class_index
                writer.add(encoded, label)
            if on_image is not None:
                on_image(done, len(source))
        if label < 1:
            raise DataFormatError(f"{image_folder}: fewer than 2 identities have a readable image")
    return PackSummary(len(source) - skipped, label + 1, skipped, first_bad)
