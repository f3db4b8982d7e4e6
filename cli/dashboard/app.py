"""The live training dashboard: events in, control requests out.

Two modes, one App:

- in process (``femb train``): ``run_training(sink, control)`` runs in a thread worker; the sink
  only queues events (``EventFeed``) and a 4 Hz timer folds them into the ``RunState`` on the UI
  thread; plots redraw at most twice a second.
- attached (``femb dashboard RUN_DIR``): a timer tails ``RUN_DIR/metrics.jsonl`` with an
  ``EventFollower`` (a finished run replays at once) and keys become request files in
  ``RUN_DIR/control/`` for the process that trains.

Quitting: ``q`` / ``ctrl+c`` while the run is live asks for confirmation, then requests a graceful
stop and closes the dashboard once the run has ended (in attached mode ``d`` detaches instead, and
a second ``q`` while stopping detaches). When the run ends by itself the dashboard stays open on
the final state until ``q``, unless ``exit_on_end=True``.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.events import Resize
from textual.widgets import Footer, Header
from textual.worker import Worker, WorkerState

from femb.training.control import TrainingControl
from femb.training.events import Event, EventFollower, EventSink
from femb_cli.dashboard.describe import describe_event
from femb_cli.dashboard.feed import EventFeed
from femb_cli.dashboard.screens import CANCEL, DETACH, STOP, ConfirmStopScreen
from femb_cli.dashboard.state import RunState, as_text, one_line_summary
from femb_cli.dashboard.steering import InProcessSteering, RunDirSteering, Steering
from femb_cli.dashboard.styles import DASHBOARD_CSS
from femb_cli.dashboard.widgets import AccuracyPlot, ConfigPanel, LossPlot, MetricsPanel, RunLog, StatusBar

RunTraining = Callable[[EventSink, TrainingControl], Any]

# Below this size the config panel gives way (its gist moves into the header) and the panels shrink.
COMPACT_WIDTH, COMPACT_HEIGHT = 110, 32


class DashboardApp(App[None]):
    CSS = DASHBOARD_CSS

    BINDINGS = [
        Binding("q", "request_stop", "Stop / quit"),
        Binding("ctrl+c", "request_stop", "Stop", show=False, priority=True),
        Binding("ctrl+q", "request_stop", "Stop", show=False, priority=True),
        Binding("s", "checkpoint", "Checkpoint"),
        Binding("e", "evaluate", "Evaluate"),
        Binding("p", "toggle_pause", "Pause / resume"),
    ]

    DRAIN_INTERVAL_S = 0.25  # text widgets follow the run at 4 Hz
    PLOT_MIN_INTERVAL_S = 0.5  # plots redraw at most at 2 Hz…
    PLOT_CPU_SHARE = 0.02  # …and less often when building them would take more than ~2% of a core
    FOLLOW_INTERVAL_S = 0.5

    def __init__(
        self,
        *,
        run_training: RunTraining | None = None,
        control: TrainingControl | None = None,
        follow_run_dir: Path | None = None,
        replay: bool = False,
        title: str | None = None,
        exit_on_end: bool = False,
    ):
        super().__init__()
        if (run_training is None) == (follow_run_dir is None):
            raise ValueError("give exactly one of run_training (in process) or follow_run_dir (attached)")
        self.run_training = run_training
        self.control = control if control is not None else TrainingControl()
        self.follow_run_dir = Path(follow_run_dir) if follow_run_dir is not None else None
        self.replay = replay
        self.exit_on_end = exit_on_end
        self.state = RunState()
        self.feed = EventFeed()
        self.steering: Steering = (
            RunDirSteering(self.follow_run_dir) if self.follow_run_dir else InProcessSteering(self.control)
        )
        self.follower = EventFollower(self.follow_run_dir / "metrics.jsonl") if self.follow_run_dir else None
        self.training_result: Any = None
        self.training_error: BaseException | None = None
        self.training_done = run_training is None
        self.stop_requested = False
        self._pause_wanted = False
        self._note = ""
        self._next_plot_at = 0.0
        self._sigterm_installed = False
        self._follow_failed = False
        if title:
            self.title = title
        elif self.follow_run_dir is not None:
            self.title = f"femb dashboard · {self.follow_run_dir.name}"
        else:
            self.title = "femb train"
        self.sub_title = ""

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with Vertical(id="main"):
            with Horizontal(id="plots"):
                yield LossPlot(id="loss-plot")
                yield AccuracyPlot(id="accuracy-plot")
            with Horizontal(id="panels"):
                yield MetricsPanel(id="metrics")
                yield ConfigPanel(id="config")
                yield RunLog(id="log")
            yield StatusBar(id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.run_log = self.query_one(RunLog)
        self._metrics = self.query_one(MetricsPanel)
        self._config = self.query_one(ConfigPanel)
        self._status = self.query_one(StatusBar)
        self._plots = (self.query_one(LossPlot), self.query_one(AccuracyPlot))
        self._set_compact(self.size.width, self.size.height)
        self._show_text()
        self.set_interval(self.DRAIN_INTERVAL_S, self.drain)
        if self.follower is not None:
            self.follow()
            if not self.replay:
                self.set_interval(self.FOLLOW_INTERVAL_S, self.follow)
        else:
            self._install_sigterm()
            self._train()

    def on_resize(self, event: Resize) -> None:
        self._set_compact(event.size.width, event.size.height)

    def _set_compact(self, width: int, height: int) -> None:
        compact = width < COMPACT_WIDTH or height < COMPACT_HEIGHT
        self.query_one("#main").set_class(compact, "-compact")

    # ------------------------------------------------------------------ events in
    @property
    def sink(self) -> EventSink:
        """The callable the training loop calls with each event (any thread, never blocks)."""
        return self.feed

    @work(thread=True, exit_on_error=False, name="training", group="training")
    def _train(self) -> Any:
        return self.run_training(self.feed, self.control)

    def follow(self) -> None:
        """Read what the metrics file gained since the last look."""
        try:
            events = list(self.follower.poll())
        except OSError as error:  # moved, deleted or unreadable: say so, keep the last state on screen
            if not self._follow_failed:
                self.run_log.add(f"error: cannot read {self.follower.path}: {error}", "error")
            self._follow_failed = True
            return
        self._follow_failed = False
        self.apply_events(events)
        self._redraw_plots()

    def drain(self) -> None:
        self.apply_events(self.feed.drain())
        self._redraw_plots()

    def refresh_now(self) -> None:
        """Take every queued event and redraw everything at once (tests, snapshots)."""
        if self.follower is not None:
            self.follow()
        self.drain()
        self._redraw_plots(force=True)

    def apply_events(self, events: list[Event]) -> None:
        if not events:
            return
        log = self.run_log
        ended = False
        for event in events:
            try:
                self.state.apply(event)
                kind = event.get("event")
                described = [] if kind == "step" else describe_event(event, self._run_dir())
            except (TypeError, ValueError, ArithmeticError) as error:  # a hand-edited or foreign line
                name = as_text(event.get("event"), 20) if isinstance(event, dict) else None
                log.add(f"warning: skipped a malformed {name!r} event: {error}", "warning")
                continue
            if kind == "step":
                continue
            for message, style in described:
                log.add(message, style)
            if kind == "pause":
                self._pause_wanted = self.state.paused
                self._note = ""
            elif kind == "start":
                self.stop_requested = False
                self.sub_title = one_line_summary(self.state)
                self._config.show(self.state)
            elif kind == "end":
                ended = True
        self._show_text()
        if ended:
            self._on_run_ended()

    def _run_dir(self) -> Path | None:
        return self.follow_run_dir or (Path(self.state.run_dir) if self.state.run_dir else None)

    def _show_text(self) -> None:
        self._metrics.show(self.state)
        self._status.show(self.state, self._note)

    def _redraw_plots(self, force: bool = False) -> None:
        now = time.monotonic()
        if now < self._next_plot_at and not force:
            return
        # The terminal's conversion of a chart costs about as much again as building it.
        cost = 2 * sum(plot.draw(self.state, force=force) for plot in self._plots)
        self._next_plot_at = now + max(self.PLOT_MIN_INTERVAL_S, cost / self.PLOT_CPU_SHARE)

    # ------------------------------------------------------------------ the end
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.name != "training" or event.state not in (WorkerState.SUCCESS, WorkerState.ERROR):
            return
        self.training_done = True
        self.drain()  # everything the run emitted before returning
        if event.state == WorkerState.ERROR:
            self.training_error = event.worker.error
            self.run_log.add(f"error: training failed: {self.training_error!r}", "error")
        else:
            self.training_result = event.worker.result
        if self.training_error is not None:
            # An exception wins over whatever end event came before it (a loop may report its
            # finally-block end as "completed" while the exception is on its way out).
            end = {
                "event": "end",
                "step": self.state.step,
                "reason": "error",
                "message": str(self.training_error),
            }
            self.apply_events([end])
        elif not self.state.ended:
            # The loop always ends with an end event; a bare run_training may not.
            reason = "stopped" if self.stop_requested else "completed"
            self.apply_events([{"event": "end", "step": self.state.step, "reason": reason, "message": ""}])
        else:
            self._on_run_ended()

    def _on_run_ended(self) -> None:
        self._redraw_plots(force=True)  # the final curves, whatever the redraw budget says
        self._note = "press q to quit"
        self._show_text()
        if (self.exit_on_end or self.stop_requested) and self.training_done:
            self.exit()

    # ------------------------------------------------------------------ requests out
    @property
    def run_live(self) -> bool:
        return not self.state.ended and not (self.training_done and self.run_training is not None)

    def action_request_stop(self) -> None:
        if not self.run_live:
            self.exit()
            return
        if isinstance(self.screen, ConfirmStopScreen):
            return
        if self.stop_requested:
            if self.steering.attached:
                self.exit()  # detach: the other process stops by itself
            else:
                self.notify("stopping: waiting for the loop to finish its step and save a checkpoint")
            return
        run_dir = self.state.run_dir or (str(self.follow_run_dir) if self.follow_run_dir else None)
        self.push_screen(
            ConfirmStopScreen(attached=self.steering.attached, run_dir=run_dir), self._answer_stop
        )

    def _answer_stop(self, answer: str | None) -> None:
        if answer == STOP:
            self.stop_requested = True
            self.steering.stop()
            self._note = "stopping…"
            self.run_log.add("stop requested: the run saves a checkpoint and ends", "action")
            self._show_text()
        elif answer == DETACH:
            self.exit()
        elif answer in (CANCEL, None):
            pass

    async def action_quit(self) -> None:
        # ctrl+q and the command palette's quit: never leave a training thread running unasked.
        self.action_request_stop()

    def _refuse_when_ended(self) -> bool:
        if self.run_live:
            return False
        self.notify("the run has ended", severity="warning")
        return True

    def action_checkpoint(self) -> None:
        if self._refuse_when_ended():
            return
        self.steering.checkpoint()
        self.run_log.add(f"checkpoint requested at step {self.state.step}", "action")

    def action_evaluate(self) -> None:
        if self._refuse_when_ended():
            return
        self.steering.evaluate()
        self.run_log.add(f"evaluation requested at step {self.state.step}", "action")

    def action_toggle_pause(self) -> None:
        if self._refuse_when_ended():
            return
        self._pause_wanted = self.steering.toggle_pause(self._pause_wanted)
        self._note = "pausing…" if self._pause_wanted else "resuming…"
        self.run_log.add(f"{'pause' if self._pause_wanted else 'resume'} requested", "action")
        self._show_text()

    # ------------------------------------------------------------------ process plumbing
    def _install_sigterm(self) -> None:
        # SIGTERM (a scheduler's kill) stops the in-process run gracefully, as it does without a dashboard.
        try:
            asyncio.get_running_loop().add_signal_handler(
                signal.SIGTERM, lambda: self.control.request_stop("terminated")
            )
            self._sigterm_installed = True
        except (NotImplementedError, RuntimeError, ValueError):
            pass

    def _remove_sigterm(self) -> None:
        if self._sigterm_installed:
            self._sigterm_installed = False
            try:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)
            except (NotImplementedError, RuntimeError, ValueError):
                pass

    def on_unmount(self) -> None:
        # The interpreter waits for the training thread at exit: make sure it has been asked to end.
        if not self.training_done and not self.control.stop_requested:
            self.control.request_stop("interrupted")
        self._remove_sigterm()


def create_dashboard_app(
    *,
    run_training: RunTraining | None = None,
    control: TrainingControl | None = None,
    follow_run_dir: Path | None = None,
    replay: bool = False,
    title: str | None = None,
    exit_on_end: bool = False,
) -> DashboardApp:
    """The dashboard for the CLI and the tests.

    In process: ``run_training(sink, control)`` is called in a worker thread and must pass ``sink``
    to the loop as a callback and ``control`` as its control channel; its return value ends up in
    ``app.training_result`` (an exception in ``app.training_error``). Attached: ``follow_run_dir``
    is a run directory whose ``metrics.jsonl`` is followed (``replay=True``: read once, no
    following).
    """
    return DashboardApp(
        run_training=run_training,
        control=control,
        follow_run_dir=follow_run_dir,
        replay=replay,
        title=title,
        exit_on_end=exit_on_end,
    )
