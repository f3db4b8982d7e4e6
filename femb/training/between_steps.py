"""What the training loop does between steps: checkpoints, evaluations and control requests.

A mixin of :class:`femb.training.loop.Trainer`, which holds the state these read (its checkpointer,
validation, control channel, meter and sinks); kept apart so the loop itself stays one screen.
"""

from __future__ import annotations

import time
from pathlib import Path

from femb.training import reporting


class BetweenSteps:
    """Saving, evaluating and acting on control requests, each outside the measured training time."""

    def save(self, kind: str) -> Path | None:
        with self.meter.excluded():
            path = self.checkpointer.save(kind, self.model, self.state, self.objective)
        if path is not None:
            self.emit("checkpoint", step=self.step, path=str(path), kind=kind)
        return path

    def evaluate(self, final: bool = False) -> dict | None:
        if not self.validation.enabled:
            return None
        with self.meter.excluded():
            return self._evaluate(final)

    def _evaluate(self, final: bool) -> dict | None:
        on_batch = reporting.TaskProgress(self.emit, "evaluation", self.step, final=final)
        metrics, is_best = self.validation.run(self.progress, on_batch)
        self._evaluated_at = self.step  # on every rank (only rank 0 holds the metrics)
        if metrics is not None:
            self.history.append({"event": "eval", **self.progress.last_eval})
            best = self.progress.best_accuracy
            self.emit(
                "eval",
                step=self.step,
                epoch=self.progress.epoch,
                **metrics,
                best_accuracy=best,
                is_best=is_best,
            )
        if is_best:
            self.save("best")
        return metrics

    def _handle_requests(self) -> bool:
        """Act on control requests between steps (waiting while paused); True means stop now.

        Every rank takes the same decision: rank 0's requests (dashboard, control files) and any
        rank's signals are agreed on in one all-reduce.
        """
        stop, paused = self._agree_on_requests()
        if paused and not stop:
            self.emit("pause", paused=True, step=self.step)
            with self.meter.excluded():  # the pause is not training time
                while paused and not stop:
                    time.sleep(0.05)
                    stop, paused = self._agree_on_requests()
            self.emit("pause", paused=False, step=self.step)
        if stop:
            self.control.request_stop(self.control.stop_reason or "stopped")
        return stop

    def _agree_on_requests(self) -> tuple[bool, bool]:
        requests = self.control.poll()
        stop, paused, checkpoint, evaluate = self.runtime.agree(
            [self.control.stop_requested, self.control.paused, requests.checkpoint, requests.evaluate]
        )
        if checkpoint:
            self.save("manual")
        if evaluate:
            self.evaluate()
        return stop, paused
