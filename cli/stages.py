"""Progress of a job in named stages (reading, aligning, embedding, ...): one bar per stage.

In a terminal (stderr) one rich display holds a bar per stage, with counts and ETA, added as each
stage first reports. Elsewhere (pipes, CI logs) a stage prints a plain line at most every
``interval_s`` and a closing line if it printed any: short jobs stay quiet, long ones never are.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import typer

Update = Callable[[str, int, int], None]  # (stage, done, total)


@contextmanager
def stage_progress(interval_s: float = 5.0) -> Iterator[Update]:
    """Yields ``update(stage, done, total)``."""
    from rich.console import Console

    console = Console(stderr=True)
    if console.is_terminal:
        with _rich_stages(console) as update:
            yield update
        return
    plain = _PlainStages(interval_s)
    try:
        yield plain.update
    finally:
        plain.finish()


@contextmanager
def _rich_stages(console) -> Iterator[Update]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        tasks: dict[str, int] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update


class _PlainStages:
    def __init__(self, interval_s: float):
        self.interval_s = interval_s
        self.started: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.state: dict[str, tuple[int, int]] = {}
        self.printed: set[str] = set()

    def update(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        self.started.setdefault(stage, now)
        self.last.setdefault(stage, now)
        self.state[stage] = (done, total)
        if now - self.last[stage] >= self.interval_s:
            self.last[stage] = now
            self._line(stage)

    def finish(self) -> None:
        for stage in sorted(self.printed):
            self._line(stage, f" in {time.monotonic() - self.started[stage]:.1f} s")

    def _line(self, stage: str, tail: str = "") -> None:
        done, total = self.state[stage]
        elapsed = time.monotonic() - self.started[stage]
        eta = f", ETA {elapsed / done * (total - done):.0f} s" if 0 < done < total and not tail else ""
        typer.echo(f"{stage}: {done:,}/{total:,}{eta}{tail}", err=True)
        self.printed.add(stage)
