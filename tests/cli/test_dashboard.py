"""The live dashboard: pilots attached to a run directory, keys → control, the CLI, snapshots."""

from __future__ import annotations

import asyncio
import functools
import io
import json
import math
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from femb.training.control import TrainingControl
from femb.training.events import Event, EventSink
from femb.training.run_dir import RunDir, RunLock
from femb.training.sinks.metrics_file import JsonlSink
from femb_cli.dashboard import DashboardApp, create_dashboard_app
from femb_cli.dashboard.process import ChildProcess
from femb_cli.dashboard.screens import ConfirmStopScreen
from femb_cli.dashboard.widgets import ConfigPanel, MetricsPanel, RunLog, StatusBar
from femb_cli.main import app as cli_app

WIDE, COMPACT = (120, 40), (80, 24)

# ---------------------------------------------------------------------------------------- synthetic runs

CONFIG = {
    "backbone": "mobilefacenet_small",
    "embed_dim": 128,
    "head": "arcface",
    "head_options": {"s": 64.0, "m": 0.5},
    "data": "synthetic:200",
    "batch_size": 64,
    "optimizer": "sgd",
    "lr": 0.1,
    "scheduler": "cosine",
    "amp": "none",
    "device": "auto",
}


def start_event(total_steps: int = 400, run_dir: str = "runs/demo") -> Event:
    return {
        "event": "start",
        "time": 0.0,
        "run_name": "demo",
        "run_dir": run_dir,
        "config": CONFIG,
        "total_steps": total_steps,
        "steps_per_epoch": 75,
        "start_step": 0,
        "num_classes": 200,
        "num_parameters": 1_234_567,
        "device": "cpu",
        "batch_size": 64,
    }


def step_event(step: int, total_steps: int = 400) -> Event:
    return {
        "event": "step",
        "time": 0.0,
        "step": step,
        "epoch": (step - 1) // 75,
        "loss": 20 * math.exp(-step / 80) + 2 + 0.5 * math.sin(step),
        "lr": 0.1 * (1 + math.cos(math.pi * step / total_steps)) / 2,
        "images_per_s": 512.0,
        "eta_s": (total_steps - step) / 8.0,
        "emb_norm_mean": 10.0,
        "emb_norm_std": 1.0,
    }


def eval_event(step: int, accuracy: float | None = None, is_best: bool = True) -> Event:
    accuracy = 0.6 + 0.3 * (1 - math.exp(-step / 100)) if accuracy is None else accuracy
    return {
        "event": "eval",
        "time": 0.0,
        "step": step,
        "epoch": 0,
        "accuracy": accuracy,
        "accuracy_std": 0.02,
        "threshold": 0.3,
        "eer": 1 - accuracy,
        "auc": min(1.0, accuracy + 0.05),
        "tar_at_far_1e-3": accuracy - 0.2,
        "tar_at_far_1e-4": accuracy - 0.3,
        "num_pairs": 2000,
        "best_accuracy": accuracy,
        "is_best": is_best,
    }


def checkpoint_event(step: int, kind: str = "best", run_dir: str = "runs/demo") -> Event:
    return {
        "event": "checkpoint",
        "time": 0.0,
        "step": step,
        "path": f"{run_dir}/checkpoints/{kind}.pt",
        "kind": kind,
    }


def synthetic_run(
    steps: int = 200, total_steps: int = 400, end: bool = False, run_dir: str = "runs/demo"
) -> list[Event]:
    events = [start_event(total_steps, run_dir)]
    for step in range(1, steps + 1):
        events.append(step_event(step, total_steps))
        if step % 50 == 0:
            events += [eval_event(step), checkpoint_event(step, "best", run_dir)]
    events.append(
        {
            "event": "log",
            "time": 0.0,
            "level": "warning",
            "message": "learning rate warm-up is longer than the run",
        }
    )
    if end:
        events += [
            checkpoint_event(steps, "last", run_dir),
            {
                "event": "end",
                "time": 0.0,
                "step": steps,
                "reason": "completed",
                "message": f"finished {steps} steps",
                "resume_command": None,
            },
        ]
    return events


