"""The process a dashboard watches: the child `femb train` started, or whoever holds the run's lock.

The dashboard never trains: it follows ``RUN_DIR/metrics.jsonl`` and ``RUN_DIR/train.log`` and
asks this handle only whether the training is still there, how it ended, and (on a second
Ctrl-C) to stop at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


class ChildProcess:
    """The training process `femb train` started (its own session and process group)."""

    def __init__(self, popen: subprocess.Popen, started_at: float | None = None):
        self.popen = popen
        self.started_at = time.time() if started_at is None else started_at

    @property
    def pid(self) -> int:
        return self.popen.pid

    def gone(self) -> bool:
        return self.popen.poll() is not None

    @property
    def exit_code(self) -> int | None:
        return self.popen.poll()

    def stop_hard(self) -> None:
        """Ctrl-C to the whole group (a torchrun launch: every worker), as a terminal sends it."""
        self._signal_group(signal.SIGINT)

    def kill(self) -> None:
        """SIGKILL to the whole group: the last resort when Ctrl-C did not end it."""
        self._signal_group(signal.SIGKILL)

    def _signal_group(self, number: signal.Signals) -> None:
        if not self.gone():
            try:
                os.killpg(self.popen.pid, number)
            except (ProcessLookupError, PermissionError):
                pass


class LockedProcess:
    """A run trained by some other process: alive while a process holds ``RUN_DIR/lock``.

    A folder without a lock file was never trained here (copied, or written by hand): whether a
    process still writes to it is unknown, so it is never called gone.
    """

    started_at = None
    exit_code = None

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)

    @property
    def pid(self) -> int | None:
        return lock_owner(self.run_dir)

    def gone(self) -> bool:
        from femb.training.run_summary import is_running

        return (self.run_dir / "lock").is_file() and not is_running(self.run_dir)

    def stop_hard(self) -> None:
        self._signal(signal.SIGINT)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, number: signal.Signals) -> None:
        pid = self.pid
        if pid and not self.gone():
            try:
                os.kill(pid, number)
            except (ProcessLookupError, PermissionError):
                pass


def lock_owner(run_dir: Path) -> int | None:
    """The PID the run's lock file names (its last owner: ask ``is_running`` whether it still is)."""
    try:
        text = (Path(run_dir) / "lock").read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and len(text) < 12 else None
