"""The control channel between a training loop and whoever steers it.

The loop calls ``poll()`` between steps. Requests come from the dashboard (in process), from
signals (Ctrl-C, SIGTERM), or from another process through request files in
``<run_dir>/control/`` (``stop``, ``interrupt``, ``checkpoint``, ``evaluate``, ``pause``, ``resume``),
which is how the dashboard and ``femb stop RUN`` steer a run: the training always runs in a
process of its own. ``interrupt`` is the dashboard's Ctrl-C: a graceful stop that ends the run as
Ctrl-C does in a terminal (reason ``interrupted``), where ``stop`` ends it as ``stopped``.
"""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

REQUESTS = ("stop", "interrupt", "checkpoint", "evaluate", "pause", "resume")


@dataclass
class ControlRequests:
    stop: bool = False
    checkpoint: bool = False
    evaluate: bool = False


class TrainingControl:
    def __init__(self, control_dir: str | os.PathLike | None = None):
        self._lock = threading.Lock()
        self._pending = ControlRequests()
        self._paused = threading.Event()
        self.stop_reason: str | None = None
        self.control_dir = Path(control_dir) if control_dir is not None else None

    # Requests (any thread) -------------------------------------------------
    def request_stop(self, reason: str = "stopped") -> None:
        with self._lock:
            self._pending.stop = True
            self.stop_reason = self.stop_reason or reason
        self._paused.clear()

    def request_checkpoint(self) -> None:
        with self._lock:
            self._pending.checkpoint = True

    def request_evaluation(self) -> None:
        with self._lock:
            self._pending.evaluate = True

    def set_paused(self, paused: bool) -> None:
        if paused:
            self._paused.set()
        else:
            self._paused.clear()

    def toggle_pause(self) -> bool:
        self.set_paused(not self._paused.is_set())
        return self._paused.is_set()

    @property
    def paused(self) -> bool:
        return self._paused.is_set()

    @property
    def stop_requested(self) -> bool:
        return self._pending.stop

    # The loop's side ------------------------------------------------------
    def poll(self) -> ControlRequests:
        """Take the pending one-shot requests (stop stays set once asked)."""
        self._read_request_files()
        with self._lock:
            taken = ControlRequests(self._pending.stop, self._pending.checkpoint, self._pending.evaluate)
            self._pending.checkpoint = False
            self._pending.evaluate = False
        return taken

    def _read_request_files(self) -> None:
        if self.control_dir is None or not self.control_dir.is_dir():
            return
        for name in REQUESTS:
            request = self.control_dir / name
            if not request.exists():
                continue
            request.unlink(missing_ok=True)
            if name == "stop":
                self.request_stop("stopped")
            elif name == "interrupt":
                self.request_stop("interrupted")
            elif name == "checkpoint":
                self.request_checkpoint()
            elif name == "evaluate":
                self.request_evaluation()
            else:
                self.set_paused(name == "pause")

    def discard_requests(self, control_dir: str | os.PathLike) -> list[str]:
        """Remove request files made before this process started; returns their names.

        Requests belong to the process that was running when they were made: a ``stop`` left by
        a dashboard after its trainer died must not end the next resume at once.
        """
        folder = Path(control_dir)
        if not folder.is_dir():
            return []
        found = [name for name in REQUESTS if (folder / name).exists()]
        for name in found:
            (folder / name).unlink(missing_ok=True)
        return found

    # Signals (main thread only) -------------------------------------------
    def install_signal_handlers(self) -> callable:
        """Ctrl-C and SIGTERM ask for a graceful stop; a second Ctrl-C interrupts at once."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

        def handler(signum, frame):  # noqa: ARG001
            if self.stop_requested and signum == signal.SIGINT:
                signal.signal(signal.SIGINT, signal.default_int_handler)
                raise KeyboardInterrupt
            self.request_stop("interrupted" if signum == signal.SIGINT else "terminated")

        for sig in previous:
            signal.signal(sig, handler)

        def restore() -> None:
            for sig, old in previous.items():
                signal.signal(sig, old)

        return restore


def send_request(run_dir: str | os.PathLike, request: str) -> Path:
    """Ask the loop training in ``run_dir`` (another process) for ``request``."""
    if request not in REQUESTS:
        raise ValueError(f"unknown request {request!r}; choices: {', '.join(REQUESTS)}")
    control_dir = Path(run_dir) / "control"
    control_dir.mkdir(parents=True, exist_ok=True)
    path = control_dir / request
    path.touch()
    return path
