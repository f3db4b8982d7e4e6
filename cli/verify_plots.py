"""The curves `femb verify pairs` draws: the ROC in the terminal (plotext) or as an image
(matplotlib, --plot), and the error-versus-reject curve of --quality-curve."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import typer

from femb.errors import one_line
from femb_cli.errors import fail


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)  # plotext's colour resets, even in its clear theme


def terminal_roc(fpr, tpr, auc: float, name: str = "") -> str:
    """The ROC curve as text: log10(FAR) on a linear axis with decade labels (plotext's own log
    axis mislabels values below 1)."""
    import plotext as plt

    fpr, tpr = np.asarray(fpr, dtype=float), np.asarray(tpr, dtype=float)
    positive = fpr[fpr > 0]
    lowest = math.floor(math.log10(max(float(positive.min()), 1e-6))) if positive.size else -4
    lowest = min(lowest, -1)
    x = np.log10(np.clip(fpr, 10.0**lowest, 1.0))
    decades = list(range(lowest, 1))
    plt.clf()
    plt.plotsize(72, 18)
    plt.theme("clear")
    plt.plot(x.tolist(), tpr.tolist(), marker="braille")
    plt.xticks(decades, ["1" if d == 0 else f"1e{d}" for d in decades])
    plt.xlim(lowest, 0)
    plt.ylim(0.0, 1.0)
    plt.title(f"ROC{f' {name}' if name else ''} (AUC {auc:.4f})")
    plt.xlabel("false accept rate")
    plt.ylabel("true accept rate")
    text = plt.build()
    plt.clf()
    return _plain(text)


def save_roc(curves: list[tuple[str, np.ndarray, np.ndarray, float]], path: Path, title: str) -> None:
    """Every set's ROC curve in one image: ``curves`` holds ``(name, fpr, tpr, auc)``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5, 4.5), dpi=120)
    lowest = 1e-4
    for name, fpr, tpr, auc in curves:
        label = f"{name}: AUC {auc:.4f}" if len(curves) > 1 else f"AUC {auc:.4f}"
        axes.plot(fpr, tpr, label=label)
        lowest = min(lowest, min((f for f in fpr if f > 0), default=lowest))
    axes.set_xscale("log")
    axes.set_xlim(left=max(1e-5, lowest), right=1.0)
    axes.set_ylim(0.0, 1.0)
    axes.set_xlabel("false accept rate")
    axes.set_ylabel("true accept rate")
    axes.set_title(f"ROC — {title}")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="lower right")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        figure.savefig(path, bbox_inches="tight")
    except (OSError, ValueError) as error:
        raise fail(f"cannot write {path}: {one_line(error)}") from None
    finally:
        plt.close(figure)


def print_quality_curve(row: dict, name: str = "") -> None:
    """The error-versus-reject table and curve of one set."""
    from rich.console import Console
    from rich.table import Table

    points = row["quality_curve"]
    typer.echo(
        f"error versus reject{f' ({name})' if name else ''}: FNMR at FMR {row['quality_curve_fmr']:g} "
        f"(threshold {row['quality_curve_threshold']:.4f}, fixed before rejection); "
        "a pair's quality is the lower raw norm of its two images"
    )
    table = Table()
    for column in ("rejected", "pairs kept", "FNMR"):
        table.add_column(column, justify="right")
    for point in points:
        fnmr = "n/a" if point["fnmr"] is None else f"{point['fnmr']:.4f}"
        table.add_row(f"{100 * point['rejected']:.0f}%", f"{point['kept_pairs']:,}", fnmr)
    Console(width=110).print(table)
    typer.echo(_terminal_curve(points))


def _terminal_curve(points: list[dict]) -> str:
    import plotext as plt

    kept = [p for p in points if p["fnmr"] is not None]
    plt.clf()
    plt.plotsize(72, 16)
    plt.theme("clear")
    plt.plot([100 * p["rejected"] for p in kept], [p["fnmr"] for p in kept], marker="braille")
    plt.xlim(0, 100 * points[-1]["rejected"])
    plt.ylim(0.0, max([p["fnmr"] for p in kept] + [1e-3]) * 1.05)
    plt.title("FNMR as the lowest-quality pairs are rejected")
    plt.xlabel("pairs rejected (%)")
    plt.ylabel("FNMR")
    text = plt.build()
    plt.clf()
    return _plain(text)
