"""`femb train --nproc-per-node N`: start N workers of the same command through torch.distributed.

The launcher is PyTorch's own elastic agent (what ``torchrun --standalone`` runs), called in
process so that a failed worker becomes one line naming its rank instead of the agent's report.
When a worker dies, the agent stops the others; a worker that hangs in a collective is bounded
by ``FEMB_COLLECTIVE_TIMEOUT_S``.
"""

from __future__ import annotations

import logging
import signal
import socket
import sys

from femb_cli.errors import PEER_LOST_EXIT, fail

MAX_LOCAL_PROCESSES = 64


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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
