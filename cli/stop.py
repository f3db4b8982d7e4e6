"""`femb stop RUN_DIR`: ask the process training a run (detached, or in another terminal) to stop.

The request goes through ``RUN_DIR/control/`` like the dashboard's: the run finishes its step,
saves ``checkpoints/last.pt`` and ends as ``stopped``; ``femb train --resume RUN_DIR`` continues it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from femb_cli.errors import fail


def stop_command(
    run_dir: Annotated[
        Path,
        typer.Argument(help="The run directory of a run in training.", metavar="RUN_DIR", show_default=False),
    ],
    wait: Annotated[
        bool, typer.Option("--wait", help="Return only once the run has ended (its checkpoint written).")
    ] = False,
) -> None:
    """Stop a run training in another process gracefully: a checkpoint, then it ends."""
    check_run_dir(run_dir)
    stop_run(run_dir, wait=wait)


def check_run_dir(run_dir: Path) -> None:
    """One error line for a path that is not a run directory (its training may not have begun yet:
    a run started a moment ago has its train.log and no metrics.jsonl)."""
    if not run_dir.is_dir():
        raise fail(f"{run_dir}: no such run directory")
    if not any((run_dir / name).is_file() for name in ("metrics.jsonl", "train.log")):
        raise fail(f"{run_dir}: no metrics.jsonl or train.log (not a femb run directory)")


def stop_run(run_dir: Path, wait: bool = False) -> None:
    from femb.training.control import send_request
    from femb.training.run_summary import is_running
    from femb_cli.dashboard.process import lock_owner

    if not is_running(run_dir):
        raise fail(f"{run_dir}: no process is training this run (see `femb runs {run_dir.parent}`)", code=1)
    send_request(run_dir, "stop")
    typer.echo(
        f"asked the training of {run_dir} (pid {lock_owner(run_dir)}) to stop: it finishes its step, "
        "saves a checkpoint and ends"
    )
    if not wait:
        return
    while is_running(run_dir):
        time.sleep(0.2)
    from femb.training.events import read_events

    ends = [event for event in read_events(run_dir / "metrics.jsonl") if event.get("event") == "end"]
    typer.echo(f"ended: {ends[-1].get('reason')} at step {ends[-1].get('step')}" if ends else "ended")
