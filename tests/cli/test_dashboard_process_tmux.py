"""The real `femb train` with its dashboard in a real terminal (tmux), as a person drives it: the
terminal closed mid-run, the run re-attached, the dashboard killed, Ctrl-C, a crash, the end."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from cli_helpers import Terminal, steps_done, tmux, wait_until

from femb.training.control import send_request
from femb.training.events import read_events
from femb.training.run_summary import is_running
from femb_cli.dashboard.process import lock_owner

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
TIMEOUT_S = 120


def last_event(run_dir: Path, kind: str) -> dict:
    return next((e for e in reversed(read_events(run_dir / "metrics.jsonl")) if e["event"] == kind), {})


def test_closed_terminal_and_killed_dashboard_leave_the_run_training(tmp_path, tiny_train_command):
    run_dir = tmp_path / "run"
    long_run = ["--steps", "5000", "--eval-every", "3", "--run-dir", str(run_dir)]
    train = Terminal(tmp_path, "train", [*tiny_train_command, *long_run])
    watch = None
    try:
        assert wait_until(lambda: "starting:" in train.screen() or "step" in train.screen()), train.screen()
        assert wait_until(lambda: any(e["event"] == "eval" for e in read_events(run_dir / "metrics.jsonl")))
        pid = lock_owner(run_dir)
        train.close()
        time.sleep(2)
        before = steps_done(run_dir)
        assert is_running(run_dir) and wait_until(lambda: steps_done(run_dir) > before), (
            "it died with its terminal"
        )
        assert lock_owner(run_dir) == pid

        # Paused, the run writes nothing after the dashboard attaches: every figure it shows is history.
        send_request(run_dir, "pause")
        assert wait_until(lambda: last_event(run_dir, "pause").get("paused") is True)
        evals = [e for e in read_events(run_dir / "metrics.jsonl") if e["event"] == "eval"]
        last, best = evals[-1], [e for e in evals if e.get("is_best")][-1]
        watch = Terminal(
            tmp_path, "watch", [sys.executable, "-m", "femb_cli.main", "dashboard", str(run_dir)]
        )
        assert wait_until(lambda: "paused" in watch.screen()), watch.screen()
        screen = watch.screen()
        assert f"{last['accuracy']:.4f}" in screen and f"@{last['step']}" in screen, screen
        assert f"best     {best['accuracy']:.4f} @{best['step']}" in screen, screen
        send_request(run_dir, "resume")
        shell = tmux("display-message", "-p", "-t", watch.session, "#{pane_pid}").strip()
        dashboard = subprocess.run(["pgrep", "-P", shell], capture_output=True, text=True).stdout.split()
        os.kill(int(dashboard[0]), signal.SIGKILL)
        assert watch.exit_code() == 137
        before = steps_done(run_dir)
        assert is_running(run_dir) and wait_until(lambda: steps_done(run_dir) > before)

        stop = subprocess.run(
            [sys.executable, "-m", "femb_cli.main", "stop", str(run_dir), "--wait"],
            capture_output=True,
            timeout=TIMEOUT_S,
        )
        assert stop.returncode == 0
    finally:
        for terminal in (train, watch):
            if terminal is not None:
                terminal.close()
        if is_running(run_dir):
            os.killpg(lock_owner(run_dir), signal.SIGKILL)
    assert read_events(run_dir / "metrics.jsonl")[-1]["reason"] == "stopped"
    checkpoint = torch.load(run_dir / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    assert checkpoint  # intact: it loads


def test_ctrl_c_interrupts_with_a_checkpoint_and_exits_130(tmp_path, tiny_train_command):
    run_dir = tmp_path / "run"
    train = Terminal(tmp_path, "train", [*tiny_train_command, "--steps", "5000", "--run-dir", str(run_dir)])
    try:
        assert wait_until(lambda: steps_done(run_dir) >= 1), train.screen()
        train.keys("C-c")
        assert train.exit_code() == 130
        screen = train.screen().replace("\n", "")
        assert "interrupted at step" in screen and f"femb train --resume {run_dir}" in screen
    finally:
        train.close()
    assert read_events(run_dir / "metrics.jsonl")[-1]["reason"] == "interrupted"
    assert (run_dir / "checkpoints" / "last.pt").is_file()


def test_a_finished_run_exits_0_and_a_failed_one_shows_its_last_lines(tmp_path, tiny_train_command):
    (tmp_path / "garbage.pth").write_bytes(os.urandom(3000))
    done = Terminal(tmp_path, "done", [*tiny_train_command, "--steps", "3", "--run-dir", "done"])
    failed = Terminal(
        tmp_path,
        "failed",
        [*tiny_train_command, "--steps", "3", "--run-dir", "failed", "--init-backbone", "garbage.pth"],
    )
    try:
        assert wait_until(lambda: "completed" in done.screen() and "press q" in done.screen()), done.screen()
        done.keys("q")
        assert done.exit_code() == 0
        assert "completed at step 3" in done.screen()

        # The dashboard stays on the end: the status says died, the log pane shows train.log's last lines.
        assert wait_until(lambda: "died · press q" in failed.screen()), failed.screen()
        assert "error: garbage.pth" in failed.screen()
        failed.keys("q")
        assert failed.exit_code() == 2
        after = failed.screen().replace("\n", "")
        assert "error: training failed (exit code 2)" in after and "garbage.pth" in after
    finally:
        done.close()
        failed.close()
