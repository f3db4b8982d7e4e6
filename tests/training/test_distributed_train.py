"""femb train on two processes (gloo, CPU): runs, resumes across world sizes, fails cleanly (issue 7).

Each launch costs a few seconds; every subprocess is bounded by a timeout so a hang fails.
"""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from ranks import leave_after_the_last_barrier, run_ranks

from femb.checkpoint import load_checkpoint
from femb.training.events import read_events
from femb.training.run_dir import read_toml

# On top of the shared tiny command: a head with a regulariser that must be added once, not per rank.
EXTRA = ["--no-dashboard", "--warmup-steps", "2", "--head", "magface"]
# PYTHONFAULTHANDLER: a process that hangs past its timeout is sent SIGABRT and prints where.
ENV = {**os.environ, "FEMB_COLLECTIVE_TIMEOUT_S": "30", "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}


def run_bounded(command: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Run ``command``; past ``timeout`` fail with the Python stack of every process of its tree."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for pid in [*_descendants(process.pid), process.pid]:
            try:
                os.kill(pid, signal.SIGABRT)
            except ProcessLookupError:
                pass
        time.sleep(2)
        process.kill()
        stdout, stderr = process.communicate()
        pytest.fail(f"hung past {timeout} s: {' '.join(command)}\n{stdout[-3000:]}\n{stderr[-12000:]}")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@pytest.fixture
def femb(tiny_train_command):
    def run(*args, timeout=180):
        return run_bounded([*tiny_train_command, *EXTRA, *map(str, args)], timeout)

    return run


def extend(run: Path, steps: int) -> None:
    """Give a finished run more steps, so that a resume has something to do."""
    config = (run / "config.toml").read_text()
    (run / "config.toml").write_text(
        config.replace(f"steps = {read_toml(run / 'config.toml')['steps']}", f"steps = {steps}")
    )


def test_two_processes_train_and_one_process_resumes(tmp_path, femb):
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


def test_one_process_run_resumes_on_two(tmp_path, femb):
    run = tmp_path / "run"
    assert femb("--steps", 2, "--eval-every", 0, "--run-dir", run).returncode == 0
    extend(run, 4)
    resumed = femb("--resume", run, "--nproc-per-node", 2)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    checkpoint = load_checkpoint(run, prefer="last")
    assert checkpoint["training"]["step"] == 4
    assert checkpoint["header"]["state_dict"]["weight"].shape == (6, 16)
    assert torch.isfinite(checkpoint["header"]["state_dict"]["weight"]).all()


def _parent_of(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return next((int(line.split()[1]) for line in status.splitlines() if line.startswith("PPid:")), None)


def _descendants(root: int) -> list[int]:
    """Every process below ``root``, deepest first (empty where there is no /proc)."""
    if not Path("/proc").is_dir():
        return []
    parents = {int(e.name): _parent_of(int(e.name)) for e in Path("/proc").iterdir() if e.name.isdigit()}
    found, frontier = [], [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        found = children + found
        frontier = children
    return found


def _children_with_rank(parent: int, rank: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or _parent_of(int(entry.name)) != parent:
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ:
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the worker through /proc")
def test_a_dead_rank_ends_the_run_with_one_line_naming_it(tmp_path, tiny_train_command):
    run = tmp_path / "run"
    process = subprocess.Popen(
        [
            *tiny_train_command,
            *EXTRA,
            "--steps",
            "500",
            "--eval-every",
            "0",
            "--run-dir",
            str(run),
            "--nproc-per-node",
            "2",
        ],
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


def _rank_worker(rank: int, store: str, scenario: str, results: str) -> None:
    import datetime
    import json

    import torch.distributed as dist
    from torch.utils.data import TensorDataset

    from femb import FaceEmbeddingModel
    from femb.backbones import build_backbone
    from femb.headers import CosFaceHeader

    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank))
    dist.init_process_group(
        "gloo", init_method=f"file://{store}", rank=rank, world_size=2, timeout=datetime.timedelta(seconds=30)
    )
    torch.manual_seed(0)
    model = FaceEmbeddingModel(
        build_backbone("iresnet_tiny", embed_dim=8), CosFaceHeader(8, 4, s=16.0, m=0.2)
    )
    images = torch.randn(16, 3, 112, 112)
    if scenario == "nan" and rank == 1:
        images[:] = float("nan")  # only this rank's data is spoilt
    seed = rank if scenario == "seed" else 0
    outcome: dict = {}
    try:
        result = model.fit(
            TensorDataset(images, torch.arange(16) % 4),
            batch_size=4,
            device="cpu",
            max_training_steps=3,
            seed=seed,
        )
        outcome = {"reason": result.reason, "step": result.step}
    except ValueError as error:
        outcome = {"error": str(error)}
    Path(results, f"{rank}.json").write_text(json.dumps(outcome))
    leave_after_the_last_barrier()


@pytest.mark.parametrize("scenario", ["seed", "nan"])
def test_ranks_agree_on_refusals_and_on_a_nonfinite_loss(tmp_path, scenario):
    import json

    run_ranks(_rank_worker, (str(tmp_path / "store"), scenario, str(tmp_path)))
    outcomes = [json.loads((tmp_path / f"{rank}.json").read_text()) for rank in (0, 1)]
    if scenario == "seed":
        assert all("rank 1 was started with another configuration" in o.get("error", "") for o in outcomes)
        assert all("seed: 0 vs 1" in o["error"] for o in outcomes)
    else:
        assert [o.get("reason") for o in outcomes] == ["nonfinite", "nonfinite"]
        assert outcomes[0]["step"] == outcomes[1]["step"]
