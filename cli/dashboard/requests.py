"""What the dashboard asks of the training: stop (q asks first), interrupt (Ctrl-C; twice: at
once, then killed if it lingers), detach, checkpoint, evaluate, pause. The half of ``DashboardApp``
that sends requests; the app's other half reads the run."""

from __future__ import annotations

import time

from femb_cli.dashboard.screens import DETACH, STOP, ConfirmStopScreen


class RunRequests:
    """Mixed into ``DashboardApp``: uses its ``state``, ``steering``, ``process``, ``run_log`` and
    ``_show_text``, and the request bookkeeping it initialises."""

    HARD_STOP_WINDOW_S = 3.0  # a second Ctrl-C this soon after the first stops the run at once
    KILL_AFTER_S = 10.0  # …and a process still there this long after it is killed (stuck, or deaf to SIGINT)

    @property
    def run_live(self) -> bool:
        return not self.training_done and not (self.state.ended and self._session_started)

    def _cancel_start(self) -> bool:
        """q or Ctrl-C before the command has started the training: leave; it starts none."""
        if self.process is not None:
            return False
        self.cancelled = True
        self.exit()
        return True

    def action_request_stop(self) -> None:
        if self._cancel_start():
            return
        if not self.run_live:
            self.exit()
            return
        if isinstance(self.screen, ConfirmStopScreen):
            return
        if self.stop_requested:
            self._detach()  # the run stops by itself
            return
        run_dir = self.state.run_dir or str(self.follow_run_dir)
        self.push_screen(ConfirmStopScreen(attached=True, run_dir=run_dir), self._answer_stop)

    def _answer_stop(self, answer: str | None) -> None:
        if answer == STOP:
            self._ask_to_end("stop")
            self._note = "stopping…"
            self.run_log.add("stop requested: the run saves a checkpoint and ends", "action")
            self._show_text()
        elif answer == DETACH:
            self._detach()

    def _ask_to_end(self, request: str) -> None:
        """``stop`` or ``interrupt``, remembered: a trainer still starting up discards it, and a
        start event read after it must not cancel it."""
        self.steering.send(request)
        self._stop_asked = (request, time.time())
        self.stop_requested = True

    def _detach(self) -> None:
        self.detached = True
        self.exit()

    def action_interrupt(self) -> None:
        """Ctrl-C: a graceful stop (checkpoint, then exit); again within a few seconds: at once."""
        if self._cancel_start():
            return
        if not self.run_live:
            self.exit()
            return
        now = time.monotonic()
        if self._interrupted_at is not None and now - self._interrupted_at <= self.HARD_STOP_WINDOW_S:
            self.process.stop_hard()
            # A second signal a moment later: the first may only have asked, if the run had not yet
            # read the graceful request.
            self.set_timer(1.0, self.process.stop_hard)
            self.set_timer(self.KILL_AFTER_S, self.process.kill)
            self._note = "stopping at once…"
            self.run_log.add("second Ctrl-C: stopping at once, without a final checkpoint", "warning")
        else:
            self._ask_to_end("interrupt")
            self._note = "interrupting… (Ctrl-C again: at once)"
            self.run_log.add("interrupt requested: the run saves a checkpoint and ends", "action")
        self._interrupted_at = now
        self.stop_requested = True
        self._show_text()

    async def action_quit(self) -> None:
        # ctrl+q and the command palette's quit ask first, as q does.
        self.action_request_stop()

    def _refused(self) -> bool:
        """Whether there is no live training to ask (still starting, or ended): said in a notice."""
        if self.process is not None and self.run_live:
            return False
        self.notify(
            "the training is still starting" if self.process is None else "the run has ended",
            severity="warning",
        )
        return True

    def action_checkpoint(self) -> None:
        if self._refused():
            return
        self.steering.checkpoint()
        self.run_log.add(f"checkpoint requested at step {self.state.step}", "action")

    def action_evaluate(self) -> None:
        if self._refused():
            return
        self.steering.evaluate()
        self.run_log.add(f"evaluation requested at step {self.state.step}", "action")

    def action_toggle_pause(self) -> None:
        if self._refused():
            return
        self._pause_wanted = self.steering.toggle_pause(self._pause_wanted)
        self._note = "pausing…" if self._pause_wanted else "resuming…"
        self.run_log.add(f"{'pause' if self._pause_wanted else 'resume'} requested", "action")
        self._show_text()
