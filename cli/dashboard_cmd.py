"""`femb dashboard RUN_DIR`: watch and steer a run training in another process, or replay a finished one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from femb_cli.errors import fail


def dashboard_command(
    run_dir: Annotated[
        Path,
        typer.Argument(
            help="A run directory (the one `femb train` prints), holding metrics.jsonl.",
            metavar="RUN_DIR",
            show_default=False,
        ),
    ],
    replay: Annotated[
        bool, typer.Option("--replay", help="Read metrics.jsonl once and show it; do not follow it.")
    ] = False,
) -> None:
    """Live dashboard of a run: curves, metrics, log; keys stop it, checkpoint, evaluate, pause.

    Keys: q stop (asks first; d detaches instead), s save a checkpoint, e evaluate now, p pause/resume.
    The requests go to the training process through RUN_DIR/control/ and act between steps.
    """
    if not run_dir.is_dir():
        raise fail(f"{run_dir}: no such run directory")
    if not (run_dir / "metrics.jsonl").is_file():
        raise fail(f"{run_dir}: no metrics.jsonl (not a femb run directory, or its run has not started yet)")
    from femb_cli.dashboard import create_dashboard_app

    dashboard = create_dashboard_app(follow_run_dir=run_dir, replay=replay)
    dashboard.run()
    if dashboard.return_code:  # Textual has printed what crashed; the shell must see it too
        raise typer.Exit(dashboard.return_code)
