"""Error text shared by the library and the command line."""

from __future__ import annotations

import os


def one_line(error: BaseException | str, limit: int | None = None) -> str:
    """An exception (or warning message) as one line: whitespace collapsed, never empty; cut to
    ``limit`` characters and an ellipsis when longer (for errors that can run to pages).

    An ``OSError`` that carries a file name reads ``path: reason`` (``runs/x: Permission denied``)
    rather than Python's ``[Errno 13] Permission denied: 'runs/x'``.
    """
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        names = [error.filename] + ([error.filename2] if error.filename2 is not None else [])
        text = f"{' → '.join(_name(name) for name in names)}: {error.strerror}"
    else:
        text = _without_worker_traceback(str(error))
    text = " ".join(text.split())
    if not text and isinstance(error, BaseException):
        text = type(error).__name__
    if limit is not None and len(text) > limit:
        text = text[:limit] + "…"
    return text


def _without_worker_traceback(text: str) -> str:
    """A DataLoader worker's error arrives as "Caught X in DataLoader worker process N" plus the
    worker's traceback; its last line is the error itself (``X: message``): keep that one."""
    if text.startswith("Caught ") and "Original Traceback" in text:
        last = [line for line in text.strip().splitlines() if line.strip()][-1]
        kind, _, message = last.partition(": ")
        return message or last
    return text


def _name(name: object) -> str:
    return os.fsdecode(name) if isinstance(name, (str, bytes, os.PathLike)) else str(name)
