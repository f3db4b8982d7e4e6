"""What `femb verify ijb` prints: the TAR@FAR table and the 1:N table."""

from __future__ import annotations

import sys


def _console():
    from rich.console import Console

    # A fixed width off a terminal: the tables must not depend on $COLUMNS.
    return Console(file=sys.stdout, width=None if sys.stdout.isatty() else 100)


def print_verification(summary: dict) -> None:
    """One row per FAR target; FARs too small for the impostor count are marked."""
    from rich.table import Table

    protocol = summary["protocol"]
    switches = ", ".join(
        f"{name} {'on' if protocol[key] else 'off'}"
        for key, name in (
            ("flip", "flip"),
            ("detector_score", "detector score"),
            ("normalize_faces", "face norm"),
        )
    )
    table = Table(
        title=f"{summary['set']} 1:1 verification — {summary['model']}", title_justify="left", show_edge=False
    )
    table.add_column("FAR", justify="right")
    table.add_column("TAR", justify="right")
    table.add_column("", style="dim")
    for key, value in summary["tar_at_far"].items():
        shown = "n/a" if value is None else f"{100 * value:.2f}%"
        table.add_row(key, shown, "" if summary["far_measurable"][key] else "below 1 / impostor pairs")
    console = _console()
    console.print(table)
    console.print(
        f"AUC {summary['auc']:.4f} · {summary['num_pairs']:,} pairs ({summary['num_genuine']:,} genuine, "
        f"{summary['num_impostor']:,} impostor) · {summary['num_templates']:,} templates, "
        f"{summary['num_faces']:,} faces · {switches} · {summary['runtime']}",
        soft_wrap=True,
    )


def print_identification(results: dict) -> None:
    """One row per gallery: rank-1, rank-5, TPIR at each FPIR, probe counts."""
    from rich.table import Table

    first = next(iter(results.values()))
    fpirs = list(first["tpir_at_fpir"])
    table = Table(title="1:N identification (mixed probes)", title_justify="left", show_edge=False)
    for column in ["gallery", "rank-1", "rank-5", *[f"TPIR@FPIR={f}" for f in fpirs], "probes (mated)"]:
        table.add_column(column, justify="right")
    for name, result in results.items():
        table.add_row(
            name,
            _percent(result["rank_1"]),
            _percent(result["rank_5"]),
            *[_percent(result["tpir_at_fpir"][f]) for f in fpirs],
            f"{result['num_probes']:,} ({result['num_mated']:,})",
        )
    _console().print(table)


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"
