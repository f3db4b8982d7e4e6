"""Writing files so that a reader never sees a torn one: the one atomic write of the project.

The bytes go to a temporary file in the destination's folder (same file system, so the rename
is atomic), are flushed and fsynced, and only then replace the destination. On any failure
(a full disk, a file-size limit, Ctrl-C) the temporary file is removed and the old file stays.
A destination that exists but is no regular file (a device such as ``/dev/full``, a FIFO, a
socket, a directory) is refused before anything is written: the rename would put a regular
file where the device node was.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


class NotARegularFileError(ValueError):
    """A path that exists but is no regular file (a FIFO, a device, a socket, a directory)."""


class WriteFailedError(OSError):
    """A write the file system refused (full disk, file-size limit, quota): says where and how much room."""

    def __init__(self, code: int | None, message: str):
        super().__init__(code, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def kind_of(mode: int) -> str:
    """What a ``stat`` mode is, for messages: "a directory", "a FIFO (named pipe)", …"""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def writable_target(path: str | os.PathLike, what: str = "file") -> Path:
    """Where a write to ``path`` lands: ``path`` itself, or the file a symbolic link points to
    (the link stays a link). An existing destination that is no regular file is refused."""
    given = Path(path)
    target = Path(os.path.realpath(given)) if given.is_symlink() else given
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        return target
    except NotADirectoryError:
        raise NotARegularFileError(f"{given}: a file is in the way of its folder") from None
    if not stat.S_ISREG(mode):
        raise NotARegularFileError(
            f"{given}: is {kind_of(mode)}, not a {what}; femb writes only regular files (give a file path)"
        )
    return target


def free_space(path: str | os.PathLike) -> str:
    """The free space of the file system holding ``path`` (its nearest existing folder), in words."""
    folder = Path(path)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return "free space unknown"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if free < 1000 or unit == "TB":
            return f"{free:.0f} {unit} free" if unit == "B" else f"{free:.1f} {unit} free"
        free /= 1000
    raise AssertionError("unreachable")


class _RecordingFile:
    """The temporary file as ``write`` sees it: it remembers the first OSError of a write or flush,
    which a writer such as ``torch.save`` re-raises as a RuntimeError that no longer says why."""

    def __init__(self, handle: BinaryIO):
        self._handle = handle
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self._handle.write(data)
        except OSError as error:
            self.error = self.error or error
            raise

    def flush(self) -> None:
        try:
            self._handle.flush()
        except OSError as error:
            self.error = self.error or error
            raise

    def __getattr__(self, name: str):
        return getattr(self._handle, name)


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object], what: str = "file") -> Path:
    """Call ``write(handle)`` on a temporary file, then rename it onto ``path``.

    A failure of the file system (a full disk, a file-size limit, a read-only folder) raises one
    :class:`WriteFailedError` naming the path and the free space; the old file stays as it was.
    An error of ``write`` itself (not the file system's) passes through unchanged.
    """
    given, path = Path(path), writable_target(path, what)
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise _failed(given, error, existed) from None
    handle = _RecordingFile(os.fdopen(fd, "wb"))
    try:
        try:
            write(handle)  # type: ignore[arg-type]
            handle.flush()
            os.fsync(handle.fileno())
        finally:
            _close(handle)
        os.replace(tmp_name, path)
    except Exception as error:
        Path(tmp_name).unlink(missing_ok=True)
        cause = handle.error or (error if isinstance(error, OSError) and _is_ours(error, tmp_name) else None)
        if cause is None:
            raise
        raise _failed(given, cause, existed) from error
    except BaseException:  # Ctrl-C, SystemExit: the temporary file goes, the interruption goes on
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def _close(handle: _RecordingFile) -> None:
    """Close the temporary file; a close that fails after an earlier error does not hide that error."""
    try:
        handle.close()
    except OSError as error:
        handle.error = handle.error or error
        if handle.error is error:
            raise


def _is_ours(error: OSError, tmp_name: str) -> bool:
    """An OSError of fsync or of the rename (no file name, or the temporary file's), not one that
    ``write`` met while reading some other file."""
    return error.filename is None or os.fspath(error.filename) == tmp_name


# Errors where the room left decides: the free space goes in the message (a file-size limit too,
# so that the user sees the disk is not what is full).
_ROOM_ERRORS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EIO}


def write_failure(path: str | os.PathLike, cause: OSError, kept: str) -> WriteFailedError:
    """One line for a write the file system refused: the path, the reason, the free space when the
    room is what ran out, and what is left (``kept``: "the previous file is intact", …)."""
    reason = cause.strerror or type(cause).__name__
    if cause.errno in _ROOM_ERRORS or cause.errno is None:
        reason += f"; {free_space(path)} on its file system"
    return WriteFailedError(cause.errno, f"{path}: could not be written ({reason}); {kept}")


def _failed(path: Path, cause: OSError, existed: bool) -> WriteFailedError:
    return write_failure(path, cause, "the previous file is intact" if existed else "nothing was written")


def check_writable(path: str | os.PathLike, what: str = "file") -> Path:
    """Refuse now, in one line, an output that a later :func:`atomic_write` could not write: a
    destination that is no regular file, or a folder where no file can be created (read-only, no
    permission, a file in the way). For commands that write only after minutes of work.

    Probed by creating (and removing) a temporary file in the nearest existing folder, which also
    catches a read-only file system and root's own limits, where permission bits say nothing.
    """
    target = writable_target(path, what)
    folder = target.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise NotARegularFileError(f"{path}: {folder} is in the way (a file, not a folder)")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".probe", dir=folder)
    except OSError as error:
        message = f"{path}: cannot be written in {folder} ({error.strerror})"
        raise WriteFailedError(error.errno, message) from None
    os.close(fd)
    os.unlink(probe)
    return target


def atomic_write_bytes(path: str | os.PathLike, data: bytes, what: str = "file") -> Path:
    return atomic_write(path, lambda handle: handle.write(data), what)


def require_regular_file(path: str | os.PathLike, what: str = "file") -> Path:
    """``path`` if it is a regular file (or a link to one); else one ``ValueError`` naming it.

    Checked with ``stat``, which never opens the file: reading a FIFO would block until a writer
    comes, and ``/dev/zero`` would never end. A missing path raises ``FileNotFoundError``.
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise FileNotFoundError(2, "no such file", str(path)) from None
    if stat.S_ISREG(mode):
        return path
    raise NotARegularFileError(f"{path}: is {kind_of(mode)}, not a {what} (give a regular file)")
