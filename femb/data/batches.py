"""Any collection of face images as femb float batches ``B×3×112×112`` (RGB, (x−127.5)/127.5).

Accepted: normalised float tensors/arrays (one image or a batch), uint8 images (``H×W×3``,
``H×W``, ``N×H×W×3`` RGB, or femb's ``3×H×W`` caches; letterboxed to 112×112 when another size),
PIL images, image file paths, a list of these, or a map-style dataset of images or
``(image, label)`` items. Shared by ``FaceEmbeddingModel.encode`` and the inference embedders.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
from PIL import Image

from femb.data.transforms import load_image, normalize, to_face_tensor


def _iter_faces(images: Any) -> Iterator[torch.Tensor]:
    """Each input image as a femb float ``3×112×112`` tensor."""
    if isinstance(images, (str, os.PathLike, Image.Image)):
        yield _one_face(images)
        return
    if isinstance(images, (torch.Tensor, np.ndarray)):
        yield from _array_faces(images)
        return
    if not isinstance(images, Iterable) and hasattr(images, "__getitem__") and hasattr(images, "__len__"):
        dataset = images  # a map-style Dataset
        images = (dataset[index] for index in range(len(dataset)))
    if isinstance(images, Iterable):
        for item in images:
            if isinstance(item, (torch.Tensor, np.ndarray)):
                yield from _array_faces(item)
            elif isinstance(item, (tuple, list)) and item and isinstance(item[0], (torch.Tensor, np.ndarray)):
                yield from _array_faces(item[0])  # (image, label) from a dataset
            else:
                yield _one_face(item)
        return
    raise TypeError(f"cannot embed {type(images).__name__}: expected images, arrays, tensors or paths")


def _one_face(item: Any) -> torch.Tensor:
    if isinstance(item, (str, os.PathLike)):
        return to_face_tensor(load_image(item))
    if isinstance(item, Image.Image):
        return to_face_tensor(item)
    raise TypeError(f"cannot embed {type(item).__name__}: expected an image, an array, a tensor or a path")


def _array_faces(array: torch.Tensor | np.ndarray) -> Iterator[torch.Tensor]:
    tensor = array if isinstance(array, torch.Tensor) else torch.from_numpy(np.asarray(array))
    if tensor.dtype == torch.uint8:
        # uint8: H×W, H×W×3 (one image) or N×H×W×3 (a batch), RGB; CHW (femb caches) also accepted.
        if tensor.ndim == 4 and tensor.shape[1] == 3 and tensor.shape[3] != 3:
            yield from (
                normalize(image)
                if image.shape[1:] == (112, 112)
                else to_face_tensor(image.permute(1, 2, 0).numpy())
                for image in tensor
            )
        elif tensor.ndim == 4:
            yield from (to_face_tensor(image.numpy()) for image in tensor)
        elif tensor.ndim == 3 and tensor.shape[0] == 3 and tensor.shape[2] != 3:
            yield to_face_tensor(tensor.permute(1, 2, 0).numpy())
        elif tensor.ndim in (2, 3):
            yield to_face_tensor(tensor.numpy())
        else:
            raise ValueError(
                f"expected a uint8 image H×W×3 or a batch N×H×W×3, got shape {tuple(tensor.shape)}"
            )
        return
    tensor = tensor.detach().to("cpu", torch.float32)
    if tensor.ndim == 3 and tensor.shape[0] == 3:
        yield tensor
    elif tensor.ndim == 4 and tensor.shape[1] == 3:
        yield from tensor
    else:
        raise ValueError(
            f"expected a normalised float tensor 3×112×112 or N×3×112×112, got shape {tuple(tensor.shape)} "
            "(uint8 H×W×3 arrays are accepted too)"
        )


def face_batches(images: Any, batch_size: int) -> Iterator[torch.Tensor]:
    """femb float batches of at most ``batch_size`` images; a float batch is split without copies."""
    if isinstance(images, (torch.Tensor, np.ndarray)) and images.dtype not in (np.uint8, torch.uint8):
        tensor = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.asarray(images))
        if tensor.ndim == 4 and tensor.shape[1] == 3:
            yield from tensor.detach().to("cpu", torch.float32).split(batch_size)
            return
    batch: list[torch.Tensor] = []
    for face in _iter_faces(images):
        batch.append(face)
        if len(batch) == batch_size:
            yield torch.stack(batch)
            batch = []
    if batch:
        yield torch.stack(batch)
