"""A calibrated threshold written into an exported model, and the fingerprint of the set it came from.

Only the metadata changes; the file is rewritten atomically, and only after the rewritten model
has given the same embeddings as the file it replaces (the export's parity check, between the
two ONNX files instead of PyTorch and ONNX).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

import onnx

from femb.export.graph import ExportError
from femb.export.metadata import ModelThreshold, read_metadata, set_metadata
from femb.export.onnx_export import DEFAULT_MIN_COSINE
from femb.export.parity import ParityResult, compare_embeddings, face_batch, format_cosine, onnx_embeddings
from femb.fileio import atomic_write_bytes, require_regular_file
from femb.inference.runtime import create_session

_CHUNK = 1 << 20


def write_threshold(path: str | os.PathLike, threshold: ModelThreshold) -> ParityResult:
    """Store ``threshold`` in the metadata of the ONNX model at ``path`` (other keys kept).

    Returns how the rewritten model's embeddings compare with the original's on face images;
    raises :class:`~femb.export.ExportError` (and writes nothing) when they differ.
    """
    path = require_regular_file(path, "model")
    model = onnx.load(os.fspath(path))
    meta = read_metadata(model)
    meta.update(threshold.to_metadata())
    before = model.SerializeToString()
    set_metadata(model, meta)
    after = model.SerializeToString()
    original = create_session(before)
    faces = face_batch(_parity_batch(original))
    rewritten = create_session(after)
    parity = compare_embeddings(onnx_embeddings(original, faces), onnx_embeddings(rewritten, faces))
    if not parity.min_cosine >= DEFAULT_MIN_COSINE:
        raise ExportError(
            f"{path}: the model with its threshold disagrees with the original "
            f"(min cosine {format_cosine(parity.min_cosine)}); {path} was not changed"
        )
    atomic_write_bytes(path, after)
    return parity


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def image_pairs_sha256(
    pairs: Iterable[tuple[str | os.PathLike, str | os.PathLike, bool]], root: str | os.PathLike
) -> str:
    """Hex SHA-256 of a pair list and its images: each pair's two paths (relative to ``root``, ``/``
    separators) and flag, then every distinct image's path and bytes in sorted order. Moving the
    folder keeps the digest; changing a pixel, a pair or a flag changes it."""
    root = Path(root)
    digest = hashlib.sha256()
    images: set[str] = set()
    for first, second, same in pairs:
        names = [Path(os.path.relpath(Path(p), root)).as_posix() for p in (first, second)]
        images.update(names)
        digest.update(f"{names[0]}\t{names[1]}\t{int(bool(same))}\n".encode())
    for name in sorted(images):
        digest.update(f"{name}\n".encode())
        with open(root / name, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def _parity_batch(session) -> int:
    """2, or the batch size a graph with a fixed batch axis takes."""
    first = (session.get_inputs()[0].shape or [None])[0]
    return first if isinstance(first, int) and first > 0 else 2


__all__ = ["file_sha256", "image_pairs_sha256", "write_threshold"]
