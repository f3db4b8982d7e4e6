"""Writing files so that a reader never sees a torn one: the one atomic write of the project.

The bytes go to a temporary file in the destination's folder (same file system, so the rename
is atomic), are flushed and fsynced, and only then replace the destination. On any failure
(a full disk, a file-size limit, Ctrl-C) the temporary file is removed and the old file stays.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(handle)`` on a temporary file, then rename it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda handle: handle.write(data))


class NotARegularFileError(ValueError):
    """A path that exists but is no regular file (a FIFO, a device, a socket, a directory)."""


def require_regular_file(path: str | os.PathLike, what: str = "file") -> Path:
    """``path`` if it is a regular file (or a link to one); else one ``ValueError`` naming it.

    Checked with ``stat``, which never opens the file: reading a FIFO would block until a writer
    comes, and ``/dev/zero`` would never end. A missing path raises ``FileNotFoundError``.
    """
    import stat

    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise FileNotFoundError(2, "no such file", str(path)) from None
    if stat.S_ISREG(mode):
        return path
    kind = (
        "a directory"
        if stat.S_ISDIR(mode)
        else "a FIFO (named pipe)"
        if stat.S_ISFIFO(mode)
        else "a device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "not a regular file"
    )
    raise NotARegularFileError(f"{path}: is {kind}, not a {what} (give a regular file)")