def write_events(path: Path, events: list[Event], mode: str = "w") -> None:
    with open(path, mode, encoding="utf-8") as handle:
        handle.writelines(json.dumps(event) + "\n" for event in events)


class FakeTraining:
    """A stand-in for the training process: emits a run's first events, then obeys control until stopped.

    Between "steps" it polls the control like the real loop: checkpoint and evaluation requests
    become events, pause toggles become pause events, stop ends the run with a last checkpoint.
    ``finish=True`` ends by itself (completed) instead of waiting.
    """

    def __init__(self, steps: int = 100, finish: bool = False, run_dir: str = "runs/demo"):
        self.steps = steps
        self.finish = finish
        self.run_dir = run_dir
        self.ready = threading.Event()

    def __call__(self, sink: EventSink, control: TrainingControl) -> str:
        for event in synthetic_run(self.steps, run_dir=self.run_dir):
            sink(event)
        step = self.steps
        self.ready.set()
        if self.finish:
            sink(
                {
                    "event": "end",
                    "time": 0.0,
                    "step": step,
                    "reason": "completed",
                    "message": "done",
                    "resume_command": None,
                }
            )
            return "completed"
        paused = False
        deadline = time.monotonic() + 30  # a test that forgets to stop must not hang the suite
        while time.monotonic() < deadline:
            requests = control.poll()
            if requests.checkpoint:
                sink(checkpoint_event(step, "manual", self.run_dir))
            if requests.evaluate:
                sink(eval_event(step, accuracy=0.5, is_best=False))
            if control.paused != paused and not requests.stop:
                paused = control.paused
                sink({"event": "pause", "time": 0.0, "paused": paused, "step": step})
            if requests.stop:
                sink(checkpoint_event(step, "last", self.run_dir))
                sink(
                    {
                        "event": "end",
                        "time": 0.0,
                        "step": step,
                        "reason": control.stop_reason,
                        "message": "stopped on request",
                        "resume_command": f"femb train --resume {self.run_dir}",
                    }
                )
                return control.stop_reason
            time.sleep(0.005)
        raise TimeoutError("FakeTraining was never stopped")


class FakeRun:
    """FakeTraining on the far side of a run directory, as the training process is: it holds the
    run's lock, appends to ``metrics.jsonl`` and reads ``control/``; the lock goes when it ends."""

    def __init__(self, run_dir: Path, training: FakeTraining):
        self.run_dir, self.training = run_dir, training
        self.control = TrainingControl(run_dir / "control")
        self.result: str | None = None
        self._locked = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> FakeRun:
        self.thread.start()
        self._locked.wait(10)
        return self

    def _run(self) -> None:
        with RunLock(RunDir(self.run_dir).create()):
            self._locked.set()
            sink = JsonlSink(self.run_dir / "metrics.jsonl")
            try:
                self.result = self.training(sink, self.control)
            finally:
                sink.close()

    @property
    def done(self) -> bool:
        return not self.thread.is_alive()


def fake_run(tmp_path: Path, **options) -> FakeRun:
    return FakeRun(tmp_path, FakeTraining(run_dir=str(tmp_path), **options)).start()


def screen_text(app) -> str:
    """The screen as plain text (what a terminal capture shows)."""
    width, height = app.size
    console = Console(
        width=width,
        height=height,
        file=io.StringIO(),
        force_terminal=True,
        record=True,
        color_system="truecolor",
        legacy_windows=False,
        safe_box=False,
    )
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text()


def run_async(test):
    """Run an ``async def`` test in its own event loop (no pytest-asyncio here)."""

    @functools.wraps(test)
    def runner(*args, **kwargs):
        asyncio.run(test(*args, **kwargs))

    return runner


