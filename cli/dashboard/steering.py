"""Requests out: the dashboard asks a run to stop, checkpoint, evaluate or pause, never more."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from femb.training.control import TrainingControl, send_request


class Steering(Protocol):
    attached: bool

    def stop(self) -> None: ...
    def checkpoint(self) -> None: ...
    def evaluate(self) -> None: ...
    def toggle_pause(self, paused_now: bool) -> bool:
        """Ask for the opposite of the pause state; returns the state asked for."""
        ...


class InProcessSteering:
    """The run trains in this process: requests go straight to its ``TrainingControl``."""

    attached = False

    def __init__(self, control: TrainingControl):
        self.control = control

    def stop(self) -> None:
        self.control.request_stop("stopped")

    def checkpoint(self) -> None:
        self.control.request_checkpoint()

    def evaluate(self) -> None:
        self.control.request_evaluation()

    def toggle_pause(self, paused_now: bool) -> bool:  # noqa: ARG002 - the control knows better
        return self.control.toggle_pause()


class RunDirSteering:
    """The run trains in another process: request files in ``RUN_DIR/control/``, read between its steps."""

    attached = True

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)

    def stop(self) -> None:
        send_request(self.run_dir, "stop")

    def checkpoint(self) -> None:
        send_request(self.run_dir, "checkpoint")

    def evaluate(self) -> None:
        send_request(self.run_dir, "evaluate")

    def toggle_pause(self, paused_now: bool) -> bool:
        send_request(self.run_dir, "resume" if paused_now else "pause")
        return not paused_now
