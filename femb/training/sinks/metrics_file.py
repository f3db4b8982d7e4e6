"""``metrics.jsonl``: one JSON object per line, appended and flushed per event."""

from __future__ import annotations

import json
import os
from pathlib import Path

from femb.training.events import Event, json_safe


class JsonlSink:
    """Appends each event to ``metrics.jsonl``, flushed per line so another process can follow it.

    A write that failed part-way (a full disk, a file-size limit, a kill) leaves a torn last
    line; the next writer starts on a fresh line so its first event is never glued onto it
    (readers skip the torn line).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "ab")  # noqa: SIM115 - closed in close()
        if self._file.tell() > 0 and not _ends_with_newline(self.path):
            self._file.write(b"\n")
            self._file.flush()

    def __call__(self, event: Event) -> None:
        line = json.dumps(json_safe(event), default=str) + "\n"
        self._file.write(line.encode("utf-8"))  # one write per event: a line is whole or torn, never mixed
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"
