"""The indexing shared by identity datasets (image folders, synthetic faces)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import Dataset

from femb.data.transforms import normalize, random_hflip


class LabelledFaces(Dataset):
    """``dataset[i] -> (image 3×112×112 float, label)``; subclasses provide ``load_uint8(i)`` and
    ``__len__``, and set ``classes``, ``labels`` and ``train`` (a random horizontal flip for training)."""

    train: bool = False
    # Training augmentation (uint8 image in, normalised float out, e.g. FaceAugment); when None,
    # training images get only a random horizontal flip.
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None
    # Declared here, once, for every identity dataset (training code and pair builders rely on them).
    classes: list[str]
    """Identity names; ``classes[label]`` names the identity of ``label``."""
    labels: list[int]
    """The label of every image, in index order (``0 <= label < num_classes``)."""

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def load_uint8(self, index: int) -> tuple[torch.Tensor, int]:
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        image, label = self.load_uint8(index)
        if self.train and self.augment is not None:
            return self.augment(image), label
        image = normalize(image)
        if self.train:
            image = random_hflip(image)
        return image, label
