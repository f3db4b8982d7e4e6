"""The hand-off from the training thread to the UI thread: a cheap, never-blocking sink."""

from __future__ import annotations

import threading

from femb.training.events import Event

# Steps the UI may fall behind by before a new step event replaces the queued one (a lagging UI
# then thins the loss curve instead of growing the queue); other events are never dropped.
MAX_PENDING_STEPS = 2048


class EventFeed:
    """``feed(event)`` from any thread; ``drain()`` on the UI thread takes everything queued so far."""

    def __init__(self, max_pending_steps: int | None = MAX_PENDING_STEPS):
        self.max_pending_steps = max_pending_steps
        self._lock = threading.Lock()
        self._pending: list[Event] = []
        self._pending_steps = 0
        self.coalesced = 0

    def __call__(self, event: Event) -> None:
        with self._lock:
            if event.get("event") == "step":
                if (
                    self.max_pending_steps is not None
                    and self._pending_steps >= self.max_pending_steps
                    and self._pending
                    and self._pending[-1].get("event") == "step"
                ):
                    self._pending[-1] = event
                    self.coalesced += 1
                    return
                self._pending_steps += 1
            self._pending.append(event)

    def drain(self) -> list[Event]:
        with self._lock:
            taken, self._pending, self._pending_steps = self._pending, [], 0
        return taken

    def __len__(self) -> int:
        return len(self._pending)
