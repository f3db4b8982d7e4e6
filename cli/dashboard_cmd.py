"""`femb dashboard RUN_DIR`: watch and steer a run training in another process, or replay a finished one."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from femb_cli.errors import fail
from femb_cli.stop import check_run_dir, stop_run


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
    stop: Annotated[
        bool, typer.Option("--stop", help="Ask the run to stop gracefully (as `femb stop`), then return.")
    ] = False,
) -> None:
    """Live dashboard of a run: curves, metrics, log; keys stop it, checkpoint, evaluate, pause.

    Keys: q stop (asks first; d detaches instead), ctrl+c interrupt (twice: at once), s save a
    checkpoint, e evaluate now, p pause/resume. The requests go to the training process through
    RUN_DIR/control/ and act between steps; closing the dashboard never stops the training.

    When stdout is not a terminal, prints a text summary of the run instead.
    """
    check_run_dir(run_dir)
    if stop:
        stop_run(run_dir)
        return
    if not sys.stdout.isatty():
        from femb_cli.dashboard.summary import run_summary_lines

        lines, readable = run_summary_lines(run_dir)
        typer.echo("\n".join(lines))
        if not readable:
            metrics = run_dir / "metrics.jsonl"
            raise fail(f"{metrics}: not one femb event in it (not a metrics file, or damaged)")
        return
    from femb_cli.dashboard import create_dashboard_app

    dashboard = create_dashboard_app(follow_run_dir=run_dir, replay=replay)
    dashboard.run()
    if dashboard.return_code:  # Textual has printed what crashed; the shell must see it too
        raise typer.Exit(dashboard.return_code)
