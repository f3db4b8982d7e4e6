"""`femb train` draws its dashboard before it reads its options (issue 20: the dashboard at once,
before torch is imported): the modules the first frame needs import no torch, a refused option
closes the dashboard with its error line, and q during start-up starts no training."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from cli_helpers import Terminal, wait_until

from femb_cli.dashboard.starting import dashboard_first, shows_dashboard
from femb_cli.run_training import CHILD_ENV

needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


def test_the_first_frame_needs_no_torch():
    """What runs before the first frame (the entry point, the dashboard) imports no torch."""
    code = (
        "import sys; import femb_cli.main, femb_cli.dashboard.starting, femb_cli.dashboard.app; "
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "args, drawn_first",
    [
        (["train", "--dashboard", "--steps", "3"], True),
        (["train", "--steps", "3", "--detach"], False),
        (["train", "--no-dashboard"], False),
        (["train", "--dashboard", "--help"], False),
        (["dashboard", "runs/x"], False),
        (["train", "--dashboard", "--", "--detach"], True),  # after --: not an option of femb's
    ],
)
def test_only_a_train_that_shows_the_dashboard_draws_it_first(args, drawn_first, monkeypatch):
    monkeypatch.delenv(CHILD_ENV, raising=False)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    assert dashboard_first(args) is drawn_first


def test_a_training_child_or_worker_never_draws(monkeypatch):
    """Neither drawn first nor by `femb train` itself (one decision, :func:`shows_dashboard`): a
    torchrun worker of one process asked for the dashboard trains; it never starts a child."""
    monkeypatch.setenv(CHILD_ENV, "1")
    assert not dashboard_first(["train", "--dashboard"]) and not shows_dashboard(True)
    monkeypatch.delenv(CHILD_ENV)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "abc")
    assert not dashboard_first(["train", "--dashboard"]) and not shows_dashboard(True)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID")
    assert shows_dashboard(True) and not shows_dashboard(False)
    assert shows_dashboard(None) is sys.stdout.isatty()  # by default: a terminal


@needs_tmux
def test_a_refused_option_closes_the_dashboard_with_its_error_line(tmp_path, tiny_train_command):
    run_dir = tmp_path / "run"
    bad = [*tiny_train_command, "--steps", "3", "--head-opt", "m=9", "--run-dir", str(run_dir)]
    terminal = Terminal(tmp_path, "refused", bad)
    try:
        assert terminal.exit_code() == 2
        screen = terminal.screen()
        assert "error: --head-opt: head 'arcface': option m=9.0: expected a float in [0, 1.5708]" in screen
        assert "Traceback" not in screen and not run_dir.exists()
    finally:
        terminal.close()


@needs_tmux
def test_q_before_the_training_has_started_starts_none(tmp_path, tiny_train_command):
    """The command reads its options beside the drawn dashboard (importing torch alone takes over a
    second here): q pressed as soon as the dashboard shows cancels it before it starts a child."""
    run_dir = tmp_path / "run"
    terminal = Terminal(
        tmp_path, "cancel", [*tiny_train_command, "--steps", "500", "--run-dir", str(run_dir)]
    )
    try:
        # Drawn while no training process exists yet (it would write train.log from its start).
        assert wait_until(
            lambda: "Stop / quit" in terminal.screen() and not (run_dir / "train.log").exists(), interval=0.02
        ), terminal.screen()
        terminal.keys("q")
        assert terminal.exit_code() == 130
        assert "cancelled before the training started" in terminal.screen()
        assert not run_dir.exists()  # the folder it had made is gone, and nothing trained in it
        pattern = f"femb_cli.run_training .*{run_dir}"
        assert subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout == ""
    finally:
        terminal.close()


def _drawn_then_closed(monkeypatch, tmp_path, *, cancelled: bool, failed: bool):
    """A dashboard drawn first that closed in the instant before the command attached it, and a
    training child (a sleeping interpreter in its own session) started for the run."""
    import femb_cli.dashboard.starting as starting
    import femb_cli.launch as launch
    from femb.training.run_dir import RunDir

    drawn = starting.DashboardFirst(["train"])
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)

    def start_training_process(*args, **kwargs):  # the dashboard closes while the child starts
        drawn.app.cancelled = cancelled
        if failed:
            drawn.app._return_code = 1  # Textual's own field: set when the app ends with an error
        drawn.closed.set()
        return child, 0.0

    monkeypatch.setattr(starting, "current", lambda: drawn)
    monkeypatch.setattr(launch, "start_training_process", start_training_process)
    run_dir = RunDir(tmp_path / "run")
    run_dir.path.mkdir()
    return child, run_dir


def test_a_dashboard_that_fails_before_it_attaches_leaves_the_training_running(monkeypatch, tmp_path, capsys):
    from femb_cli.run_training import run_in_child

    child, run_dir = _drawn_then_closed(monkeypatch, tmp_path, cancelled=False, failed=True)
    try:
        assert run_in_child(object(), run_dir) == 1  # the dashboard's failure, said
        assert child.poll() is None  # …while the training goes on
        err = capsys.readouterr()
        assert "the dashboard failed; the training goes on" in err.err
        assert f"femb dashboard {run_dir.path}" in err.out
    finally:
        child.kill()
        child.wait()


def test_q_in_the_instant_before_it_attaches_stops_the_training_it_had_begun(monkeypatch, tmp_path):
    from femb_cli.run_training import run_in_child

    child, run_dir = _drawn_then_closed(monkeypatch, tmp_path, cancelled=True, failed=False)
    try:
        assert run_in_child(object(), run_dir) == 130
        assert child.poll() is not None
    finally:
        child.kill()
        child.wait()
