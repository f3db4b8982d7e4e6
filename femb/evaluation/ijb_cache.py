"""The IJB face-feature cache: raw embeddings in ``FILE.npy``, what they came from in ``FILE.npy.json``.

The array is ``N×D`` (faces alone) or ``N×2D`` (faces, then their mirrors), one row per line of the
face list, NaN where an image was skipped. The sidecar holds what the caller says identifies
them (for `femb verify ijb`: the SHA-256 of the model file, of the face list and of the landmarks
file); the cache is used only when all of it matches, so a re-run with other pooling options
reuses it and a new model never does.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from femb.evaluation.ijb import FaceEmbeddings
from femb.fileio import atomic_write, atomic_write_bytes

FORMAT = "femb-ijb-features/1"


def sidecar(path: str | os.PathLike) -> Path:
    return Path(f"{os.fspath(path)}.json")


def load_features(path: str | os.PathLike, identity: dict, flip: bool) -> tuple[FaceEmbeddings | None, str]:
    """The cached embeddings when ``identity`` (digests and options) matches; else None and why."""
    path = Path(path)
    if not path.is_file() or not sidecar(path).is_file():
        return None, f"{path} does not exist yet"
    try:
        stored = json.loads(sidecar(path).read_text(encoding="utf-8"))
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:  # a torn or foreign file: recompute it
        return None, f"{path} is unreadable ({' '.join(str(error).split())[:120]})"
    if not isinstance(stored, dict) or stored.get("format") != FORMAT:
        return None, f"{sidecar(path)} is not a femb IJB feature record"
    changed = [key for key, value in identity.items() if stored.get(key) != value]
    if changed:
        return None, f"{path} was computed with another {', '.join(changed)}"
    halves = int(stored.get("halves", 0))
    if array.ndim != 2 or halves not in (1, 2) or array.shape[1] % halves:
        return None, f"{path} does not hold N×D or N×2D features"
    if flip and halves == 1:
        return None, f"{path} holds no mirrored-face embeddings (computed with no flip)"
    plain, mirrored = (array, None) if halves == 1 else np.split(array, 2, axis=1)
    return FaceEmbeddings(plain, mirrored, list(stored.get("skipped", []))), ""


def save_features(path: str | os.PathLike, embeddings: FaceEmbeddings, identity: dict) -> None:
    """Write the array and its sidecar (each atomically; the sidecar last, so a torn pair never matches)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    halves = [embeddings.plain] + ([] if embeddings.mirrored is None else [embeddings.mirrored])
    array = np.concatenate(halves, axis=1).astype(np.float32)
    sidecar(path).unlink(missing_ok=True)
    atomic_write(path, lambda handle: np.save(handle, array, allow_pickle=False))
    record = {"format": FORMAT, **identity, "halves": len(halves), "skipped": embeddings.skipped}
    atomic_write_bytes(sidecar(path), (json.dumps(record, indent=2) + "\n").encode())


__all__ = ["FORMAT", "load_features", "save_features", "sidecar"]
