"""Which images of a data set turned out unreadable, seen alike by every DataLoader worker process.

A dataset that skips bad images keeps one flag per image in shared memory: the worker process that
finds image ``i`` unreadable sets flag ``i``, and the main process (and every other worker) sees it.
A run's count and names of skipped images then come from femb, at the end of the run, instead of
from warnings raised inside worker processes (which name torch's ``fetch.py`` and are lost to the
main process's counters).
"""

from __future__ import annotations

import numpy as np
import torch


class BadImages:
    """The set of unreadable image indices of one dataset, shared across processes."""

    def __init__(self, size: int):
        flags = torch.zeros(max(int(size), 1), dtype=torch.uint8)
        try:
            flags.share_memory_()
        except (RuntimeError, OSError):  # no shared memory on this system: each process counts its own
            pass
        self._flags = flags
        self._view: np.ndarray | None = None

    def _array(self) -> np.ndarray:
        if self._view is None:  # a numpy view of the shared memory: cheap to test per image
            self._view = self._flags.numpy()
        return self._view

    def __contains__(self, index: int) -> bool:
        return bool(self._array()[index])

    def add(self, index: int) -> bool:
        """Flag ``index``; True when it was not flagged before (by any process)."""
        array = self._array()
        new = not array[index]
        array[index] = 1
        return new

    def __len__(self) -> int:
        return int(np.count_nonzero(self._array()))

    def indices(self, limit: int | None = None) -> list[int]:
        """The flagged indices in order (the first ``limit`` of them)."""
        return np.flatnonzero(self._array())[:limit].tolist()

    def __getstate__(self) -> dict:
        # The tensor travels to worker processes as a handle on the same shared memory.
        return {"_flags": self._flags}

    def __setstate__(self, state: dict) -> None:
        self._flags, self._view = state["_flags"], None


def skipped_images_note(dataset, what: str = "training images", show: int = 3) -> str | None:
    """``"skipped 2 unreadable training images; first: <its error>; also b.png"`` for a dataset that
    skipped some (it has ``bad_images``, ``image_name(i)`` and ``bad_reason(i)``); else None."""
    bad = getattr(dataset, "bad_images", None)
    if not isinstance(bad, BadImages) or not len(bad):
        return None
    count, first, *others = len(bad), *bad.indices(show)
    first_named = dataset.bad_reason(first) or dataset.image_name(first)
    note = f"skipped {count} unreadable {what}; first: {first_named}"
    if others:
        more = f" and {count - show} more" if count > show else ""
        note += f"; also {', '.join(dataset.image_name(index) for index in others)}{more}"
    return note
