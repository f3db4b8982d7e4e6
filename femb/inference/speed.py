"""What a user sees of a model's speed: its precision and the images per second it embedded."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

PRECISIONS = ("fp32", "fp16", "int8")


def model_precision(source: Any) -> str:
    """``int8``, ``fp16`` or ``fp32``: the ``precision`` an embedder's or a model's metadata records.

    ``source``: an embedder (anything with ``metadata``) or a metadata dict. A PyTorch model and a
    foreign ONNX file without the key are fp32.
    """
    metadata = getattr(source, "metadata", source) or {}
    precision = str(metadata.get("precision", "fp32")).lower()
    return precision if precision in PRECISIONS else "fp32"


@dataclass
class Throughput:
    """Images embedded and the seconds spent in the model: ``with meter.timing(n): ...`` adds one batch."""

    images: int = 0
    seconds: float = 0.0

    @contextmanager
    def timing(self, images: int) -> Iterator[None]:
        started = time.perf_counter()
        yield
        self.seconds += time.perf_counter() - started
        self.images += int(images)

    def wrap(self, embed_fn: Callable) -> Callable:
        """``embed_fn`` (a batch → embeddings) that counts its batches and time here."""

        def timed(batch, *args, **kwargs):
            with self.timing(len(batch)):
                return embed_fn(batch, *args, **kwargs)

        return timed

    @property
    def images_per_second(self) -> float | None:
        return self.images / self.seconds if self.seconds > 0 else None

    def describe(self) -> str:
        """``412.3 images/s`` (or ``images/s not measured``)."""
        rate = self.images_per_second
        return "images/s not measured" if rate is None else f"{rate:,.1f} images/s"

    def to_dict(self, precision: str | None = None) -> dict[str, Any]:
        """The summary / JSON fields: ``images_per_second`` (2 decimals), ``forward_images``,
        ``model_seconds`` and, when given, ``precision``."""
        rate = self.images_per_second
        out: dict[str, Any] = {
            "images_per_second": None if rate is None else round(rate, 2),
            "forward_images": self.images,
            "model_seconds": round(self.seconds, 4),
        }
        if precision is not None:
            out["precision"] = precision
        return out


__all__ = ["PRECISIONS", "Throughput", "model_precision"]
