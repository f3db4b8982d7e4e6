"""Two gloo ranks in a test: launched with a deadline, and leaving without gloo's teardown.

gloo's teardown (``destroy_process_group`` or the interpreter's exit) can abort a process
("terminate called without an active exception", exit code -6) when its peer has already gone,
a race that shows on a loaded machine. The product's workers pass a last barrier and skip that
teardown (``femb_cli.main._leave``); a test rank does the same, so a finished, correct run is
never reported as a crash. A hang fails the test instead of stalling the suite.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp


def run_ranks(target: Callable, args: tuple, *, world: int = 2, timeout_s: float = 120.0) -> None:
    """Run ``target(rank, *args)`` in ``world`` spawned processes; fail on a hang or a bad exit."""
    context = mp.spawn(target, args=args, nprocs=world, join=False)
    deadline = time.monotonic() + timeout_s
    try:
        while not context.join(timeout=1):
            if time.monotonic() > deadline:
                hung = [rank for rank, process in enumerate(context.processes) if process.is_alive()]
                for process in context.processes:
                    process.kill()
                    process.join()
                pytest.fail(f"ranks {hung} still ran after {timeout_s:.0f} s: a collective hangs")
    except mp.ProcessExitedException as error:
        pytest.fail(f"rank {error.error_index} exited with {error.exit_code}")


def leave_after_the_last_barrier() -> None:
    """Wait for every rank (each has written its results), then exit 0 without gloo's teardown."""
    if dist.is_initialized():
        dist.barrier()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
