"""The one checkpoint format, read by training (resume), export and verify alike.

A checkpoint is a plain dict of tensors and primitive values so that it loads with
``torch.load(weights_only=True)``: a file from the internet cannot run code. It is written to
a temporary file in the same folder and renamed, so a torn checkpoint never exists.

Layout (``format == "femb.checkpoint"``, ``version == 1``)::

    femb_version   str
    backbone       {"name": str, "kwargs": dict, "state_dict": {...}}
    header         {"name": str, "kwargs": dict, "state_dict": {...}} or None (stripped)
    training       {"step", "epoch", "optimizer", "scheduler", "epoch_scheduler", "scaler",
                    "rng", "best_accuracy", ...} or None (a plain saved model)
    config         dict (the resolved run configuration, may be empty)
    run_name       str or None
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from femb.fileio import atomic_write, require_regular_file

FORMAT = "femb.checkpoint"
VERSION = 1
CHECKPOINT_NAMES = ("last.pt", "best.pt")


class CheckpointError(ValueError):
    """A file that is not a readable femb checkpoint."""


def to_plain(value: Any) -> Any:
    """Turn containers (Counter, defaultdict, tuple, …) into dict/list so weights_only can read them."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, Mapping):
        return {to_plain(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


# The lines of torch.load's weights_only refusal that are advice, not the reason: they wrap in the
# middle of a sentence ("… if you got the file" / "from a trusted source."), so never quote them.
_TORCH_ADVICE = (
    "Weights only load failed",
    "from a trusted source",
    "Please file an issue",
    "Check the documentation",
)


def load_failure(error: BaseException) -> tuple[bool, str]:
    """(whether ``torch.load(weights_only=True)`` refused code, the one line that says why).

    A pickle naming a global (a function or class to call) is code; random bytes, a truncated
    file or a foreign format fail on an opcode or the archive, and are only unreadable.
    """
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    lines = [line.removeprefix("WeightsUnpickler error:").strip() for line in lines]
    reasons = [line for line in lines if line and not line.startswith(_TORCH_ADVICE)]
    code = next((line for line in reasons if "global" in line.lower()), None)
    if code is not None:
        return True, code.rstrip(".")
    reason = reasons[0] if reasons else type(error).__name__
    return False, reason.rstrip(".")[:300]


def save_checkpoint(payload: dict, path: str | os.PathLike) -> Path:
    """Write ``payload`` atomically: temporary file in the same folder, fsync, rename."""
    payload = {"format": FORMAT, "version": VERSION, **to_plain(payload)}
    return atomic_write(path, lambda handle: torch.save(payload, handle))


def resolve_checkpoint_path(source: str | os.PathLike, prefer: str = "best") -> Path:
    """A checkpoint file itself, or a run directory (``checkpoints/best.pt`` then ``last.pt``)."""
    source = Path(source)
    if not source.exists():
        raise CheckpointError(f"{source}: no such file or directory")
    if not source.is_dir():
        try:  # a FIFO or a device would block or never end when read: refused before any open
            return require_regular_file(source, "checkpoint")
        except ValueError as error:
            raise CheckpointError(str(error)) from None
    order = ["best.pt", "last.pt"] if prefer == "best" else ["last.pt", "best.pt"]
    for folder in (source / "checkpoints", source):
        for name in order:
            if (folder / name).is_file():
                return folder / name
    if (source / "model.pt").is_file():
        return source / "model.pt"
    raise CheckpointError(f"{source}: no checkpoints/best.pt, checkpoints/last.pt or model.pt in this folder")


def load_checkpoint(source: str | os.PathLike, prefer: str = "best") -> dict:
    """Load a checkpoint safely (``weights_only=True``) and check its format."""
    path = resolve_checkpoint_path(source, prefer=prefer)
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: not a femb checkpoint (not a PyTorch zip archive)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means the same to the user
        runs_code, reason = load_failure(error)
        what = "holds Python objects that would run code when unpickled" if runs_code else "is not readable"
        raise CheckpointError(f"{path}: not a femb checkpoint: it {what} ({reason})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a femb checkpoint (no 'format: {FORMAT}' entry)")
    if payload.get("version", 0) > VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {payload['version']} is newer than this femb reads"
        )
    payload["path"] = str(path)
    return payload
