"""Agreement between an exported model and the PyTorch backbone it came from, on face-like images."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from femb.data.transforms import normalize
from femb.inference.runtime import create_session, run_session

DEFAULT_PARITY_BATCHES = (1, 32)


@dataclass(frozen=True)
class ParityResult:
    """How far one batch of ONNX embeddings is from PyTorch's (raw embeddings, not normalised)."""

    batch_size: int
    max_abs_diff: float
    min_cosine: float

    def to_dict(self) -> dict:
        return {
            "batch_size": self.batch_size,
            "max_abs_diff": self.max_abs_diff,
            "min_cosine": self.min_cosine,
        }


def compare_embeddings(reference: np.ndarray, candidate: np.ndarray) -> ParityResult:
    """Max absolute difference and the smallest row-wise cosine similarity of two N×D arrays.

    Computed in float64 so that the comparison itself adds no error. A NaN anywhere gives a NaN
    cosine, which fails every bound.
    """
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    if reference.shape != candidate.shape:
        raise ValueError(f"embedding shapes differ: PyTorch {reference.shape}, ONNX {candidate.shape}")
    dot = (reference * candidate).sum(axis=1)
    norms = np.linalg.norm(reference, axis=1) * np.linalg.norm(candidate, axis=1)
    cosine = dot / np.maximum(norms, 1e-30)
    if not (np.isfinite(reference).all() and np.isfinite(candidate).all()):
        cosine = np.full_like(cosine, np.nan)
    return ParityResult(
        batch_size=int(reference.shape[0]),
        max_abs_diff=float(np.abs(reference - candidate).max()),
        min_cosine=float(cosine.min()),
    )


def format_cosine(cosine: float) -> str:
    """``0.9999994 (1-cos 5.8e-07)``: seven decimals alone would print 1.0000000 for 0.99999999."""
    return f"{cosine:.7f} (1-cos {1.0 - cosine:.1e})"


@functools.lru_cache(maxsize=4)
def face_batch(batch_size: int, seed: int = 0) -> torch.Tensor:
    """``batch_size`` uint8 ``3×112×112`` face-like images (femb's synthetic faces, several identities).

    Real-looking faces exercise the activations a trained network sees (random noise does not);
    random images are the fallback when the synthetic renderer is not available.
    """
    try:
        from femb.data.synthetic import SyntheticFaces
    except ImportError:  # the renderer is part of femb.data; keep export usable without it
        generator = torch.Generator().manual_seed(seed)
        return torch.randint(0, 256, (batch_size, 3, 112, 112), dtype=torch.uint8, generator=generator)
    per_identity = 2
    faces = SyntheticFaces(
        num_identities=max(1, -(-batch_size // per_identity)),
        images_per_identity=per_identity,
        seed=seed,
        cache=False,
    )
    return torch.stack([faces.load_uint8(index)[0] for index in range(batch_size)])


def check_parity(
    model: bytes | str | os.PathLike,
    backbone: nn.Module,
    batch_sizes: tuple[int, ...] = DEFAULT_PARITY_BATCHES,
    on_batch: Callable[[int, int], None] | None = None,
) -> list[ParityResult]:
    """Run onnxruntime (CPU) and the fp32 PyTorch ``backbone`` on the same face batches and compare.

    ``model``: serialized ONNX bytes or a path, fed as its metadata says.
    ``on_batch(index, batch_size)``: called as each batch starts.
    """
    session = create_session(model)
    backbone = backbone.cpu().float().eval()
    results = []
    for index, batch_size in enumerate(batch_sizes):
        if on_batch is not None:
            on_batch(index, int(batch_size))
        faces = face_batch(int(batch_size))
        with torch.no_grad():
            expected = backbone(normalize(faces)).float().numpy()
        results.append(compare_embeddings(expected, onnx_embeddings(session, faces)))
    return results


def onnx_embeddings(session, faces: torch.Tensor) -> np.ndarray:
    """The session's embeddings of uint8 ``N×3×H×W`` ``faces``, fed as the model's metadata says."""
    return run_session(session, normalize(faces))
