"""femb train on two processes (gloo, CPU): runs, resumes across world sizes, fails cleanly (issue 7).

Each launch costs a few seconds; every subprocess is bounded by a timeout so a hang fails.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from femb.checkpoint import load_checkpoint
from femb.training.events import read_events
from femb.training.run_dir import read_toml

TINY = [
    sys.executable,
    "-m",
    "femb_cli.main",
    "train",
    "--backbone",
    "iresnet_tiny",
    "--embed-dim",
    "16",
    "--data",
    "synthetic:6",
    "--val",
    "synthetic:4",
    "--batch-size",
    "16",
    "--no-dashboard",
    "--warmup-steps",
    "2",
    "--head",
    "magface",  # a regulariser that must be added once, not once per rank
]
ENV = {**os.environ, "FEMB_COLLECTIVE_TIMEOUT_S": "30", "OMP_NUM_THREADS": "1"}


def femb(*args, timeout=180):
    return subprocess.run([*TINY, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=ENV)


def extend(run: Path, steps: int) -> None:
    """Give a finished run more steps, so that a resume has something to do."""
    config = (run / "config.toml").read_text()
    (run / "config.toml").write_text(
        config.replace(f"steps = {read_toml(run / 'config.toml')['steps']}", f"steps = {steps}")
    )


def test_two_processes_train_and_one_process_resumes(tmp_path):
    run = tmp_path / "run"
    done = femb(
        "--steps", 4, "--eval-every", 2, "--checkpoint-every", 2, "--run-dir", run, "--nproc-per-node", 2
    )
    assert done.returncode == 0, done.stderr[-2000:]
    events = read_events(run / "metrics.jsonl")
    starts = [e for e in events if e["event"] == "start"]
    assert len(starts) == 1 and starts[0]["world_size"] == 2  # only rank 0 writes the run
    steps = [e for e in events if e["event"] == "step"]
    assert [e["step"] for e in steps] == [1, 2, 3, 4]
    # Global throughput: both ranks' images, 16 each (synthetic:6 × 24 images, 72 per rank).
    assert all(e["images_per_s"] > 0 for e in steps)
    checkpoint = load_checkpoint(run, prefer="last")
    assert checkpoint["header"]["state_dict"]["weight"].shape == (6, 16)  # the full head
    assert checkpoint["training"]["step"] == 4

    extend(run, 6)
    resumed = femb("--resume", run)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert load_checkpoint(run, prefer="last")["training"]["step"] == 6


def test_one_process_run_resumes_on_two(tmp_path):
    run = tmp_path / "run"
    assert femb("--steps", 2, "--eval-every", 0, "--run-dir", run).returncode == 0
    extend(run, 4)
    resumed = femb("--resume", run, "--nproc-per-node", 2)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    checkpoint = load_checkpoint(run, prefer="last")
    assert checkpoint["training"]["step"] == 4
    assert checkpoint["header"]["state_dict"]["weight"].shape == (6, 16)
    assert torch.isfinite(checkpoint["header"]["state_dict"]["weight"]).all()


def _children_with_rank(parent: int, rank: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            status = (entry / "status").read_text()
        except OSError:
            continue
        ppid = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("PPid:")), None)
        if ppid == parent and f"RANK={rank}".encode() in environ:
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the worker through /proc")
def test_a_dead_rank_ends_the_run_with_one_line_naming_it(tmp_path):
    run = tmp_path / "run"
    process = subprocess.Popen(
        [*TINY, "--steps", "500", "--eval-every", "0", "--run-dir", str(run), "--nproc-per-node", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            steps = (
                [e for e in read_events(run / "metrics.jsonl") if e["event"] == "step"]
                if run.exists()
                else []
            )
            if steps:
                break
            time.sleep(0.2)
        assert steps, "the run never started"
        victims = _children_with_rank(process.pid, 1)
        assert len(victims) == 1
        killed_at = time.monotonic()
        os.kill(victims[0], signal.SIGKILL)
        _, stderr = process.communicate(timeout=90)
        assert time.monotonic() - killed_at < 60
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode != 0
    errors = [line for line in stderr.splitlines() if line.startswith("error: rank")]
    assert errors and f"pid {victims[0]}" in errors[-1] and "SIGKILL" in errors[-1], stderr[-2000:]
