"""The real `femb train` in a real terminal (tmux): the dashboard draws, `q` → `y` stops with a checkpoint."""

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from femb.training.events import read_events

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=False).stdout


def wait_for(predicate, timeout: float = 90.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.25)
    return False


def test_dashboard_in_tmux_stops_on_q_with_a_checkpoint(tmp_path, tiny_train_command):
    session = f"femb-smoke-{tmp_path.name}"[:50]
    run_dir = tmp_path / "run"
    exit_file = tmp_path / "exit"
    command = " ".join(
        [
            *tiny_train_command,
            "--steps",
            "2000",
            "--eval-every",
            "5",
            "--run-dir",
            str(run_dir),
            "--dashboard",
        ]
    )
    tmux(
        "new-session",
        "-d",
        "-x",
        "100",
        "-y",
        "30",
        "-s",
        session,
        f"{command}; echo $? > {exit_file}; sleep 60",
    )
    try:
        screen = lambda: tmux("capture-pane", "-p", "-t", session)  # noqa: E731
        assert wait_for(lambda: "verification accuracy" in screen() and "step" in screen()), screen()
        assert wait_for(lambda: any(e["event"] == "eval" for e in read_events(run_dir / "metrics.jsonl"))), (
            screen()
        )
        tmux("send-keys", "-t", session, "q")
        assert wait_for(lambda: "y" in screen() and "top" in screen(), timeout=15), screen()
        tmux("send-keys", "-t", session, "y")
        assert wait_for(exit_file.exists), screen()
        assert exit_file.read_text().strip() == "0"
        final = screen()
        assert f"femb train --resume {run_dir}" in final.replace("\n", "")
        end = read_events(run_dir / "metrics.jsonl")[-1]
        assert end["event"] == "end" and end["reason"] == "stopped"
        assert Path(run_dir / "checkpoints" / "last.pt").is_file()
    finally:
        tmux("kill-session", "-t", session)
