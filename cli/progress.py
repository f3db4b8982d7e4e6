"""Progress for people: plain lines of a training run without the dashboard, and a bar (or plain
lines off a terminal) for every other long piece of work: export, verification, embedding."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import TextIO

import typer

from femb.training.events import Event
from femb_cli.dashboard.state import format_duration, progress_text, sets_text
from femb_cli.errors import resume_command


class ProgressPrinter:
    """One line per ``interval_s`` for steps; every evaluation, checkpoint, warning and the end."""

    def __init__(self, interval_s: float = 5.0, stream: TextIO | None = None):
        self.interval_s = interval_s
        self.stream = stream
        self.total = 0
        self._last_print = 0.0

    def _echo(self, line: str, err: bool = False) -> None:
        typer.echo(line, file=self.stream, err=err)

    def _progress(self, event: Event) -> None:
        """The final evaluation and the projector are announced; any long one reports as it goes."""
        now = time.monotonic()
        if event.get("done") == 0:
            self._last_print = now  # a periodic evaluation shorter than interval_s prints nothing
            if event.get("final"):
                self._echo(progress_text(event))
        elif now - self._last_print >= self.interval_s:
            self._last_print = now
            self._echo(progress_text(event))

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
                f"EER {event['eer']:.4f}  AUC {event['auc']:.4f}{best}{sets_text(event)}"
            )
        elif kind == "progress":
            self._progress(event)
        elif kind == "checkpoint":
            self._echo(f"checkpoint ({event['kind']}) @ {event['step']}: {event['path']}")
        elif kind == "log" and event["level"] != "info":
            self._echo(f"{event['level']}: {event['message']}", err=True)
        elif kind == "end":
            self._echo(f"{event['reason']} at step {event['step']}: {event['message']}")
            if resume_command(event):
                self._echo(f"resume with: {resume_command(event)}")


@contextmanager
def progress_bar(label: str, unit: str = "images", interval_s: float = 5.0, stream: TextIO | None = None):
    """Follow a long piece of work: yields ``update(done, total=None, detail=None)``.

    In a terminal (stderr), a transient rich bar. Otherwise (pipes, CI logs) a plain line on
    stderr at most every ``interval_s``, and a closing one if any was printed: a short job stays
    quiet, a long one is never silent.
    """
    from rich.console import Console

    console = Console(stderr=True, file=stream)
    if console.is_terminal:
        with _rich_bar(console, label, unit) as update:
            yield update
        return
    plain = _PlainProgress(label, unit, interval_s, stream)
    yield plain.update
    plain.finish()


@contextmanager
def _rich_bar(console, label: str, unit: str):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn(unit))
    with Progress(*columns, TimeRemainingColumn(), console=console, transient=True) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int | None = None, detail: str | None = None) -> None:
            description = f"{label}: {detail}" if detail else label
            bar.update(task, completed=done, total=total, description=description)

        yield update


class _PlainProgress:
    def __init__(self, label: str, unit: str, interval_s: float, stream: TextIO | None):
        self.label, self.unit, self.interval_s, self.stream = label, unit, interval_s, stream
        self.started = self._last = time.monotonic()
        self.done, self.total, self.detail, self.printed = 0, None, None, False

    def update(self, done: int, total: int | None = None, detail: str | None = None) -> None:
        self.done, self.total, self.detail = done, total if total is not None else self.total, detail
        now = time.monotonic()
        if now - self._last >= self.interval_s:
            self._last = now
            self._line()

    def finish(self) -> None:
        if self.printed:
            self._line(f" in {format_duration(time.monotonic() - self.started)}")

    def _line(self, tail: str = "") -> None:
        count = f"{self.done:,}/{self.total:,}" if self.total is not None else f"{self.done:,}"
        detail = f" ({self.detail})" if self.detail else ""
        typer.echo(f"{self.label}: {count} {self.unit}{detail}{tail}", file=self.stream, err=True)
        self.printed = True
