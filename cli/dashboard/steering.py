"""Requests out: the dashboard asks a run to stop, checkpoint, evaluate or pause, never more."""

from __future__ import annotations

from pathlib import Path

from femb.training.control import send_request


class RunDirSteering:
    """The run trains in another process: request files in ``RUN_DIR/control/``, read between its steps."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)

    def send(self, request: str) -> None:
        """One of ``femb.training.control.REQUESTS``."""
        send_request(self.run_dir, request)

    def checkpoint(self) -> None:
        self.send("checkpoint")

    def evaluate(self) -> None:
        self.send("evaluate")

    def toggle_pause(self, paused_now: bool) -> bool:
        """Ask for the opposite of the pause state; returns the state asked for."""
        self.send("resume" if paused_now else "pause")
        return not paused_now
