"""The face images an int8 quantization is calibrated on: chosen seeded from a set, and fingerprinted.

A source is ``synthetic`` (femb's rendered faces), a verification ``.bin``, an InsightFace RecordIO
set (a folder holding ``train.rec``, or the ``.rec`` file) or a folder of images (searched
recursively). ``count`` images are drawn in a seeded order; unreadable ones are skipped and the
next in that order is taken, so a few bad files do not change which good ones are used.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from femb.data.transforms import denormalize

SYNTHETIC = "synthetic"
SYNTHETIC_IMAGES_PER_IDENTITY = 4


@dataclass
class CalibrationImages:
    """``faces``: femb float ``N×3×112×112``; ``sha256``: of their uint8 pixels, in order."""

    faces: torch.Tensor
    name: str
    sha256: str
    requested: int
    notes: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return int(self.faces.shape[0])


def load_calibration_images(source: str | os.PathLike, count: int, seed: int = 0) -> CalibrationImages:
    """``count`` images of ``source`` (see the module docstring), fewer with a note when it holds fewer.

    A ``ValueError`` naming ``source`` when it does not exist, is of no known kind, or has no
    readable image.
    """
    if int(count) < 1:
        raise ValueError(f"calibration_images must be at least 1, got {count}")
    count = int(count)
    images, name = _open(source, count, seed)
    order = np.random.default_rng(seed).permutation(len(images))
    faces: list[torch.Tensor] = []
    skipped, first_error = 0, ""
    for index in order:
        if len(faces) == count:
            break
        try:
            item = images[int(index)]
        except (ValueError, OSError) as error:  # ImageLoadError and DataFormatError are ValueErrors
            skipped, first_error = skipped + 1, first_error or str(error)
            continue
        faces.append(item[0] if isinstance(item, tuple) else item)
    if not faces:
        raise ValueError(f"calibration {name}: no readable image ({first_error or 'the set is empty'})")
    notes = []
    if len(faces) < count:
        notes.append(f"calibration {name}: {len(faces)} readable images, fewer than the {count} asked for")
    if skipped:
        notes.append(f"calibration {name}: skipped {skipped} unreadable images (first: {first_error})")
    stacked = torch.stack(faces).float()
    digest = hashlib.sha256(denormalize(stacked).numpy().tobytes()).hexdigest()
    return CalibrationImages(stacked, name, digest, count, notes)


def _open(source: str | os.PathLike, count: int, seed: int) -> tuple[Dataset, str]:
    from femb.data import SyntheticFaces, load_verification_bin
    from femb.data.pairs import PathImages
    from femb.data.recordio_dataset import RecordIODataset, recordio_paths

    if str(source) == SYNTHETIC:
        per_identity = SYNTHETIC_IMAGES_PER_IDENTITY
        identities = -(-count // per_identity)
        faces = SyntheticFaces(identities, images_per_identity=per_identity, seed=seed, cache=False)
        return faces, SYNTHETIC
    path = Path(source)
    if not path.exists():
        raise ValueError(
            f"calibration {path}: no such file or folder "
            f"(expected images, a .bin, a RecordIO set or {SYNTHETIC})"
        )
    if recordio_paths(path) is not None:
        return RecordIODataset(path, on_bad_image="error"), path.name
    if path.is_file() and path.suffix.lower() == ".bin":
        return load_verification_bin(path).images, path.name
    if path.is_dir():
        return PathImages(_image_files(path)), path.name
    raise ValueError(f"calibration {path}: not an image folder, a .bin, a RecordIO set or {SYNTHETIC}")


def _image_files(folder: Path) -> list[Path]:
    from femb.data import IMAGE_EXTENSIONS

    # os.walk, not Path.rglob: a folder of symlinked identity folders is searched too.
    found = (Path(root) / name for root, _, names in os.walk(folder, followlinks=True) for name in names)
    return sorted(p for p in found if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


__all__ = ["SYNTHETIC", "CalibrationImages", "load_calibration_images"]
