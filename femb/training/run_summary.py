"""One line per training run: what ``femb runs`` lists, usable without the command line.

A run directory (see :mod:`femb.training.run_dir`) is summarised from its ``config.toml`` (backbone,
head) and its ``metrics.jsonl`` event log (steps, evaluations, the end reason), plus one question
to the operating system: is a training process holding the run's lock right now?

Status is one of :data:`STATUSES`:

- ``running``: a process holds ``RUN/lock`` (checked first: a resumed run is running again even
  though the file still holds the earlier end event);
- ``completed``, ``stopped``, ``error``: the end event of the last session. ``interrupted``
  (Ctrl-C, SIGTERM) counts as ``stopped`` and ``nonfinite`` (the loss blew up) as ``error``; the
  raw reason stays in :attr:`RunSummary.end_reason`;
- ``died``: no end event after the last start and no process holding the lock. The trainer writes
  an end event on every exit it lives through, so this run was killed (``kill -9``, out of memory,
  power loss) and, unlike a stopped run, did not save a checkpoint on its way out;
- ``unreadable``: the folder could not be summarised at all; the other runs are listed as usual.

Everything read is treated as outside input: a torn last line, a damaged ``config.toml`` or a field
of the wrong type counts as missing, never as an error.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from femb.training.events import Event, read_events
from femb.training.run_dir import RunDir
from femb.training.run_events import (
    MAX_COUNT,
    as_moment,
    as_text,
    best_evaluation,
    duration,
    last_end_reason,
    run_status,
    set_accuracy,
    steps_done,
    steps_planned,
)

STATUSES = ("running", "completed", "stopped", "error", "died", "unreadable")

# Columns of :func:`runs_frame`, in order.
COLUMNS = (
    "name",
    "backbone",
    "head",
    "head_options",
    "steps_done",
    "steps_planned",
    "best_accuracy",
    "best_step",
    # then, when a run has several validation sets, one "val/<name>" column per set
    "status",
    "end_reason",
    "started",
    "duration_s",
    "path",
    # then one "option/<field>" column per schema option (head options as "option/head.<name>")
)
OPTION_COLUMN = "option/"


@dataclass(frozen=True)
class RunSummary:
    """A run in one record; ``started`` is Unix seconds, ``duration_s`` the time spent training."""

    name: str
    path: str
    backbone: str | None
    head: str | None
    head_options: str | None  # ``s=16.1 m=0.5``: the values the run used
    steps_done: int
    steps_planned: int | None
    best_accuracy: float | None
    best_step: int | None
    status: str
    end_reason: str | None
    started: float | None
    duration_s: float | None
    # Each validation set's accuracy at the best evaluation (the one best.pt holds), by name.
    set_accuracy: dict[str, float | None] = field(default_factory=dict)
    # Every schema option's value (``config_rows``), the head's as built.
    options: dict[str, Any] = field(default_factory=dict)

    def as_record(self) -> dict[str, Any]:
        return asdict(self)


def is_run_dir(path: str | os.PathLike) -> bool:
    """A folder ``femb train`` wrote: it holds ``config.toml`` or ``metrics.jsonl``."""
    run = RunDir(Path(path))
    return run.config_file.is_file() or run.metrics_file.is_file()


def is_running(path: str | os.PathLike) -> bool:
    """Whether a training process holds the run's lock (an ``flock`` on ``RUN/lock``, see ``RunLock``).

    The file alone says nothing (it stays behind after every run, with its last owner's PID, and a
    PID can be reused), so this asks the kernel: a shared lock taken without waiting fails exactly
    while the trainer holds its exclusive one. The probe is released at once; a trainer starting in
    that same instant would be refused with its usual one-line error. Without ``fcntl`` (Windows,
    where femb takes no lock) no run counts as running.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return False
    try:
        handle = open(RunDir(Path(path)).lock_file, "rb")  # noqa: SIM115 - closed below
    except OSError:  # no lock file: no process ever owned the run, or it cannot be read
        return False
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return False


