"""A set of images decoded once and kept, for a validation set scored again and again.

An evaluation every N steps would otherwise decode every JPEG/PNG of a ``.bin`` (or render every
synthetic face) each time. The pixels are kept as uint8 (37 KB per face, a quarter of float32);
a source whose tensors are not exactly uint8 pixels normalised is kept as float32 instead, so the
cache never changes a figure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.utils.data import Dataset

from femb.data.transforms import denormalize, normalize


class DecodedImages(Dataset):
    """``source``'s images (face tensors, or ``(image, label, ...)`` items), decoded on the first
    :meth:`decode` (or first access) and served from memory afterwards; ``decodes`` counts the
    source's images read, so that a caller can tell it happened once."""

    def __init__(self, source: Dataset):
        self.source = source
        self.decodes = 0
        self._pixels: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.source)

    @property
    def decoded(self) -> bool:
        return self._pixels is not None

    def decode(self, on_image: Callable[[int, int], None] | None = None) -> None:
        """Read every image of the source once (``on_image(done, total)`` follows it)."""
        if self._pixels is not None:
            return
        total = len(self.source)
        kept: list[torch.Tensor] = []
        exact = True
        for index in range(total):
            item = self.source[index]
            self.decodes += 1
            image = item[0] if isinstance(item, (tuple, list)) else item
            image = image.detach().to("cpu", torch.float32)
            if exact:
                pixels = denormalize(image)
                if torch.equal(normalize(pixels), image):
                    kept.append(pixels)
                else:  # not uint8 pixels: float32 from here on (the earlier ones were exact)
                    exact = False
                    kept = [normalize(p) for p in kept] + [image]
            else:
                kept.append(image)
            if on_image is not None:
                on_image(index + 1, total)
        self._pixels = torch.stack(kept) if kept else torch.empty((0, 3, 112, 112), dtype=torch.uint8)

    def _batch(self, indices: Sequence[int]) -> torch.Tensor:
        self.decode()
        chosen = self._pixels[torch.as_tensor(list(indices), dtype=torch.long)]
        return normalize(chosen) if chosen.dtype == torch.uint8 else chosen

    def __getitem__(self, index: int) -> torch.Tensor:
        return self._batch([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[torch.Tensor]:
        # A DataLoader asks for a whole batch at once: one gather and one normalisation.
        return list(self._batch(indices))
