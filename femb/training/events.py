"""Training events: plain dicts, one per line in ``metrics.jsonl``, consumed by sinks.

Every event has ``event`` (its kind) and ``time`` (Unix seconds). Kinds and their fields:

- ``start``: run_name, run_dir, config (dict), total_steps, steps_per_epoch, start_step,
  num_classes, num_parameters, device
- ``step``: step (1-based, after the optimizer step), epoch, loss, lr, images_per_s, eta_s,
  emb_norm_mean, emb_norm_std, and head extras such as ``regularizer``
- ``eval``: step, epoch, accuracy, accuracy_std, threshold, eer, auc, tar_at_far_1e-3,
  tar_at_far_1e-4, num_pairs, best_accuracy, is_best
- ``checkpoint``: step, path, kind ("last" | "best" | "manual" | "stop")
- ``log``: level ("info" | "warning" | "error"), message
- ``pause``: paused (bool), step
- ``end``: step, reason ("completed" | "stopped" | "interrupted" | "nonfinite" | "error"),
  message, resume_command (or None)

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

EVENT_KINDS = ("start", "step", "eval", "checkpoint", "log", "pause", "end")


def make_event(kind: str, /, **fields: Any) -> Event:
    if kind not in EVENT_KINDS:
        raise ValueError(f"unknown event kind {kind!r}; choices: {', '.join(EVENT_KINDS)}")
    return {"event": kind, "time": time.time(), **fields}


def _json_safe(value: Any) -> Any:
    # JSON has no NaN/Infinity; null keeps every line parseable by pandas and other readers.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


class JsonlSink:
    """Appends each event to ``metrics.jsonl``, flushed per line so another process can follow it."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def __call__(self, event: Event) -> None:
        self._file.write(json.dumps(_json_safe(event), default=str) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_events(path: str | os.PathLike) -> list[Event]:
    """All complete events in a metrics file (a half-written last line is left for later)."""
    return list(EventFollower(path).poll())


class EventFollower:
    """Reads a growing ``metrics.jsonl`` incrementally, like ``tail -f`` without blocking."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._offset = 0
        self._partial = ""

    def poll(self) -> Iterator[Event]:
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8") as handle:
            handle.seek(self._offset)
            chunk = handle.read()
            self._offset = handle.tell()
        text = self._partial + chunk
        lines = text.split("\n")
        self._partial = lines.pop()  # "" when the chunk ended with a newline
        for line in lines:
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn line from a killed writer: skip it, keep following
