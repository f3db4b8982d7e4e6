"""What `femb verify pairs` prints and writes: the summary table(s), --json and --csv-out.

One set prints the detailed table; several print one row per set, like the per-target summary
papers publish. --json holds the run's keys, every set under ``sets`` and, for one set, that set's
keys at the top level as well; --csv-out holds one row per set.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import typer

from femb.errors import one_line
from femb_cli.errors import fail

_TAR_KEY = re.compile(r"tar_at_far_[-+.e0-9]+")


def _console():
    from rich.console import Console

    # A fixed width when not a terminal: the table must not depend on $COLUMNS.
    return Console(file=sys.stdout, width=None if sys.stdout.isatty() else 110)


def _number(value, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _accuracy(row: dict) -> str:
    accuracy, std = row["accuracy"], row["accuracy_std"]
    return "n/a" if accuracy is None else f"{100 * accuracy:.2f}% ± {100 * (std or 0):.2f}%"


def _protocol(run: dict) -> str:
    measure = "cosine similarity" if run["similarity"] == "cos" else "squared L2 distance"
    return f"{run['n_folds']}-fold, flip {'on' if run['flip'] else 'off'}, {measure}"


def _speed(run: dict) -> str:
    rate = run["images_per_second"]
    shown = "n/a" if rate is None else f"{rate:,.1f}"
    return f"{shown} ({run['forward_images']:,} forward passes, {run['precision']} model)"


def _tar_keys(row: dict) -> list[str]:
    return [key for key in row if _TAR_KEY.fullmatch(key)]


def print_set(run: dict, row: dict) -> None:
    """The detailed table of a single pairs set."""
    from rich.table import Table

    table = Table(title="face verification", show_header=False, title_justify="left")
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("model", f"{run['model']} — {run['runtime']}")
    table.add_row("pairs", row["pairs_source"])
    table.add_row("protocol", _protocol(run))
    table.add_row("accuracy", _accuracy(row))
    table.add_row("best threshold", _number(row["threshold"]))
    table.add_row("EER", _number(row["eer"]))
    table.add_row("ROC AUC", _number(row["auc"]))
    for key in _tar_keys(row):
        table.add_row("TAR@FAR=" + key.removeprefix("tar_at_far_"), _tar_text(row, key))
    table.add_row(
        "pairs",
        f"{row['num_pairs']:,} ({row['num_same']:,} same, {row['num_different']:,} different), "
        f"{row['num_images']:,} images",
    )
    table.add_row("images/s", _speed(run))
    if "model_threshold" in row:
        table.add_row("model threshold", _model_threshold_text(row))
    _console().print(table)


def print_sets(run: dict, rows: list[dict]) -> None:
    """One row per pairs set: accuracy ± std, EER, AUC and TAR at each target FAR."""
    from rich.table import Table

    tar_keys = _tar_keys(rows[0])
    table = Table(title=f"face verification — {run['model']}", title_justify="left")
    for column in ("set", "pairs", "accuracy", "EER", "AUC"):
        table.add_column(column, justify="left" if column == "set" else "right")
    for key in tar_keys:
        table.add_column("TAR@FAR=" + key.removeprefix("tar_at_far_"), justify="right")
    with_model_threshold = any("far_at_model_threshold" in row for row in rows)
    if with_model_threshold:
        table.add_column("FAR at model threshold", justify="right")
    for row in rows:
        cells = [
            row["set"],
            f"{row['num_pairs']:,}",
            _accuracy(row),
            _number(row["eer"]),
            _number(row["auc"]),
        ]
        cells += [_number(row[key]) for key in tar_keys]
        if with_model_threshold:
            cells.append(_number(row.get("far_at_model_threshold")))
        table.add_row(*cells)
    console = _console()
    console.print(table)
    console.print(f"runtime  {run['runtime']}", highlight=False)
    console.print(f"protocol {_protocol(run)}", highlight=False)
    console.print(f"images/s {_speed(run)}", highlight=False)


def _tar_text(row: dict, key: str) -> str:
    """``0.9800 (folds 0.9750 ± 0.0100) at threshold 0.3120``: all pairs, the held-out folds, the cut."""
    value = row[key]
    if value is None:
        return "n/a (too few different pairs)"
    text = f"{value:.4f}"
    mean, std = row.get(f"{key}_fold_mean"), row.get(f"{key}_std")
    if mean is not None and std is not None:
        text += f" (folds {mean:.4f} ± {std:.4f})"
    cut = row.get(key.replace("tar_at", "threshold_at", 1))
    return text + ("" if cut is None else f" at threshold {cut:.4f}")


def _model_threshold_text(row: dict) -> str:
    text = f"{row['model_threshold']:.4f} (FAR target {row['model_threshold_far']:g})"
    far, frr = row.get("far_at_model_threshold"), row.get("frr_at_model_threshold")
    if far is None:
        return text + ": not measured"
    return text + f": FAR {far:.4g}, FRR {frr:.4g} on these pairs"


def print_notes(rows: list[dict]) -> None:
    """Each set's note on the model's threshold and its drift warning, named when there are several."""
    for row in rows:
        prefix = f"{row['set']}: " if len(rows) > 1 else ""
        if "model_threshold_note" in row:
            typer.echo(f"note: {prefix}{row['model_threshold_note']}", err=True)
        if "calibration_drift" in row:
            typer.echo(f"warning: {prefix}{row['calibration_drift']} (--calibrate)", err=True)


def json_document(run: dict, rows: list[dict]) -> dict:
    """The --json document: the run's keys, ``sets``, and for a single set its keys at the top."""
    document = dict(run)
    if len(rows) == 1:
        document.update(rows[0])
    document["sets"] = rows
    return document


def flat_for_csv(row: dict) -> dict:
    """A set as one CSV row: the quality curve's points become ``fnmr_at_reject_<pct>`` columns, a
    nested mapping (``calibrated``) ``<name>_<key>`` columns."""
    flat = {}
    for key, value in row.items():
        if key == "quality_curve":
            for point in value:
                flat[f"fnmr_at_reject_{100 * point['rejected']:.0f}%"] = point["fnmr"]
        elif isinstance(value, dict):
            flat.update({f"{key}_{inner}": item for inner, item in value.items()})
        else:
            flat[key] = value
    return flat


def write_outputs(run: dict, rows: list[dict], json_out: Path | None, csv_out: Path | None) -> None:
    """--json and --csv-out, each written whole or not at all (never over a device or a FIFO)."""
    from femb.fileio import atomic_write_bytes

    try:
        if json_out is not None:
            text = json.dumps(json_document(run, rows), indent=2) + "\n"
            atomic_write_bytes(json_out, text.encode("utf-8"), "results file")
            typer.echo(f"results written to {json_out}")
        if csv_out is not None:
            import pandas as pd

            table = pd.DataFrame([flat_for_csv({**run, **row}) for row in rows])
            atomic_write_bytes(csv_out, table.to_csv(index=False).encode("utf-8"), "results file")
            typer.echo(f"results written to {csv_out}")
    except (OSError, ValueError) as error:  # a full disk, a target that is no regular file
        raise fail(f"cannot write results: {one_line(error)}") from None
