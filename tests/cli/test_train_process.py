"""The training in its own process (issue 20): --detach, femb stop, femb runs, the lock's PID, and
`femb dashboard` off a terminal. Real `femb` processes on a tiny net, each bounded by a timeout."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from cli_helpers import assert_one_line_error, steps_done, wait_until
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from femb.training.events import LineFollower, read_events
from femb.training.run_summary import is_running
from femb_cli.dashboard.process import lock_owner
from femb_cli.main import app

TIMEOUT_S = 120
runner = CliRunner()


def femb(*args: str, timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "femb_cli.main", *args], capture_output=True, text=True, timeout=timeout
    )


def detach(tiny_train_command, run_dir: Path, *extra: str) -> tuple[subprocess.CompletedProcess, int]:
    """`femb train --detach` of a long tiny run; (its result, the PID it printed)."""
    args = [
        *tiny_train_command,
        "--steps",
        "5000",
        "--eval-every",
        "0",
        "--run-dir",
        str(run_dir),
        "--detach",
    ]
    result = subprocess.run([*args, *extra], capture_output=True, text=True, timeout=TIMEOUT_S)
    assert result.returncode == 0, result.stderr
    return result, int(re.search(r"pid (\d+)", result.stdout).group(1))


def test_detach_returns_stop_ends_it_and_runs_agree(tiny_train_command, tmp_path):
    run_dir = tmp_path / "runs" / "detached"
    result, pid = detach(tiny_train_command, run_dir)
    assert f"femb dashboard {run_dir}" in result.stdout and f"femb stop {run_dir}" in result.stdout
    try:
        assert is_running(run_dir) and lock_owner(run_dir) == pid  # the child holds the lock from birth
        assert wait_until(lambda: steps_done(run_dir) >= 2)
        phases = (run_dir / "train.log").read_text()
        assert phases.index("femb phase: importing torch") < phases.index("femb phase: building the model")

        runs = json.loads(femb("runs", str(run_dir.parent), "--json").stdout)
        assert [(r["status"], r["pid"]) for r in runs] == [("running", pid)]
        assert f"running {pid}" in femb("runs", str(run_dir.parent)).stdout

        stopped = femb("stop", str(run_dir), "--wait")
        assert stopped.returncode == 0 and f"pid {pid}" in stopped.stdout and "stopped" in stopped.stdout
    finally:
        if is_running(run_dir):
            os.killpg(pid, signal.SIGKILL)
    end = read_events(run_dir / "metrics.jsonl")[-1]
    assert end["event"] == "end" and end["reason"] == "stopped"
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    runs = json.loads(femb("runs", str(run_dir.parent), "--json").stdout)
    assert [(r["status"], r["pid"]) for r in runs] == [("stopped", None)]
    refused = femb("stop", str(run_dir))
    assert refused.returncode == 1 and "no process is training this run" in refused.stderr


def test_a_second_train_into_the_run_is_refused_with_the_childs_pid(tiny_train_command, tmp_path):
    run_dir = tmp_path / "run"
    _, pid = detach(tiny_train_command, run_dir)
    try:
        second = subprocess.run(
            [*tiny_train_command, "--run-dir", str(run_dir), "--overwrite", "--detach"],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
        assert second.returncode == 2 and f"in use by process {pid}" in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
        assert is_running(run_dir) and wait_until(lambda: steps_done(run_dir) >= 1)
        assert femb("dashboard", str(run_dir), "--stop").returncode == 0
        assert wait_until(lambda: not is_running(run_dir))
    finally:
        if is_running(run_dir):
            os.killpg(pid, signal.SIGKILL)
    assert read_events(run_dir / "metrics.jsonl")[-1]["reason"] == "stopped"


# ---------------------------------------------------------------------------------- off a terminal


def write_lines(path: Path, lines: list) -> None:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))


START = {"event": "start", "time": 0.0, "run_name": "r", "config": {"backbone": "b", "head": "arcface"}}
STEP = {"event": "step", "time": 0.0, "step": 3, "loss": 2.5, "lr": 0.1, "images_per_s": 10.0}
END = {"event": "end", "time": 0.0, "step": 3, "reason": "stopped", "message": "asked", "resume_command": "x"}


def test_dashboard_off_a_terminal_prints_a_summary_and_exits(tmp_path):
    write_lines(tmp_path / "metrics.jsonl", [START, STEP, "not json", END])
    result = runner.invoke(app, ["dashboard", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "status: stopped · step 3" in result.stdout and "loss 2.5000" in result.stdout
    assert "end: stopped at step 3: asked" in result.stdout and "skipped 1 unreadable line" in result.stdout
    assert "\x1b[" not in result.stdout  # no escape codes in a pipe


def test_dashboard_off_a_terminal_calls_a_dead_run_dead(tmp_path):
    write_lines(tmp_path / "metrics.jsonl", [START, STEP])
    (tmp_path / "lock").write_text("999999\n")  # the lock file of a process that is no more
    result = runner.invoke(app, ["dashboard", str(tmp_path)])
    assert result.exit_code == 0 and "status: died" in result.stdout


def test_dashboard_of_a_garbage_metrics_file_says_so(tmp_path):
    (tmp_path / "metrics.jsonl").write_bytes(b'\x00\xff garbage\n[1, 2]\n{"no": "event"}\n')
    result = runner.invoke(app, ["dashboard", str(tmp_path)])
    line = assert_one_line_error(result)
    assert "metrics.jsonl: not one femb event in it" in line


def test_dashboard_and_stop_on_a_folder_that_is_no_run(tmp_path):
    for command in (["dashboard"], ["stop"], ["dashboard", "--stop"]):
        line = assert_one_line_error(runner.invoke(app, [*command, str(tmp_path)]))
        assert "not a femb run directory" in line


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=40))
def test_lock_owner_reads_a_pid_or_nothing(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("lock")
    (folder / "lock").write_bytes(data)
    owner = lock_owner(folder)
    assert owner is None or (isinstance(owner, int) and str(owner) == data.decode().strip())


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=30), max_size=8), st.integers(min_value=0, max_value=7))
def test_line_follower_gives_every_complete_line_once(tmp_path_factory, chunks, shrink_at):
    """Any bytes, appended in any chunks: the lines read are the file's complete lines, in order;
    a file replaced by a shorter one is read again from its start."""
    path = tmp_path_factory.mktemp("follow") / "train.log"
    follower, seen = LineFollower(path), []
    for index, chunk in enumerate(chunks):
        if index == shrink_at and path.exists():
            path.write_bytes(b"")
            follower.lines()
            seen = []
        with open(path, "ab") as handle:
            handle.write(chunk)
        seen += follower.lines()
    text = path.read_bytes() if path.exists() else b""
    assert seen == text.split(b"\n")[:-1]
