"""The atomic write never damages what is at its target and never leaves a temporary file (issue 22.2).

Any kind of target (absent, a regular file, a FIFO, a socket, a directory, a device node, a link
to any of them), any failure point (during the write, at fsync, at the rename, Ctrl-C): afterwards
the old file is intact or was never there, a non-regular target is refused and stays what it was,
and the folder holds nothing new.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from femb import fileio
from femb.fileio import NotARegularFileError, WriteFailedError, atomic_write

KINDS = ["absent", "file", "fifo", "socket", "directory", "device", "link_file", "link_fifo", "link_dangling"]
FAILURES = ["none", "during_write", "fsync", "rename", "interrupt"]


def make_target(folder: Path, kind: str, old: bytes) -> tuple[Path, list]:
    """The target path of ``kind`` and what must be closed afterwards (a bound socket)."""
    path, keep = folder / "target.out", []
    real = folder / "real"
    if kind == "file":
        path.write_bytes(old)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
        keep.append(server)
    elif kind == "directory":
        path.mkdir()
        (path / "inside").write_bytes(old)
    elif kind == "device":  # a copy of /dev/null's node: only root may make one
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    elif kind == "link_file":
        real.write_bytes(old)
        path.symlink_to(real)
    elif kind == "link_fifo":
        os.mkfifo(real)
        path.symlink_to(real)
    elif kind == "link_dangling":
        path.symlink_to(folder / "nowhere")
    return path, keep


def snapshot(folder: Path) -> dict[str, tuple[str, bytes | None]]:
    """Every entry of the folder: its kind (links not followed) and a regular file's bytes."""
    entries = {}
    for entry in sorted(folder.rglob("*")):
        mode = entry.lstat().st_mode
        content = entry.read_bytes() if stat.S_ISREG(mode) else None
        entries[str(entry.relative_to(folder))] = (stat.S_IFMT(mode), content)
    return entries


def writer(failure: str, new: bytes):
    def write(handle) -> None:
        handle.write(new[: len(new) // 2])
        if failure == "during_write":
            raise OSError(errno.ENOSPC, "No space left on device")
        if failure == "interrupt":
            raise KeyboardInterrupt
        handle.write(new[len(new) // 2 :])

    return write


def fail_with(code: int):
    def broken(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    return broken


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kind=st.sampled_from(KINDS),
    failure=st.sampled_from(FAILURES),
    old=st.binary(min_size=0, max_size=64),
    new=st.binary(min_size=0, max_size=256),
)
def test_any_target_and_any_failure_leave_the_old_file_or_nothing(monkeypatch, kind, failure, old, new):
    if kind == "device" and os.geteuid() != 0:
        return  # making a device node needs root; the other kinds still run
    with tempfile.TemporaryDirectory() as name, monkeypatch.context() as patch:
        folder = Path(name)
        path, keep = make_target(folder, kind, old)
        before = snapshot(folder)
        if failure == "fsync":
            patch.setattr(fileio.os, "fsync", fail_with(errno.EIO))
        if failure == "rename":
            patch.setattr(fileio.os, "replace", fail_with(errno.EXDEV))
        regular = kind in ("absent", "file", "link_file", "link_dangling")
        try:
            if not regular:
                with pytest.raises(NotARegularFileError, match="not a file; femb writes only regular files"):
                    atomic_write(path, writer(failure, new))
            elif failure == "none":
                atomic_write(path, writer(failure, new))
            elif failure == "interrupt":
                with pytest.raises(KeyboardInterrupt):
                    atomic_write(path, writer(failure, new))
            else:
                with pytest.raises(WriteFailedError, match=f"{path.name}: could not be written"):
                    atomic_write(path, writer(failure, new))
        finally:
            for item in keep:
                item.close()
        after = snapshot(folder)
        if regular and failure == "none":
            landed = (
                folder / "real"
                if kind == "link_file"
                else folder / "nowhere"
                if kind == "link_dangling"
                else path
            )
            assert landed.read_bytes() == new
            if kind.startswith("link"):
                assert path.is_symlink(), "the link was replaced by a file"
            expected = {**before, str(landed.relative_to(folder)): (stat.S_IFREG, new)}
            assert after == expected, "something other than the target changed"
        else:
            assert after == before, "the target or its folder changed after a refused or failed write"


def test_a_real_file_size_limit_gives_one_error_naming_the_path_and_free_space(tmp_path):
    """A real failure of the kernel (RLIMIT_FSIZE), in a child process so the limit stays there."""
    import subprocess
    import sys

    target = tmp_path / "big.bin"
    target.write_bytes(b"old")
    script = (
        "import resource, signal, sys\n"
        "from femb.fileio import atomic_write_bytes\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
        "try:\n"
        "    atomic_write_bytes(sys.argv[1], bytes(100_000))\n"
        "except OSError as error:\n"
        "    print(error)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(target)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip()
    assert line.startswith(f"{target}: could not be written (File too large; ")
    assert " free on its file system); the previous file is intact" in line
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.bin"]


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_data_pairs_refuses_a_target_that_is_not_a_regular_file(tmp_path, kind):
    """`femb data pairs --pairs-out/--bin-out` onto a FIFO or a folder: one error line, the target stays."""
    from PIL import Image
    from typer.testing import CliRunner

    from femb_cli.app import app

    faces = tmp_path / "faces"
    for person in range(4):
        (faces / f"p{person}").mkdir(parents=True)
        for index in range(3):
            Image.new("RGB", (112, 112), (person * 60, index * 80, 30)).save(
                faces / f"p{person}" / f"{index}.png"
            )
    for option in ("--pairs-out", "--bin-out"):
        target, keep = make_target(tmp_path, kind, b"")
        result = CliRunner().invoke(
            app, ["data", "pairs", str(faces), option, str(target), "--num-pairs", "20"]
        )
        assert result.exit_code == 2, result.output
        errors = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and str(target) in errors[0] and "femb writes only regular files" in errors[0]
        assert stat.S_IFMT(target.lstat().st_mode) == (stat.S_IFIFO if kind == "fifo" else stat.S_IFDIR)
        for item in keep:
            item.close()
        shutil.rmtree(target) if kind == "directory" else target.unlink()
