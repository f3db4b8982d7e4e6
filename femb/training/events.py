"""Training events: plain dicts, one per line in ``metrics.jsonl``, consumed by sinks.

Every event has ``event`` (its kind) and ``time`` (Unix seconds). Kinds and their fields:

- ``start``: run_name, run_dir, config (dict), total_steps, steps_per_epoch, start_step,
  num_classes, num_parameters, device
- ``step``: step (1-based, after the optimizer step), epoch, loss, lr, images_per_s, eta_s,
  emb_norm_mean, emb_norm_std, and head extras such as ``regularizer``
- ``eval``: step, epoch, accuracy, accuracy_std, threshold, eer, auc, tar_at_far_1e-3,
  tar_at_far_1e-4 (one key per configured FAR), num_pairs, num_same, num_different, best_on,
  sets, best_accuracy, is_best. ``sets`` maps each validation set's name to its own figures
  (accuracy … num_different); the top-level figures are the ones ``best_on`` judges by: the named
  set's, or with ``"mean"`` each figure's mean over the sets (pair counts summed, threshold null).
  With one set they are that set's. ``best_accuracy`` and ``is_best`` follow the top-level accuracy.
- ``checkpoint``: step, path, kind ("last" | "best" | "manual" | "stop")
- ``log``: level ("info" | "warning" | "error"), message
- ``pause``: paused (bool), step
- ``progress``: task ("evaluation" | "projector"), step, done, total, final (bool): a long piece
  of work between steps, announced at 0, then at most about once a second, then at ``total``
- ``end``: step, reason ("completed" | "stopped" | "interrupted" | "nonfinite" | "error"),
  message, resume_from (the run directory to resume, or None)

A sink is any callable ``sink(event: dict) -> None``; it must be quick (the loop waits for it).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

Event = dict[str, Any]
EventSink = Callable[[Event], None]

EVENT_KINDS = ("start", "step", "eval", "checkpoint", "log", "pause", "progress", "end")


def make_event(kind: str, /, **fields: Any) -> Event:
    if kind not in EVENT_KINDS:
        raise ValueError(f"unknown event kind {kind!r}; choices: {', '.join(EVENT_KINDS)}")
    return {"event": kind, "time": time.time(), **fields}


def json_safe(value: Any) -> Any:
    """JSON has no NaN/Infinity; null keeps every line parseable by pandas and other readers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def read_events(path: str | os.PathLike) -> list[Event]:
    """All complete events in a metrics file (a half-written last line is left for later)."""
    return list(EventFollower(path).poll())


class LineFollower:
    """Reads a growing file incrementally, like ``tail -f`` without blocking: complete lines only.

    A file that shrank (replaced or truncated by a new run in the same folder) is read again
    from its start.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._offset = 0
        self._partial = b""

    def lines(self) -> list[bytes]:
        """The complete lines appended since the last call (a half-written last one waits)."""
        try:
            with open(self.path, "rb") as handle:
                if os.fstat(handle.fileno()).st_size < self._offset:
                    self._offset, self._partial = 0, b""
                handle.seek(self._offset)
                chunk = handle.read()
                self._offset = handle.tell()
        except (FileNotFoundError, IsADirectoryError):
            return []
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()  # b"" when the chunk ended with a newline
        return lines


class EventFollower(LineFollower):
    """Reads a growing ``metrics.jsonl`` incrementally; ``lines_read`` counts every line, event or not."""

    def __init__(self, path: str | os.PathLike):
        super().__init__(path)
        self.lines_read = 0

    def poll(self) -> Iterator[Event]:
        """The events appended since the last call. Lines that are torn, not JSON, not an object,
        or not UTF-8 are skipped: a metrics file damaged by a crash or by hand never stops a reader."""
        lines = self.lines()
        self.lines_read += sum(1 for line in lines if line.strip())
        for line in lines:
            event = parse_event_line(line)
            if event is not None:
                yield event


def parse_event_line(line: bytes) -> Event | None:
    """One metrics line as an event, or None when it is not one."""
    line = line.strip()
    if not line:
        return None
    try:
        value = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(value, dict) or not isinstance(value.get("event"), str):
        return None
    return value
