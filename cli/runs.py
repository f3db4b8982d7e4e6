"""`femb runs [DIR]`: the training runs under a folder, best verification accuracy first."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from femb_cli.errors import fail

STATUS_STYLE = {
    "running": "bold cyan",
    "completed": "green",
    "stopped": "yellow",
    "error": "red",
    "died": "magenta",
    "unreadable": "red",
}
PIPED_WIDTH = 160  # a table written to a file or a pipe is not squeezed into 80 columns


def runs_command(
    root: Annotated[
        Path,
        typer.Argument(
            help="The folder holding run directories (where `femb train` puts them).", metavar="DIR"
        ),
    ] = Path("runs"),
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list of records instead.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV instead.")] = False,
) -> None:
    """List the runs under DIR: backbone, head, steps, best accuracy, status, start time, duration.

    Sorted by best accuracy, highest first; runs never evaluated come last. With several
    validation sets, one column per set: its accuracy at the best evaluation (best.pt's).

    Status: running PID (a process holds the run's lock), completed, stopped (also Ctrl-C), error (also NaN).

    died: the run wrote no end and no process holds its lock (killed, out of memory, power lost).
    """
    if as_json and as_csv:
        raise fail("--json and --csv: choose one")
    if not root.exists():
        raise fail(f"{root}: no such folder")
    if not root.is_dir():
        raise fail(f"{root}: not a folder")
    from femb.training.run_summary import runs_frame, summarize_runs

    summaries = summarize_runs(root)
    if as_json:
        typer.echo(json.dumps(_records(_with_pid(runs_frame(summaries))) if summaries else [], indent=2))
    elif as_csv:
        typer.echo(_for_export(_with_pid(runs_frame(summaries))).to_csv(index=False), nl=False)
    elif not summaries:
        typer.echo(f"no runs under {root}")
    else:
        _print_table(_with_pid(runs_frame(summaries)))


def _with_pid(frame):
    """The process training each running run (its lock's owner; the kernel said it is held)."""
    import pandas as pd

    from femb_cli.dashboard.process import lock_owner

    frame = frame.copy()
    pids = [
        lock_owner(Path(path)) if status == "running" else None
        for path, status in zip(frame["path"], frame["status"], strict=True)
    ]
    frame["pid"] = pd.array(pids, dtype="Int64")
    return frame


def _for_export(frame):
    """``started`` as ISO 8601 local time with its offset: readable, and exact for a machine."""
    frame = frame.copy()
    frame["started"] = [_iso_time(value) for value in frame["started"]]
    return frame


def _records(frame) -> list[dict[str, Any]]:
    """Plain JSON values: pandas' missing markers (NaN, NA) become null."""
    export = _for_export(frame).astype(object)
    return export.where(export.notna(), None).to_dict("records")


def _print_table(frame) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("run", overflow="fold")
    for column in ("backbone", "head"):
        table.add_column(column)
    from femb.training.run_summary import OPTION_COLUMN, SET_COLUMN

    set_columns = [column for column in frame.columns if column.startswith(SET_COLUMN)]
    for column in ("steps", "best acc", "@step", *(c.removeprefix(SET_COLUMN) for c in set_columns)):
        table.add_column(column, justify="right")
    for column in ("status", "started", "duration"):
        table.add_column(column)
    # The schema's other options, where the runs listed differ: what tells them apart.
    shown = {OPTION_COLUMN + name for name in ("backbone", "head", "steps", "run_dir", "name")}
    options = [c for c in frame.columns if c.startswith(OPTION_COLUMN) and c not in shown and "." not in c]
    options = [c for c in options if frame[c].astype(str).nunique() > 1]
    for column in options:
        table.add_column(column.removeprefix(OPTION_COLUMN))
    set_values = frame[set_columns].itertuples(index=False, name=None)
    option_values = frame[options].itertuples(index=False, name=None)
    rows = zip(frame.itertuples(index=False), set_values, option_values, strict=True)
    for row, per_set, per_option in rows:
        cells = (
            row.name,
            _or_dash(row.backbone),
            _or_dash(row.head) + ("" if _missing(row.head_options) else f"({row.head_options})"),
            f"{row.steps_done}/{_or_dash(row.steps_planned)}",
            _or_dash(row.best_accuracy, "{:.4f}"),
            _or_dash(row.best_step),
            *(_or_dash(value, "{:.4f}") for value in per_set),
            f"running {row.pid}" if row.status == "running" and not _missing(row.pid) else row.status,
            _local_time(row.started),
            _duration(row.duration_s),
            *(_or_dash(value) for value in per_option),
        )
        texts = [Text(str(cell)) for cell in cells]  # Text, not markup: a run's name is shown as is
        texts[6 + len(set_columns)].stylize(STATUS_STYLE.get(row.status, ""))
        table.add_row(*texts)
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, PIPED_WIDTH))
    console.print(table)


def _missing(value: Any) -> bool:
    import pandas as pd

    return value is None or bool(pd.isna(value))


def _or_dash(value: Any, form: str = "{}") -> str:
    return "–" if _missing(value) else form.format(value)


def _local_time(seconds: Any) -> str:
    return "–" if _missing(seconds) else time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds))


def _iso_time(seconds: Any) -> str | None:
    if _missing(seconds):
        return None
    from datetime import datetime

    return datetime.fromtimestamp(seconds).astimezone().isoformat(timespec="seconds")


def _duration(seconds: Any) -> str:
    """``42s``, ``3m05s``, ``2h07m``, ``3d04h``: two units are enough to compare runs."""
    if _missing(seconds):
        return "–"
    seconds = round(seconds)
    minutes, secs = divmod(seconds, 60)
    hours, mins = divmod(minutes, 60)
    days, hrs = divmod(hours, 24)
    if days:
        return f"{days}d{hrs:02d}h"
    if hours:
        return f"{hours}h{mins:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"
