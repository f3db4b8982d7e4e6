"""Procedurally drawn face-like identities: a built-in dataset that needs no download.

Each identity is a fixed geometry with colours from small shared palettes
(:mod:`femb.data.synthetic_identity`); each image varies pose, expression and camera
(:mod:`femb.data.synthetic_render`), so geometry, not mean colour, tells identities apart.

Determinism: image ``j`` of identity ``i`` depends only on ``(seed, i, j)``; identity
parameters only on ``(seed, i)``. ``identity_offset`` shifts which identities a dataset holds,
so a validation set can use identities disjoint from the training set.
"""

from __future__ import annotations

import re

import numpy as np
import torch

from femb.data.faces import LabelledFaces
from femb.data.synthetic_render import render_face

DEFAULT_NUM_IDENTITIES = 100
DEFAULT_IMAGES_PER_IDENTITY = 20


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


__all__ = [
    "DEFAULT_IMAGES_PER_IDENTITY",
    "DEFAULT_NUM_IDENTITIES",
    "SyntheticFaces",
    "is_synthetic_spec",
    "render_face",
    "synthetic_from_spec",
]