def summarize_run(path: str | os.PathLike, now: float | None = None) -> RunSummary:
    """Read one run directory into a :class:`RunSummary` (``now`` times a running session)."""
    run = RunDir(Path(path))
    events = read_events(run.metrics_file)
    running = is_running(run.path)
    starts = [event for event in events if event.get("event") == "start"]
    config = _config(run, starts)
    end_reason = last_end_reason(events)
    best_accuracy, best_step, best_event = best_evaluation(events)
    options = _options(config, starts[-1].get("head") if starts else None)
    return RunSummary(
        name=run.name,
        path=str(run.path),
        backbone=as_text(config.get("backbone")),
        head=as_text(config.get("head")),
        head_options=_head_text(options),
        steps_done=steps_done(events),
        steps_planned=steps_planned(starts, config),
        best_accuracy=best_accuracy,
        best_step=best_step,
        status=run_status(running, end_reason),
        end_reason=end_reason,
        started=as_moment(starts[0].get("time")) if starts else None,
        duration_s=duration(events, running, time.time() if now is None else now),
        set_accuracy=set_accuracy(best_event),
        options=options,
    )


def _options(config: dict[str, Any], head: Any) -> dict[str, Any]:
    """Every schema option of the run, plain values only (the config is outside input); none
    when the run recorded no config (defaults would be a guess)."""
    from femb.training.config import config_rows

    if not config and not isinstance(head, dict):
        return {}
    shown = {}
    for key, value, _ in config_rows(config, head):
        if isinstance(value, list):
            value = ",".join(str(item) for item in value)
        if value is None or (isinstance(value, (bool, str)) and len(str(value)) <= 200):
            shown[key] = value
        elif isinstance(value, (int, float)):
            shown[key] = value if abs(value) < MAX_COUNT else None
    return shown


def _head_text(options: dict[str, Any]) -> str | None:
    """``s=16.1,m=0.5``: the head's options as the run used them, one word for a table cell."""
    shown = [
        f"{key.removeprefix('head.')}={value:g}"
        if isinstance(value, float)
        else f"{key.removeprefix('head.')}={value}"
        for key, value in options.items()
        if key.startswith("head.")
    ]
    return ",".join(shown) or None


def unreadable_run(path: Path, error: Exception) -> RunSummary:
    """A run folder that could not be summarised: listed as such, with nothing else claimed."""
    return RunSummary(
        name=path.name,
        path=str(path),
        backbone=None,
        head=None,
        head_options=None,
        steps_done=0,
        steps_planned=None,
        best_accuracy=None,
        best_step=None,
        status="unreadable",
        end_reason=f"{type(error).__name__}",
        started=None,
        duration_s=None,
    )


def summarize_runs(root: str | os.PathLike, now: float | None = None) -> list[RunSummary]:
    """Every run directly under ``root``, by name; folders that are not runs are skipped."""
    root = Path(root)
    folders = sorted(child for child in root.iterdir() if child.is_dir() and is_run_dir(child))
    summaries = []
    for folder in folders:
        try:
            summaries.append(summarize_run(folder, now))
        except Exception as error:  # noqa: BLE001 - one damaged run must not hide the others
            summaries.append(unreadable_run(folder, error))
    return summaries


def runs_frame(summaries: Iterable[RunSummary]):
    """A pandas DataFrame of runs, best accuracy first; runs never evaluated come last, by name."""
    import pandas as pd

    summaries = list(summaries)
    frame = pd.DataFrame([summary.as_record() for summary in summaries], columns=list(COLUMNS))
    frame = frame.astype({"steps_done": "Int64", "steps_planned": "Int64", "best_step": "Int64"})
    for offset, name in enumerate(set_names(summaries), start=frame.columns.get_loc("best_step") + 1):
        values = [summary.set_accuracy.get(name) for summary in summaries]
        frame.insert(offset, SET_COLUMN + name, pd.array(values, dtype="float64"))
    frame["best_accuracy"] = frame["best_accuracy"].astype("float64")
    for key in dict.fromkeys(key for summary in summaries for key in summary.options):
        frame[OPTION_COLUMN + key] = [summary.options.get(key) for summary in summaries]
    frame = frame.sort_values(["name"], kind="stable")
    frame = frame.sort_values("best_accuracy", ascending=False, na_position="last", kind="stable")
    return frame.reset_index(drop=True)


SET_COLUMN = "val/"  # a validation set's column: val/lfw


def set_names(summaries: list[RunSummary]) -> list[str]:
    """The validation sets that get a column, in the order first met: every set's, once a run
    has several (a single set's accuracy is already the best accuracy)."""
    if not any(len(summary.set_accuracy) > 1 for summary in summaries):
        return []
    return list(dict.fromkeys(name for summary in summaries for name in summary.set_accuracy))


def _config(run: RunDir, starts: list[Event]) -> dict[str, Any]:
    """``config.toml``, else the config of the last start event (the file may be damaged or absent)."""
    try:
        return run.read_config()
    except (ValueError, OSError):
        pass
    config = starts[-1].get("config") if starts else None
    return config if isinstance(config, dict) else {}
