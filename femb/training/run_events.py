"""What a run's ``metrics.jsonl`` events say, read as outside input for :mod:`femb.training.run_summary`.

A torn line, a field of the wrong type or a number no run produces counts as missing (None), never
as an error.
"""

from __future__ import annotations

import math
from typing import Any

from femb.training.events import Event

# Counts and times beyond these are damage, not a run (a step count pandas cannot hold, a year 2500).
MAX_COUNT, MAX_TIME = 2**53, 2**34

# The end event's reason, folded into the few statuses a list of runs needs.
END_STATUS = {
    "completed": "completed",
    "stopped": "stopped",
    "interrupted": "stopped",
    "nonfinite": "error",
    "error": "error",
}


def set_accuracy(event: Event | None) -> dict[str, float | None]:
    sets = (event or {}).get("sets")
    if not isinstance(sets, dict):
        return {}
    return {
        str(name): as_accuracy(figures.get("accuracy")) if isinstance(figures, dict) else None
        for name, figures in sets.items()
        if isinstance(name, str) and name
    }


def as_accuracy(value: Any) -> float | None:
    number = as_number(value)
    return number if number is not None and 0.0 <= number <= 1.0 else None


def steps_done(events: list[Event]) -> int:
    """The step the run last reported: a resumed session restarts from its ``start_step``."""
    done = 0
    for event in events:
        key = "start_step" if event.get("event") == "start" else "step"
        step = as_count(event.get(key))
        if step is not None:
            done = step
    return done


def steps_planned(starts: list[Event], config: dict[str, Any]) -> int | None:
    """The last session's ``total_steps`` (it resolves ``epochs``), else ``steps`` from the config."""
    for start in reversed(starts):
        total = as_count(start.get("total_steps"))
        if total:
            return total
    return as_count(config.get("steps")) or None


def best_evaluation(events: list[Event]) -> tuple[float | None, int | None, Event | None]:
    """The highest verification accuracy, the first step that reached it and its event."""
    best, best_step, best_event = None, None, None
    for event in events:
        if event.get("event") != "eval":
            continue
        accuracy = as_accuracy(event.get("accuracy"))
        if accuracy is not None and (best is None or accuracy > best):
            best, best_step, best_event = accuracy, as_count(event.get("step")), event
    return best, best_step, best_event


def last_end_reason(events: list[Event]) -> str | None:
    """The end reason of the last session, or None when that session never ended."""
    reason = None
    for event in events:
        if event.get("event") == "start":
            reason = None
        elif event.get("event") == "end":
            reason = as_text(event.get("reason")) or "error"
    return reason


def run_status(running: bool, end_reason: str | None) -> str:
    if running:
        return "running"
    if end_reason is None:
        return "died"
    return END_STATUS.get(end_reason, "error")


def duration(events: list[Event], running: bool, now: float) -> float | None:
    """Seconds spent training: each session from its start event to its last event (to ``now``
    for the session still running), so the gaps between a stop and a resume do not count."""
    total, session_start, last = None, None, None
    for event in events:
        moment = as_number(event.get("time"))
        if moment is None:
            continue
        if event.get("event") == "start":
            total = _add_session(total, session_start, last)
            session_start = moment
        last = moment
    if session_start is not None and running:
        last = max(last, now)
    return _add_session(total, session_start, last)


def _add_session(total: float | None, start: float | None, end: float | None) -> float | None:
    if start is None or end is None:
        return total
    return (total or 0.0) + max(0.0, end - start)


def as_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def as_count(value: Any) -> int | None:
    number = as_number(value)
    whole = number is not None and 0 <= number < MAX_COUNT and number.is_integer()
    return int(number) if whole else None


def as_moment(value: Any) -> float | None:
    """Unix seconds, or None for a time no clock gives."""
    number = as_number(value)
    return number if number is not None and 0 <= number < MAX_TIME else None


def as_text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
