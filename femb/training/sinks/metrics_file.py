"""``metrics.jsonl``: one JSON object per line, appended and flushed per event."""

from __future__ import annotations

import json
import os
from pathlib import Path

from femb.fileio import write_failure
from femb.training.events import Event, json_safe


class JsonlSink:
    """Appends each event to ``metrics.jsonl``, flushed per line so another process can follow it.

    A write that failed part-way (a full disk, a file-size limit, a kill) leaves a torn last
    line: an event that was never whole. The next writer cuts it off before appending, so its
    first event is never glued onto it and ``pandas.read_json(path, lines=True)`` keeps working
    (readers skip a torn line they meet meanwhile).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _cut_torn_tail(self.path)
        self._file = open(self.path, "ab")  # noqa: SIM115 - closed in close()

    def __call__(self, event: Event) -> None:
        line = json.dumps(json_safe(event), default=str) + "\n"
        try:
            self._file.write(line.encode("utf-8"))  # one write per event: whole or torn, never mixed
            self._file.flush()
        except OSError as error:
            raise write_failure(self.path, error, "its earlier lines are intact") from None

    def close(self) -> None:
        try:
            self._file.close()
        except OSError:  # the unflushed line of a write that failed, already reported by __call__
            pass


def _cut_torn_tail(path: Path, window: int = 1 << 16) -> None:
    """Truncate the file after its last newline when it does not end with one."""
    if not path.is_file():
        return
    with open(path, "r+b") as handle:
        size = handle.seek(0, os.SEEK_END)
        end = size
        while end > 0:
            start = max(0, end - window)
            handle.seek(start)
            chunk = handle.read(end - start)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                end = start + newline + 1
                break
            end = start
        if end != size:
            handle.truncate(end)
