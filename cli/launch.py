"""Starting training processes: the child `femb train` attaches its dashboard to (or detaches), and
the N workers of `femb train --nproc-per-node N` through torch.distributed.

The launcher is PyTorch's own elastic agent (what ``torchrun --standalone`` runs), called in
process so that a failed worker becomes one line naming its rank instead of the agent's report.
When a worker dies, the agent stops the others; a worker that hangs in a collective is bounded
by ``FEMB_COLLECTIVE_TIMEOUT_S``.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time

from femb_cli.errors import PEER_LOST_EXIT, fail

MAX_LOCAL_PROCESSES = 64


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def worker_args(config, folder, resume: bool, overwrite: bool = False) -> list[str]:
    """``femb`` arguments that train ``folder`` with ``config`` in another process: a resume
    continues the recorded run; a new run reads the resolved options from ``RUN_DIR/launch.toml``."""
    from femb.training.run_dir import write_toml

    if resume:
        args = ["train", "--resume", str(folder.path), "--device", config.device]
        return args + ["--workers", str(config.workers)]
    config.run_dir = str(folder.path)
    launch_file = folder.path / "launch.toml"  # not a run yet: the process started with it makes it one
    write_toml(launch_file, config.to_dict())
    args = ["train", "--config", str(launch_file), "--run-dir", str(folder.path)]
    return args + (["--overwrite"] if overwrite else [])


def start_training_process(
    config, folder, *, resume: bool, nproc: int = 1, overwrite: bool = False
) -> tuple[subprocess.Popen, float]:
    """Start ``python -m femb_cli.run_training train --no-dashboard …`` for ``folder``: its own
    session (a closed terminal's SIGHUP never reaches it), output to ``RUN_DIR/train.log``, and
    the run's lock handed over so that no other ``femb train`` can take the folder in between.
    ``overwrite`` clears the earlier run first. Returns the process and when it started (Unix seconds).
    """
    from femb.training.run_dir import LOCK_FD_ENV, RunLock
    from femb_cli.run_training import CHILD_ENV

    args = [*worker_args(config, folder, resume), "--no-dashboard"]
    args += ["--nproc-per-node", str(nproc)] if nproc > 1 else []
    with RunLock(folder) as lock:  # refused, naming the owner's PID, when another process has it
        if overwrite and not resume:
            folder.clear_run()  # before a dashboard reads it: never the old run's curves
        descriptor = lock.hand_over()
        environment = {**os.environ, LOCK_FD_ENV: str(descriptor), CHILD_ENV: "1", "PYTHONUNBUFFERED": "1"}
        started_at = time.time()
        with open(folder.path / "train.log", "ab" if resume else "wb") as log:
            popen = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-m", "femb_cli.run_training", *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=(descriptor,),
                env=environment,
            )
        folder.lock_file.write_text(f"{popen.pid}\n")  # the owner from now on: the child
    return popen, started_at


def launch_workers(nproc: int, worker_args: list[str]) -> int:
    """Run ``femb <worker_args>`` in ``nproc`` processes on this machine; their exit code."""
    if not 1 <= nproc <= MAX_LOCAL_PROCESSES:
        raise fail(f"--nproc-per-node {nproc}: expected 1 to {MAX_LOCAL_PROCESSES}")
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    # The agent's own log lines repeat what the workers and the one line below already say.
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id="femb",
        rdzv_backend="c10d",
        rdzv_endpoint=f"127.0.0.1:{free_port()}",
        max_restarts=0,
        monitor_interval=0.2,
        start_method="spawn",
    )
    try:
        elastic_launch(config, entrypoint=sys.executable)("-m", "femb_cli.main", *worker_args)
    except ChildFailedError as error:
        raise fail(describe_failure(error), code=1) from None
    except SignalException as error:
        # Ctrl-C / SIGTERM reached every worker too: each stopped at the same step and rank 0
        # saved the checkpoint (its own lines said where); the exit code says which signal.
        return 128 + int(error.sigval)
    return 0


def describe_failure(error) -> str:
    """One line: which rank failed first and how; the others were stopped by the launcher.

    A rank that exited because it lost its peers is a casualty, not the cause: it is named only
    when no other rank failed. (Its exit can even be seen first: it leaves at once, while the
    launcher notices a killed rank on its next poll.)
    """
    causes = {rank: f for rank, f in error.failures.items() if f.exitcode != PEER_LOST_EXIT}
    rank, failure = min((causes or error.failures).items(), key=lambda item: item[1].timestamp)
    how = f"exit code {failure.exitcode}"
    if failure.exitcode < 0:
        try:
            how = f"signal {signal.Signals(-failure.exitcode).name}"
        except ValueError:
            how = f"signal {-failure.exitcode}"
    others = len(error.failures) - 1
    tail = f"; {others} other rank(s) failed or were stopped" if others else "; the other ranks were stopped"
    return f"rank {rank} (pid {failure.pid}) ended with {how}{tail}"
