"""The live training dashboard: a run directory in, control requests out.

The training always runs in a process of its own (``femb train`` starts it as a child; ``femb
train --detach`` or another terminal may have started it). The dashboard attaches to its run
directory, the same way for every run: a timer tails ``RUN_DIR/metrics.jsonl`` with an
``EventFollower`` (a finished run replays at once) and ``RUN_DIR/train.log`` for the start-up
phases and the last lines of a crash; keys become request files in ``RUN_DIR/control/``. Closing
the dashboard, or its terminal, never ends the training.

Quitting: ``q`` while the run is live asks first (stop, or detach and let it run); ``ctrl+c``
interrupts gracefully (a checkpoint, then the run ends) and a second ``ctrl+c`` within a few
seconds stops it at once. After a stop the dashboard closes once the run has ended. When the run
ends by itself the dashboard stays open on the final state until ``q``, unless ``exit_on_end``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.events import Resize
from textual.widgets import Footer, Header

from femb.training.events import Event, EventFollower, LineFollower
from femb_cli.dashboard.command_beside import STARTING, CommandBeside
from femb_cli.dashboard.describe import describe_event
from femb_cli.dashboard.process import ChildProcess, LockedProcess
from femb_cli.dashboard.requests import RunRequests
from femb_cli.dashboard.screens import ConfirmStopScreen
from femb_cli.dashboard.state import RunState, as_text, one_line_summary
from femb_cli.dashboard.steering import RunDirSteering
from femb_cli.dashboard.styles import DASHBOARD_CSS
from femb_cli.dashboard.widgets import AccuracyPlot, ConfigPanel, LossPlot, MetricsPanel, RunLog, StatusBar
from femb_cli.run_training import EXIT_CODES, parse_phase

# Below this size the config panel gives way (its gist moves into the header) and the panels shrink.
COMPACT_WIDTH, COMPACT_HEIGHT = 110, 32
FIRST_STEP = "waiting for the first step"


class DashboardApp(CommandBeside, RunRequests, App[None]):
    CSS = DASHBOARD_CSS

    BINDINGS = [
        Binding("q", "request_stop", "Stop / quit"),
        Binding("ctrl+c", "interrupt", "Interrupt", show=False, priority=True),
        Binding("ctrl+q", "request_stop", "Stop", show=False, priority=True),
        Binding("s", "checkpoint", "Checkpoint"),
        Binding("e", "evaluate", "Evaluate"),
        Binding("p", "toggle_pause", "Pause / resume"),
    ]

    # The trainer's threads take every core: each wake-up here stalls one of them, and its peers
    # wait at the next parallel barrier, so the dashboard costs a training several times its own
    # CPU. Hence once a second for the figures, and plots only every few seconds.
    FOLLOW_INTERVAL_S = 1.0
    PLOT_MIN_INTERVAL_S = 2.0  # plots redraw at most every 2 s…
    PLOT_CPU_SHARE = 0.005  # …and less often when building them would take over 0.5 % of a core
    TAIL_LINES = 12  # of train.log, shown when the training process fails

    def __init__(
        self,
        *,
        follow_run_dir: Path | None,
        process: ChildProcess | LockedProcess | None = None,
        replay: bool = False,
        title: str | None = None,
        exit_on_end: bool = False,
        when_drawn: Callable[[], None] | None = None,
    ):
        super().__init__()
        self.replay = replay
        self.exit_on_end = exit_on_end
        self.state = RunState()
        self.log_tail: deque[str] = deque(maxlen=self.TAIL_LINES)
        self.training_done = False  # the training process has gone
        self.stop_requested = False
        self.detached = False  # left on purpose while the run goes on
        self.cancelled = False  # left before the command had started the training
        self.printed: list[tuple[str, bool]] = []  # what the command printed while this drew: (text, stderr)
        self._when_drawn = when_drawn
        self._interrupted_at: float | None = None
        self._stop_asked: tuple[str, float] | None = None  # the request sent, and its wall-clock time
        self._pause_wanted = False
        self._note = ""
        self._next_plot_at = 0.0
        self._follow_failed = False
        self._garbage_reported = False
        self.sub_title = ""
        self.process: ChildProcess | LockedProcess | None = None
        if follow_run_dir is None:  # the command is still reading its options: see attach
            self.follow_run_dir = None
            self.title = title or "femb train"
            self._note = f"starting: {STARTING}"
        else:
            self._attach(Path(follow_run_dir), process, title)

    def _attach(self, run_dir: Path, process: ChildProcess | LockedProcess | None, title: str | None) -> None:
        self.follow_run_dir = run_dir
        self.process = process if process is not None else LockedProcess(run_dir)
        self.steering = RunDirSteering(run_dir)
        self.follower = EventFollower(run_dir / "metrics.jsonl")
        self.log_follower = LineFollower(run_dir / "train.log")
        self._session_started = self.process.started_at is None  # a start event of this process seen
        self.title = title or f"femb dashboard · {run_dir.name}"

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
        self.follow()
        if not self.replay:
            self.set_interval(self.FOLLOW_INTERVAL_S, self.follow)
        if self._when_drawn is not None:
            self.begin_capture_print(self, stdout=True, stderr=True)
            self.run_log.add(f"start-up: {STARTING}", "action")
            self.call_after_refresh(self._when_drawn)

    def on_resize(self, event: Resize) -> None:
        self._set_compact(event.size.width, event.size.height)

    def _set_compact(self, width: int, height: int) -> None:
        compact = width < COMPACT_WIDTH or height < COMPACT_HEIGHT
        self.query_one("#main").set_class(compact, "-compact")

    # ------------------------------------------------------------------ events in
    def follow(self) -> None:
        """Read what the run directory gained since the last look; notice a process that has gone."""
        if self.process is None:
            return
        gone = not self.training_done and self.process.gone()  # asked first: all it wrote is on disk
        self._read_run()
        if gone:
            self._process_gone()
        self._redraw_plots()

    def _read_run(self) -> None:
        try:
            events = list(self.follower.poll())
        except OSError as error:  # moved, deleted or unreadable: say so, keep the last state on screen
            if not self._follow_failed:
                self.run_log.add(f"error: cannot read {self.follower.path}: {error}", "error")
            self._follow_failed = True
            return
        self._follow_failed = False
        self._read_log()
        self.apply_events(events)
        if self.follower.lines_read and not self.state.events_seen and not self._garbage_reported:
            self._garbage_reported = True  # lines, yet not one event: say so, not empty panels
            self.run_log.add(
                f"error: {self.follower.path} holds {self.follower.lines_read} line(s) and not one femb "
                "event: it is not a metrics file, or it is damaged",
                "error",
            )
            self._note = "no readable events"
            self._show_text()

    def _read_log(self) -> None:
        for raw in self.log_follower.lines():
            phase = parse_phase(raw)
            if phase is None:
                self.log_tail.append(raw.decode("utf-8", "replace").rstrip()[:300])
            elif not self._session_started or not self.state.started:
                self.run_log.add(f"start-up: {phase}", "action")
                self._note = f"starting: {phase}"
                self._show_text()

    def refresh_now(self) -> None:
        """Take everything written so far and redraw everything at once (tests, snapshots)."""
        self.follow()
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
                described = [] if kind == "step" else describe_event(event, self.follow_run_dir)
            except (TypeError, ValueError, ArithmeticError) as error:  # a hand-edited or foreign line
                name = as_text(event.get("event"), 20) if isinstance(event, dict) else None
                log.add(f"warning: skipped a malformed {name!r} event: {error}", "warning")
                continue
            for message, style in described:
                log.add(message, style)
            if kind == "step" and self._note == FIRST_STEP:
                self._note = ""
            elif kind == "pause":
                self._pause_wanted = self.state.paused
                self._note = ""
            elif kind == "start":
                self._on_start(event)
            elif kind == "end":
                ended = True
        self._show_text()
        if ended and self._session_started:
            self._on_run_ended()

    def _on_start(self, event: Event) -> None:
        started_at = self.process.started_at
        when = event.get("time")
        if started_at is not None and isinstance(when, (int, float)) and when >= started_at - 1:
            self._session_started = True  # earlier start events are the history of a resumed run
        if self._stop_asked is not None and isinstance(when, (int, float)) and when >= self._stop_asked[1]:
            # Asked while this trainer was starting up: it discarded the request file as stale.
            self.steering.send(self._stop_asked[0])
        self.sub_title = one_line_summary(self.state)
        self._config.show(self.state)
        self._note = FIRST_STEP

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
    def _process_gone(self) -> None:
        """The training process has exited: its end as written, or what is known when it wrote none."""
        self.training_done = True
        code = self.process.exit_code
        wrote_end = self.state.ended and self._session_started
        if (code is not None and code not in EXIT_CODES.values()) or not wrote_end:
            if self.log_tail:
                self.run_log.add(f"the last lines of {self.log_follower.path}:", "error")
                for line in self.log_tail:
                    self.run_log.add(f"  {line}", "error")
        if wrote_end:
            self._on_run_ended()
            return
        how = f"exited with code {code}" if code is not None else "is gone"
        self.state.apply(
            {
                "event": "end",
                "step": self.state.step,
                "reason": "died",
                "message": f"the training process {how} without an end event",
            }
        )
        self.run_log.add(f"died at step {self.state.step}: the training process {how}", "error")
        self._session_started = True
        self._on_run_ended()

    def _on_run_ended(self) -> None:
        self._redraw_plots(force=True)  # the final curves, whatever the redraw budget says
        self._note = "press q to quit"
        self._show_text()
        # q was pressed and "Stop training?" is still open: the run ended first, so the question is
        # moot and what was asked for was leaving.
        leaving = isinstance(self.screen, ConfirmStopScreen)
        if self.exit_on_end or self.stop_requested or leaving:
            self.exit()


def create_dashboard_app(
    *,
    follow_run_dir: Path | None,
    process: ChildProcess | LockedProcess | None = None,
    replay: bool = False,
    title: str | None = None,
    exit_on_end: bool = False,
    when_drawn: Callable[[], None] | None = None,
) -> DashboardApp:
    """The dashboard for the CLI and the tests: ``follow_run_dir`` is a run directory whose
    ``metrics.jsonl`` is followed (``replay=True``: read once, no following). ``process`` is the
    training process when this command started it (default: whoever holds the run's lock).

    ``follow_run_dir=None``: the command has not read its options yet; ``when_drawn`` starts it
    once the first frame is on screen, and it posts :class:`Attach` (or :class:`Release`) later.
    """
    return DashboardApp(
        follow_run_dir=follow_run_dir,
        process=process,
        replay=replay,
        title=title,
        exit_on_end=exit_on_end,
        when_drawn=when_drawn,
    )
