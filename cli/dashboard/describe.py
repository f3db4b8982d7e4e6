"""What the dashboard's run log says for each training event: one place for the wording."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from femb.training.events import Event
from femb_cli.dashboard.state import as_count, as_text, fmt, progress_text, sets_text
from femb_cli.dashboard.widgets import RunLog
from femb_cli.errors import resume_command


def describe_event(event: Event, run_dir: Path | None) -> list[tuple[str, str]]:
    """(line, style) rows the run log shows for an event (a step shows none: the panels have it).

    Every field is read through the state's type checks: a metrics file is untrusted input.
    """
    kind, step = event.get("event"), as_count(event.get("step"))
    at = "?" if step is None else f"{step}"
    if kind == "start":
        start_step, total_steps = as_count(event.get("start_step")), as_count(event.get("total_steps"))
        where = f" from step {start_step:,}" if start_step else ""
        total = f"{total_steps:,}" if total_steps else "?"
        return [
            (
                f"training {as_text(event.get('run_name')) or 'run'} on "
                f"{as_text(event.get('device')) or '?'}: {total} steps{where}",
                "action",
            )
        ]
    if kind == "eval":
        best = " (best)" if event.get("is_best") is True else ""
        return [
            (
                f"step {at}: accuracy {fmt(event.get('accuracy'))} ± {fmt(event.get('accuracy_std'))}  "
                f"EER {fmt(event.get('eer'))}  AUC {fmt(event.get('auc'))}{best}{sets_text(event)}",
                "good" if best else "info",
            )
        ]
    if kind == "checkpoint":
        path, saved = as_text(event.get("path"), 4096), as_text(event.get("kind"), 20)
        return [(f"step {at}: checkpoint ({saved}) → {short_path(path, run_dir)}", "info")]
    if kind == "log":
        level = event.get("level")
        level = level if isinstance(level, str) and level in RunLog.STYLES else "info"
        prefix = "" if level == "info" else f"{level}: "
        return [(f"{prefix}{as_text(event.get('message'), 1000) or ''}", level)]
    if kind == "pause":
        return [(f"{'paused' if event.get('paused') is True else 'resumed'} at step {at}", "warning")]
    if kind == "progress" and event.get("final") is True and as_count(event.get("done")) == 0:
        return [(progress_text(event), "action")]  # the last long pieces are announced
    if kind == "end":
        reason = as_text(event.get("reason"), 40) or "ended"
        lines = [
            (
                f"{reason} at step {at}: {as_text(event.get('message'), 1000) or ''}",
                "good" if reason == "completed" else "warning",
            )
        ]
        command = as_text(resume_command(event), 4096)
        if command:
            lines.append((f"resume with: {command}", "action"))
        return lines
    return []


def short_path(path: Any, run_dir: Path | None) -> str:
    """A checkpoint's path relative to its run directory, when it is inside it."""
    if path and run_dir is not None:
        try:
            return str(Path(path).relative_to(run_dir))
        except ValueError:
            pass
    return str(path)
