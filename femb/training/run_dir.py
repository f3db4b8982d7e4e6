"""The run directory: resolved config, metrics.jsonl, checkpoints, TensorBoard events, final weights."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from femb.fileio import atomic_write_bytes, write_failure
from femb.training.schema import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class ExistingRunError(ConfigError):
    """``run_dir`` already holds a run; the front end says how to continue it."""

    def __init__(self, path: Path):
        super().__init__(
            "run_dir",
            f"run_dir {path}: already holds a run; resume it, choose another run_dir or name, "
            "or set overwrite to replace it",
        )
        self.path = path


class RunInUseError(ValueError):
    """Another process owns the run directory (``owner``: its PID, when the lock file says)."""

    def __init__(self, path: Path, owner: int | None):
        who = f"process {owner}" if owner else "another process"
        super().__init__(f"run directory {path} is in use by {who}; wait for it to end or stop it")
        self.path, self.owner = path, owner


# Run folders this process created: a start that fails before it becomes a run removes them again
# (a folder that existed before, even empty, is the user's and stays).
_CREATED_HERE: set[Path] = set()


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config_file(self) -> Path:
        return self.path / "config.toml"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoints / "best.pt"

    @property
    def tensorboard(self) -> Path:
        return self.path / "tensorboard"

    @property
    def control(self) -> Path:
        return self.path / "control"

    @property
    def final_backbone(self) -> Path:
        return self.path / "backbone.pt"

    @property
    def lock_file(self) -> Path:
        return self.path / "lock"

    def create(self) -> RunDir:
        existed = self.path.exists()
        try:
            self.checkpoints.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise ValueError(f"run directory {self.path}: a file is in the way (not a folder)") from None
        except PermissionError:
            raise ValueError(f"run directory {self.path}: permission denied") from None
        if not existed:
            _CREATED_HERE.add(self.path.resolve())
        return self

    def discard_if_unused(self) -> None:
        """Remove what a start that never became a run left here: its lock, its empty folders, and
        the run folder itself when this process created it. An attempt that was refused (bad data,
        a validation set that cannot give pairs, unreadable weights) leaves nothing new behind."""
        if self.holds_run():
            return
        self.lock_file.unlink(missing_ok=True)
        for folder in (self.checkpoints, self.control, self.tensorboard):
            with contextlib.suppress(OSError):  # not there, or not empty: kept
                folder.rmdir()
        if self.path.resolve() in _CREATED_HERE:
            with contextlib.suppress(OSError):
                self.path.rmdir()

    def holds_run(self) -> bool:
        """Whether an earlier run lives here (its config, metrics or checkpoints)."""
        return (
            self.config_file.exists()
            or self.metrics_file.exists()
            or self.final_backbone.exists()
            or (self.checkpoints.is_dir() and any(self.checkpoints.glob("*.pt")))
        )

    def refuse_existing_run(self) -> None:
        """Never overwrite a run: one clear error that says how to continue or start afresh."""
        if self.holds_run():
            raise ExistingRunError(self.path)

    def clear_run(self) -> None:
        """Remove an earlier run's files (``overwrite``); anything else in the folder stays."""
        import shutil

        for path in (self.config_file, self.metrics_file, self.final_backbone):
            path.unlink(missing_ok=True)
        for folder in (self.checkpoints, self.tensorboard, self.control):
            shutil.rmtree(folder, ignore_errors=True)
        self.create()

    def write_config(self, config: dict) -> None:
        write_toml(self.config_file, config)

    def read_config(self) -> dict:
        return read_toml(self.config_file)


def new_run_dir(name: str = "run", root: str | os.PathLike = "runs") -> RunDir:
    """``runs/<name>-<YYYYmmdd-HHMMSS>``, with a suffix if two runs start in the same second."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{name}-{stamp}"
    path, counter = base, 1
    while path.exists():
        counter += 1
        path = base.with_name(f"{base.name}-{counter}")
    return RunDir(path).create()


def write_toml(path: str | os.PathLike, values: dict) -> None:
    clean = {k: v for k, v in values.items() if v is not None}  # TOML has no null
    atomic_write_bytes(path, tomli_w.dumps(clean).encode("utf-8"))


def read_toml(path: str | os.PathLike) -> dict:
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path}: not valid TOML ({error})") from None
    except UnicodeDecodeError as error:  # a binary file: TOML is UTF-8 text
        raise ValueError(f"{path}: not a TOML text file (byte {error.start} is not UTF-8)") from None
    except RecursionError:  # tomllib parses nested arrays recursively
        raise ValueError(f"{path}: not valid TOML (values nested too deeply)") from None


class RunLock:
    """Exactly one process owns a run directory while it trains.

    An OS file lock (``flock``) on ``RUN/lock``: the kernel releases it on any exit, ``kill -9``
    included, so a lock file left behind by a dead process is stale and is simply taken over.
    The file holds the owner's PID so that a refused second process can name it.
    """

    def __init__(self, run_dir: RunDir):
        self.run_dir = run_dir
        self._handle = None
        self.stale_owner: int | None = None  # the PID of a dead owner whose lock was taken over
        self._shared = False  # held with another process (handed to a child, or inherited): its file stays

    def acquire(self) -> RunLock:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no advisory locks; documented in the README
            return self
        path = self.run_dir.lock_file
        try:
            inherited = _inherited_lock(path)
            handle = inherited or open(path, "a+")  # noqa: SIM115 - held for the lock's life
        except OSError as error:
            raise ValueError(
                f"run directory {self.run_dir.path}: cannot create its lock ({error.strerror})"
            ) from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = _read_pid(handle)
            handle.close()
            raise RunInUseError(self.run_dir.path, owner) from None
        previous = _read_pid(handle)
        if previous and previous != os.getpid():
            self.stale_owner = previous
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
        except OSError as error:  # a full disk or a file-size limit: said with the path and the room
            with contextlib.suppress(OSError):  # closing retries the write that just failed
                handle.close()
            raise write_failure(path, error, "the run's other files are intact") from None
        self._handle, self._shared = handle, inherited is not None
        return self

    def hand_over(self) -> int:
        """The held lock's descriptor, for a child process to inherit (see ``LOCK_FD_ENV``): the child
        goes on holding the lock after this one is released, so its file is not removed then."""
        self._shared = True
        return self._handle.fileno()

    def release(self) -> None:
        if self._handle is not None:
            if not self._shared:  # while still holding the lock: no one else is starting here
                self.run_dir.discard_if_unused()
            self._handle.close()  # closing the descriptor releases the flock
            self._handle = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


# The descriptor of a run's lock handed to this process by the one that started it (`femb train`
# with the dashboard starts the training as a child): the lock never lapses in between.
LOCK_FD_ENV = "FEMB_RUN_LOCK_FD"


def _inherited_lock(path: Path):
    """A duplicate of the inherited lock descriptor when it is open on ``path``; else None.

    ``flock`` belongs to the open file, so the duplicate holds the same lock and closing it (a
    ``RunLock`` released) leaves the lock with the inherited descriptor until this process ends.
    """
    value = os.environ.get(LOCK_FD_ENV, "")
    if not value.isdigit():
        return None
    try:
        held, wanted = os.fstat(int(value)), os.stat(path)
    except OSError:
        return None
    if (held.st_dev, held.st_ino) != (wanted.st_dev, wanted.st_ino):
        return None
    return os.fdopen(os.dup(int(value)), "a+")


def _read_pid(handle) -> int | None:
    handle.seek(0)
    text = handle.read().strip()
    return int(text) if text.isdigit() else None
