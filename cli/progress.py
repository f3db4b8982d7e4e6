"""Plain progress lines for a terminal-less run (CI logs, pipes, `--no-dashboard`)."""

from __future__ import annotations

import time
from typing import TextIO

import typer

from femb.training.events import Event
from femb_cli.dashboard.state import format_duration


class ProgressPrinter:
    """One line per ``interval_s`` for steps; every evaluation, checkpoint, warning and the end."""

    def __init__(self, interval_s: float = 5.0, stream: TextIO | None = None):
        self.interval_s = interval_s
        self.stream = stream
        self.total = 0
        self._last_print = 0.0

    def _echo(self, line: str, err: bool = False) -> None:
        typer.echo(line, file=self.stream, err=err)

    def __call__(self, event: Event) -> None:
        kind = event["event"]
        if kind == "start":
            self.total = event["total_steps"]
            where = f" from step {event['start_step']}" if event.get("start_step") else ""
            self._echo(
                f"training {event.get('run_name')} on {event['device']}: {self.total} steps{where}, "
                f"{event.get('num_classes')} classes, {event['num_parameters'] / 1e6:.2f}M backbone params"
            )
        elif kind == "step":
            now = time.monotonic()
            if now - self._last_print >= self.interval_s or event["step"] == self.total:
                self._last_print = now
                self._echo(
                    f"step {event['step']}/{self.total}  loss {event['loss']:.4f}  lr {event['lr']:.4g}  "
                    f"{event['images_per_s']:.1f} img/s  ETA {format_duration(event.get('eta_s'))}"
                )
        elif kind == "eval":
            best = " (best)" if event.get("is_best") else ""
            self._echo(
                f"verify @ {event['step']}: accuracy {event['accuracy']:.4f} ± {event['accuracy_std']:.4f}  "
                f"EER {event['eer']:.4f}  AUC {event['auc']:.4f}{best}"
            )
        elif kind == "checkpoint":
            self._echo(f"checkpoint ({event['kind']}) @ {event['step']}: {event['path']}")
        elif kind == "log" and event["level"] != "info":
            self._echo(f"{event['level']}: {event['message']}", err=True)
        elif kind == "end":
            self._echo(f"{event['reason']} at step {event['step']}: {event['message']}")
            if event.get("resume_command"):
                self._echo(f"resume with: {event['resume_command']}")