async def wait_for(pilot, condition, timeout: float = 10.0) -> None:
    """Let the app run until ``condition()`` holds (short pauses, no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await pilot.pause(0.02)


def widget_text(app: DashboardApp, widget_type) -> str:
    console = Console(width=200, file=io.StringIO(), record=True, color_system=None)
    console.print(app.query_one(widget_type).content)
    return console.export_text()


# ---------------------------------------------------------------------------------------- a live run


@pytest.mark.parametrize("size", [WIDE, COMPACT], ids=["120x40", "80x24"])
@run_async
async def test_a_live_run_updates_every_widget(tmp_path, size):
    run = fake_run(tmp_path, steps=100)
    app = create_dashboard_app(follow_run_dir=tmp_path, title="femb train · demo")
    async with app.run_test(size=size) as pilot:
        await wait_for(pilot, lambda: run.training.ready.is_set() and app.state.step == 100)
        app.refresh_now()
        await pilot.pause()
        bar = app.query_one(StatusBar).query_one("ProgressBar")
        assert (bar.progress, bar.total) == (100, 400)
        metrics = widget_text(app, MetricsPanel)
        best = 0.6 + 0.3 * (1 - math.exp(-1))
        assert f"{best:.4f}" in metrics and "512.0 img/s" in metrics
        log = "\n".join(app.query_one(RunLog).lines_text)
        assert "step 100: accuracy" in log and "(best)" in log
        assert "checkpoint (best) → checkpoints/best.pt" in log
        assert "warning: learning rate warm-up" in log
        assert app.state.loss_curve.xs[-1] == 100 and len(app.state.accuracy_curve) == 2
        text = screen_text(app)
        assert "step 100/400" in text and "running" in text and "verification accuracy" in text
        if size == WIDE:
            assert "arcface s=64 m=0.5" in widget_text(app, ConfigPanel)
        else:
            assert not app.query_one(ConfigPanel).display  # its gist is in the header instead
            assert "mobilefacenet_small" in app.sub_title
        run.control.request_stop("stopped")
        await wait_for(pilot, lambda: app.training_done)  # its lock is free: the process has gone


@run_async
async def test_quit_asks_first_then_stops_gracefully(tmp_path):
    run = fake_run(tmp_path)
    app = create_dashboard_app(follow_run_dir=tmp_path)
    async with app.run_test(size=COMPACT) as pilot:
        await wait_for(pilot, run.training.ready.is_set)
        log = app.query_one(RunLog)
        await pilot.press("q")
        assert isinstance(app.screen, ConfirmStopScreen)
        await pilot.press("n")
        assert not isinstance(app.screen, ConfirmStopScreen) and not (tmp_path / "control" / "stop").exists()
        await pilot.press("q")
        await pilot.press("y")
        await wait_for(pilot, lambda: app.return_code is not None)  # closes once the run has ended
    assert run.control.stop_reason == "stopped" and run.result == "stopped"
    assert app.state.ended and app.state.end["reason"] == "stopped" and not app.detached
    assert f"resume with: femb train --resume {tmp_path}" in log.lines_text


@run_async
async def test_a_run_that_ends_while_stop_is_asked_closes_the_dashboard(tmp_path):
    """q pressed just before the run's end was read: "Stop training?" is moot once the end comes,
    and what was asked for was leaving, so the dashboard closes instead of waiting on the question."""
    run = fake_run(tmp_path)
    app = create_dashboard_app(follow_run_dir=tmp_path)
    async with app.run_test(size=COMPACT) as pilot:
        await wait_for(pilot, run.training.ready.is_set)
        await pilot.press("q")
        assert isinstance(app.screen, ConfirmStopScreen)
        run.control.request_stop("stopped")  # the run ends by itself, not through this dashboard
        await wait_for(pilot, lambda: app.return_code is not None)
    assert app.state.ended and not app.stop_requested and not app.detached


@run_async
async def test_ctrl_c_interrupts_gracefully_without_asking(tmp_path):
    run = fake_run(tmp_path)
    app = create_dashboard_app(follow_run_dir=tmp_path)
    async with app.run_test(size=COMPACT) as pilot:
        await wait_for(pilot, run.training.ready.is_set)
        log = app.query_one(RunLog)
        await pilot.press("ctrl+c")
        assert not isinstance(app.screen, ConfirmStopScreen)
        await wait_for(pilot, lambda: app.return_code is not None)
    assert run.result == "interrupted"  # the run's own Ctrl-C ending: exit status 130, with a checkpoint
    assert app.state.end["reason"] == "interrupted"
    assert any("checkpoint (last)" in line for line in log.lines_text)


@run_async
async def test_keys_request_checkpoint_evaluation_and_pause(tmp_path):
    run = fake_run(tmp_path)
    app = create_dashboard_app(follow_run_dir=tmp_path)
    async with app.run_test(size=WIDE) as pilot:
        await wait_for(pilot, lambda: run.training.ready.is_set() and app.state.step == 100)
        app.refresh_now()
        evals_before = len(app.state.accuracy_curve)
        await pilot.press("s")
        await wait_for(
            pilot, lambda: any("checkpoint (manual)" in line for line in app.query_one(RunLog).lines_text)
        )
        await pilot.press("e")
        await wait_for(pilot, lambda: len(app.state.accuracy_curve) == evals_before + 1)
        assert app.state.best_eval["accuracy"] > 0.5  # a worse evaluation leaves the best alone
        await pilot.press("p")
        await wait_for(pilot, lambda: run.control.paused and app.state.paused)
        assert "paused" in screen_text(app)
        await pilot.press("p")
        await wait_for(pilot, lambda: not run.control.paused and not app.state.paused)
        assert not run.control.stop_requested
        run.control.request_stop("stopped")
        await wait_for(pilot, lambda: app.training_done)


@run_async
async def test_a_finished_run_stays_on_screen_until_q(tmp_path):
    run = fake_run(tmp_path, finish=True)
    app = create_dashboard_app(follow_run_dir=tmp_path)
    async with app.run_test(size=COMPACT) as pilot:
        await wait_for(pilot, lambda: app.training_done and app.state.ended)
        assert app.return_code is None and "completed" in screen_text(app)
        await pilot.press("s")  # nothing to ask of an ended run
        assert not (tmp_path / "control" / "checkpoint").exists()
        await pilot.press("q")  # no confirmation needed any more
        await wait_for(pilot, lambda: app.return_code is not None)
    assert run.result == "completed"


@run_async
async def test_exit_on_end_closes_by_itself(tmp_path):
    fake_run(tmp_path, finish=True)
    app = create_dashboard_app(follow_run_dir=tmp_path, exit_on_end=True)
    async with app.run_test(size=COMPACT) as pilot:
        await wait_for(pilot, lambda: app.return_code is not None)
    assert app.state.end["reason"] == "completed"


@run_async
async def test_a_crashing_process_shows_its_last_lines_and_died(tmp_path):
    """A training process that exits with an error and no end event: the end state says so, and
    the log pane shows the last lines of its train.log (the traceback)."""
    write_events(tmp_path / "metrics.jsonl", synthetic_run(steps=3, run_dir=str(tmp_path)))
    crash = "print('Traceback (most recent call last):'); print('RuntimeError: CUDA out of memory'); exit(1)"
    with open(tmp_path / "train.log", "wb") as log:
        popen = subprocess.Popen([sys.executable, "-c", crash], stdout=log, stderr=subprocess.STDOUT)
    app = create_dashboard_app(follow_run_dir=tmp_path, process=ChildProcess(popen, started_at=0.0))
    async with app.run_test(size=COMPACT) as pilot:
        await wait_for(pilot, lambda: app.training_done)
        await pilot.pause()
        lines = app.query_one(RunLog).lines_text
        assert app.state.end["reason"] == "died" and "exited with code 1" in app.state.end["message"]
        assert any("CUDA out of memory" in line for line in lines)
        assert app.return_code is None  # stays on screen: the user reads what happened


def sleeping_child(deaf_to_ctrl_c: bool = False) -> subprocess.Popen:
    """A stand-in training process that does nothing for a minute, in its own process group, once
    it has said it is ready: Ctrl-C ends it, unless ``deaf_to_ctrl_c`` (a training stuck where
    SIGINT is never acted on)."""
    handler = "signal.SIG_IGN" if deaf_to_ctrl_c else "signal.default_int_handler"
    code = f"import signal, time; signal.signal(signal.SIGINT, {handler}); print(flush=True); time.sleep(60)"
    child = subprocess.Popen([sys.executable, "-c", code], start_new_session=True, stdout=subprocess.PIPE)
    child.stdout.readline()
    return child


@run_async
async def test_the_start_up_phases_show_before_the_first_event(tmp_path):
    (tmp_path / "train.log").write_text(
        "femb phase: importing torch and femb\nfemb phase: building the model\n"
    )
    popen = sleeping_child()
    try:
        app = create_dashboard_app(follow_run_dir=tmp_path, process=ChildProcess(popen))
        async with app.run_test(size=WIDE) as pilot:
            await wait_for(pilot, lambda: "starting: building the model" in screen_text(app))
            lines = app.query_one(RunLog).lines_text
            assert lines == ["start-up: importing torch and femb", "start-up: building the model"]
            write_events(tmp_path / "metrics.jsonl", [{**start_event(), "time": time.time()}])
            await wait_for(pilot, lambda: "waiting for the first step" in screen_text(app))
            write_events(tmp_path / "metrics.jsonl", [step_event(1)], mode="a")
            await wait_for(pilot, lambda: app.state.step == 1 and "first step" not in screen_text(app))
            assert app.run_live
            app.exit()
    finally:
        popen.kill()
        popen.wait()


@run_async
async def test_a_second_ctrl_c_stops_the_process_at_once(tmp_path):
    write_events(tmp_path / "metrics.jsonl", synthetic_run(steps=3, run_dir=str(tmp_path)))
    popen = sleeping_child()
    try:
        app = create_dashboard_app(follow_run_dir=tmp_path, process=ChildProcess(popen, started_at=0.0))
        app.HARD_STOP_WINDOW_S = 60.0  # a loaded machine's pause between the presses is not a test
        async with app.run_test(size=COMPACT) as pilot:
            await pilot.press("ctrl+c")
            assert (tmp_path / "control" / "interrupt").exists() and popen.poll() is None  # asked, not forced
            await pilot.press("ctrl+c")
            await wait_for(pilot, lambda: app.return_code is not None)  # ended, and the dashboard closed
        assert popen.poll() is not None and app.state.end["reason"] == "died"
    finally:
        popen.kill()
        popen.wait()


@run_async
async def test_a_process_deaf_to_ctrl_c_is_killed_after_the_second(tmp_path):
    write_events(tmp_path / "metrics.jsonl", synthetic_run(steps=3, run_dir=str(tmp_path)))
    popen = sleeping_child(deaf_to_ctrl_c=True)
    try:
        app = create_dashboard_app(follow_run_dir=tmp_path, process=ChildProcess(popen, started_at=0.0))
        app.KILL_AFTER_S = 2.0
        async with app.run_test(size=COMPACT) as pilot:
            await pilot.press("ctrl+c")
            await pilot.press("ctrl+c")
            await pilot.pause(1.5)
            assert popen.poll() is None  # two SIGINTs ignored: not yet
            await wait_for(pilot, lambda: app.return_code is not None)
        assert popen.poll() == -signal.SIGKILL and app.state.end["reason"] == "died"
    finally:
        popen.kill()
        popen.wait()


def interrupted_end(step: int) -> Event:
    return {"event": "end", "time": time.time(), "step": step, "reason": "interrupted", "message": "stopped"}


@pytest.mark.parametrize("start_read", ["after the request", "before the request"])
@run_async
async def test_ctrl_c_before_the_start_event_is_read_still_ends_and_closes(tmp_path, start_read):
    """The child has started (its start event is on disk) but the dashboard has not read it yet
    when Ctrl-C comes: reading it must not cancel the interrupt, and the dashboard closes at the end."""
    popen = sleeping_child()
    try:
        app = create_dashboard_app(follow_run_dir=tmp_path, process=ChildProcess(popen, time.time() - 5))
        async with app.run_test(size=COMPACT) as pilot:
            started = {**start_event(), "time": time.time() - 1}
            if start_read == "before the request":
                write_events(tmp_path / "metrics.jsonl", [started])
                await wait_for(pilot, lambda: app.state.started)
            await pilot.press("ctrl+c")
            events = [started, step_event(1), interrupted_end(1)]
            write_events(tmp_path / "metrics.jsonl", events[start_read == "before the request" :], mode="a")
            await wait_for(pilot, lambda: app.return_code is not None)
        assert app.stop_requested and app.state.end["reason"] == "interrupted"
    finally:
        popen.kill()
        popen.wait()


@pytest.mark.parametrize("started_by", ["this command", "another process"])
@run_async
async def test_ctrl_c_during_the_start_up_is_asked_again_of_the_started_trainer(tmp_path, started_by):
    """A trainer discards request files older than itself: one made while it was still starting up
    is sent again when its start event arrives, so the first Ctrl-C is never lost."""
    popen = sleeping_child()
    try:
        process = ChildProcess(popen, time.time()) if started_by == "this command" else None
        app = create_dashboard_app(follow_run_dir=tmp_path, process=process)
        async with app.run_test(size=COMPACT) as pilot:
            await pilot.press("ctrl+c")
            request = tmp_path / "control" / "interrupt"
            assert request.exists()
            request.unlink()  # what the trainer does with a request older than itself
            await pilot.pause(0.05)
            write_events(tmp_path / "metrics.jsonl", [{**start_event(), "time": time.time()}])
            await wait_for(pilot, request.exists)
            assert app.run_live and app.stop_requested
            write_events(tmp_path / "metrics.jsonl", [interrupted_end(0)], mode="a")
            await wait_for(pilot, lambda: app.return_code is not None)
    finally:
        popen.kill()
        popen.wait()


@run_async
async def test_a_run_whose_process_died_shows_its_end_and_says_so(tmp_path):
    write_events(tmp_path / "metrics.jsonl", synthetic_run(steps=7, run_dir=str(tmp_path)))
    (tmp_path / "lock").write_text("999999\n")  # left by a training process killed with -9
    app = create_dashboard_app(follow_run_dir=tmp_path)
    async with app.run_test(size=COMPACT) as pilot:
        await wait_for(pilot, lambda: app.training_done)
        assert app.state.end["reason"] == "died" and "died" in screen_text(app)
        assert any("died at step 7" in line for line in app.query_one(RunLog).lines_text)
        assert not app.run_live  # nothing to steer: keys are refused, q closes at once


# ---------------------------------------------------------------------------------------- attached


@run_async
async def test_attached_follows_a_growing_metrics_file_and_sends_requests(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    write_events(metrics, synthetic_run(steps=60, run_dir=str(tmp_path)))
    app = create_dashboard_app(follow_run_dir=tmp_path)
    async with app.run_test(size=WIDE) as pilot:
        await pilot.pause()
        assert app.state.step == 60 and app.title == f"femb dashboard · {tmp_path.name}"
        write_events(metrics, [step_event(step) for step in range(61, 101)] + [eval_event(100)], mode="a")
        with open(metrics, "a", encoding="utf-8") as handle:
            handle.write('{"event": "step", "step": 101')  # the writer is mid-line: wait for the rest
        await wait_for(pilot, lambda: app.state.step == 100)  # the follow timer picks it up
        assert len(app.state.accuracy_curve) == 2
        with open(metrics, "a", encoding="utf-8") as handle:
            handle.write(', "loss": 1.0}\n')
        await wait_for(pilot, lambda: app.state.step == 101)
        assert any("checkpoints/best.pt" in line for line in app.query_one(RunLog).lines_text)

        for key, request in [("s", "checkpoint"), ("e", "evaluate"), ("p", "pause")]:
            await pilot.press(key)
            assert (tmp_path / "control" / request).exists()
        await pilot.press("p")
        assert (tmp_path / "control" / "resume").exists()

        await pilot.press("q")
        assert isinstance(app.screen, ConfirmStopScreen) and "detach" in screen_text(app)
        await pilot.press("y")
        assert (tmp_path / "control" / "stop").exists()
        assert app.return_code is None  # waits for the run's end event…
        write_events(
            metrics,
            [
                {
                    "event": "end",
                    "time": 0.0,
                    "step": 101,
                    "reason": "stopped",
                    "message": "stopped on request",
                    "resume_command": "femb train --resume x",
                }
            ],
            mode="a",
        )
        await wait_for(pilot, lambda: app.return_code is not None)  # …then closes
    assert app.state.end["reason"] == "stopped"


@run_async
async def test_attached_detach_leaves_the_run_alone(tmp_path):
    write_events(tmp_path / "metrics.jsonl", synthetic_run(steps=10, run_dir=str(tmp_path)))
    app = create_dashboard_app(follow_run_dir=tmp_path)
    async with app.run_test(size=COMPACT) as pilot:
        await pilot.pause()
        await pilot.press("q", "d")
        await wait_for(pilot, lambda: app.return_code is not None)
    assert not (tmp_path / "control" / "stop").exists()


@run_async
async def test_replay_of_a_finished_run_shows_the_final_state(tmp_path):
    write_events(tmp_path / "metrics.jsonl", synthetic_run(steps=400, end=True, run_dir=str(tmp_path)))
    app = create_dashboard_app(follow_run_dir=tmp_path, replay=True)
    async with app.run_test(size=WIDE) as pilot:
        await pilot.pause()
        assert app.state.ended and app.state.step == 400 and len(app.state.accuracy_curve) == 8
        assert "completed" in screen_text(app) and "100%" in screen_text(app)
        await pilot.press("p")
        assert not (tmp_path / "control").exists()
        await pilot.press("q")
        await wait_for(pilot, lambda: app.return_code is not None)


@run_async
async def test_run_panel_shows_processes_weights_partial_fc_and_global_speed(tmp_path):
    events = synthetic_run(steps=10, run_dir=str(tmp_path))
    config = {**CONFIG, "init_backbone": "backbone.pth", "sample_rate": 0.25}
    events[0] = {**events[0], "config": config, "world_size": 2}
    write_events(tmp_path / "metrics.jsonl", events)
    app = create_dashboard_app(follow_run_dir=tmp_path, replay=True)
    async with app.run_test(size=WIDE) as pilot:
        await wait_for(pilot, lambda: app.state.step == 10)
        app.refresh_now()
        await pilot.pause()
        panel = widget_text(app, ConfigPanel)
        assert "processes 2" in panel and "weights   backbone.pth" in panel
        assert "arcface s=64 m=0.5 easy_margin=false Partial FC r=0.25" in panel  # every head option
        assert "512.0 img/s 2 procs" in widget_text(app, MetricsPanel)


# ---------------------------------------------------------------------------------------- the command


def test_cli_dashboard_rejects_a_missing_or_foreign_folder(tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli_app, ["dashboard", str(tmp_path / "nope")])
    assert (
        result.exit_code == 2
        and result.stderr.startswith("error: ")
        and "no such run directory" in result.stderr
    )
    assert len(result.stderr.strip().splitlines()) == 1
    result = runner.invoke(cli_app, ["dashboard", str(tmp_path)])
    assert result.exit_code == 2 and "no metrics.jsonl" in result.stderr


def test_cli_dashboard_help_lists_replay():
    result = CliRunner().invoke(cli_app, ["dashboard", "--help"])
    assert result.exit_code == 0 and "--replay" in result.output


# ---------------------------------------------------------------------------------------- snapshots


def replayed_app(run_dir: Path) -> DashboardApp:
    # A fixed title and paths relative to the run folder keep the picture the same on every machine.
    write_events(run_dir / "metrics.jsonl", synthetic_run(steps=200, run_dir=str(run_dir)))
    return create_dashboard_app(follow_run_dir=run_dir, replay=True, title="femb dashboard · demo")


async def _settle(pilot) -> None:
    await pilot.pause()
    pilot.app.refresh_now()
    await pilot.pause()


@pytest.mark.parametrize("size", [COMPACT, WIDE], ids=["80x24", "120x40"])
def test_snapshot_replayed_run(snap_compare, tmp_path, size):
    assert snap_compare(replayed_app(tmp_path), terminal_size=size, run_before=_settle)


@run_async
async def test_a_malformed_event_is_logged_and_skipped(tmp_path):
    events = synthetic_run(steps=5, run_dir=str(tmp_path))
    events.insert(3, {"event": "step", "step": "three", "loss": 1.0})
    write_events(tmp_path / "metrics.jsonl", events)
    app = create_dashboard_app(follow_run_dir=tmp_path, replay=True)
    async with app.run_test(size=COMPACT) as pilot:
        await pilot.pause()
        assert app.state.step == 5
        assert any("malformed 'step' event" in line for line in app.query_one(RunLog).lines_text)
