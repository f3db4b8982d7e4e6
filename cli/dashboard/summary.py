"""The run as text, for `femb dashboard RUN` when stdout is not a terminal (a pipe, a file, CI)."""

from __future__ import annotations

from pathlib import Path

from femb.training.events import EventFollower
from femb_cli.dashboard.process import LockedProcess
from femb_cli.dashboard.state import RunState, fmt, format_duration, one_line_summary, status_word


def run_summary_lines(run_dir: Path) -> tuple[list[str], bool]:
    """(lines, readable): the same folding of the same events as the dashboard, written out.
    ``readable`` is False when ``metrics.jsonl`` has lines and not one of them is an event."""
    follower = EventFollower(run_dir / "metrics.jsonl")
    state, skipped = RunState(), 0
    for event in follower.poll():
        try:
            state.apply(event)
        except (TypeError, ValueError, ArithmeticError):
            skipped += 1
    process = LockedProcess(run_dir)
    gone = process.gone()
    lines = [f"run {run_dir}: {one_line_summary(state) or 'no start event yet'}"]
    if not state.events_seen:
        status = "starting" if not gone and (run_dir / "train.log").is_file() else "no events"
    elif state.ended:
        status = status_word(state)
    elif gone:
        status = "died (its process is gone and wrote no end event)"
    else:
        status = "running" if (run_dir / "lock").is_file() else status_word(state)
    if status.startswith(("running", "starting")) and process.pid:
        status += f" (pid {process.pid})"
    total = f"/{state.total_steps:,}" if state.total_steps else ""
    lines.append(f"status: {status} · step {state.step:,}{total} · epoch {state.epoch}")
    if state.loss is not None:
        lines.append(
            f"loss {fmt(state.loss)} (smoothed {fmt(state.loss_ema)}) · lr {fmt(state.lr, '.4g')} · "
            f"{fmt(state.images_per_s, '.1f')} img/s · ETA {format_duration(state.eta_s)}"
        )
    if state.best_eval:
        best = state.best_eval
        lines.append(f"best verification accuracy {fmt(best.get('accuracy'))} at step {best.get('step')}")
    if state.end:
        lines.append(f"end: {state.end['reason']} at step {state.end['step']}: {state.end['message'] or ''}")
        if state.end.get("resume_command"):
            lines.append(f"resume with: {state.end['resume_command']}")
    if skipped or follower.lines_read > state.events_seen:
        lines.append(f"skipped {follower.lines_read - state.events_seen + skipped} unreadable line(s)")
    return lines, bool(state.events_seen) or not follower.lines_read
