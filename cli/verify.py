"""`femb verify pairs MODEL`: face-verification accuracy of an ONNX model or a checkpoint on a pairs set."""

from __future__ import annotations

import importlib.util
import json
import math
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer

from femb.errors import one_line
from femb_cli import thresholds
from femb_cli.errors import fail
from femb_cli.progress import progress_bar

verify_app = typer.Typer(
    help="Verify a model on face pairs (10-fold accuracy, EER, AUC, TAR@FAR).",
    no_args_is_help=True,
)

SOURCE, PROTOCOL, RUNTIME, OUTPUT = "Pairs", "Protocol", "Runtime", "Output"
CALIBRATION = "Thresholds and quality"
MODEL_INPUT = "Model input (ONNX models without femb metadata)"


@verify_app.command("pairs")
def pairs_command(
    model: Annotated[
        Path, typer.Argument(help="An .onnx model, or a checkpoint / run directory (run through PyTorch).")
    ],
    bin_file: Annotated[
        Path | None,
        typer.Option(
            "--bin",
            help="An InsightFace verification .bin (lfw.bin, cfp_fp.bin, ...).",
            rich_help_panel=SOURCE,
        ),
    ] = None,
    pairs_txt: Annotated[
        Path | None,
        typer.Option("--pairs", help="An LFW-style pairs.txt (needs --root).", rich_help_panel=SOURCE),
    ] = None,
    csv_file: Annotated[
        Path | None,
        typer.Option(
            "--csv",
            help="A CSV of path1,path2,same rows (paths relative to --root or the CSV).",
            rich_help_panel=SOURCE,
        ),
    ] = None,
    folder: Annotated[
        Path | None,
        typer.Option(
            "--folder",
            help="An image folder (one sub-folder per identity): seeded balanced pairs.",
            rich_help_panel=SOURCE,
        ),
    ] = None,
    root: Annotated[
        Path | None,
        typer.Option(
            help="Image root for --pairs (root/name/name_0001.jpg) and --csv.", rich_help_panel=SOURCE
        ),
    ] = None,
    num_pairs: Annotated[
        int,
        typer.Option(
            help="Pairs drawn from --folder (half same, half different).", min=2, rich_help_panel=SOURCE
        ),
    ] = 3000,
    seed: Annotated[
        int, typer.Option(help="Seed of the --folder pair protocol.", rich_help_panel=SOURCE)
    ] = 0,
    flip: Annotated[
        bool,
        typer.Option(
            "--flip/--no-flip",
            help="Add the mirrored image's embedding (the standard protocol).",
            rich_help_panel=PROTOCOL,
        ),
    ] = True,
    similarity: Annotated[
        str,
        typer.Option(
            help="cos | euclidean (squared L2 between normalised embeddings).", rich_help_panel=PROTOCOL
        ),
    ] = "cos",
    folds: Annotated[
        int, typer.Option(help="Folds of the k-fold accuracy.", min=2, rich_help_panel=PROTOCOL)
    ] = 10,
    batch_size: Annotated[
        int, typer.Option(help="Images per forward pass.", min=1, rich_help_panel=RUNTIME)
    ] = 64,
    provider: Annotated[
        str,
        typer.Option(
            help="auto | cuda | cpu (onnxruntime provider, or the PyTorch device for a checkpoint).",
            rich_help_panel=RUNTIME,
        ),
    ] = "auto",
    mean: Annotated[
        float | None,
        typer.Option(
            help="Pixel mean the model subtracts (default: its metadata, else insightface's guess).",
            rich_help_panel=MODEL_INPUT,
        ),
    ] = None,
    std: Annotated[
        float | None,
        typer.Option(
            help="Pixel std the model divides by (default: its metadata, else insightface's guess).",
            min=1e-12,
            rich_help_panel=MODEL_INPUT,
        ),
    ] = None,
    bgr: Annotated[
        bool | None,
        typer.Option(
            "--bgr/--rgb",
            help="Colour order the model takes (default: its metadata, else RGB as insightface feeds it).",
            rich_help_panel=MODEL_INPUT,
        ),
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the results as JSON.", rich_help_panel=OUTPUT)
    ] = None,
    csv_out: Annotated[
        Path | None,
        typer.Option(
            "--csv-out",
            help="Write the results as a one-row CSV (--csv names the pairs input).",
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    roc: Annotated[
        bool | None,
        typer.Option(
            "--roc/--no-roc",
            help="Draw the ROC curve in the terminal (default: when stdout is a terminal).",
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option(
            help="Save the ROC curve as an image (needs matplotlib: pip install femb[plot]).",
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    fail_under: Annotated[
        float | None,
        typer.Option(
            help="Exit with status 1 when accuracy is below this (a fraction, or a percentage if > 1).",
            min=0.0,
            max=100.0,
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    far: Annotated[
        list[float] | None,
        typer.Option(
            "--far",
            help="Target false-accept rate (repeatable; default 1e-3 and 1e-4): its threshold and the "
            "k-fold TAR ± std there. The first one is --calibrate's and --quality-curve's.",
            rich_help_panel=CALIBRATION,
        ),
    ] = None,
    calibrate: Annotated[
        bool,
        typer.Option(
            "--calibrate",
            help="Write the threshold at the first --far (with --similarity, --flip and this pairs "
            "set's name, pair count and SHA-256) into MODEL's metadata (ONNX models only).",
            rich_help_panel=CALIBRATION,
        ),
    ] = False,
    fail_over_far: Annotated[
        float | None,
        typer.Option(
            help="Exit with status 1 when the FAR at the model's own calibrated threshold is above this.",
            min=0.0,
            max=1.0,
            rich_help_panel=CALIBRATION,
        ),
    ] = None,
    quality_curve: Annotated[
        bool,
        typer.Option(
            "--quality-curve",
            help="Error versus reject: FNMR at the first --far's FMR as the 0-50% lowest-quality pairs "
            "are rejected (quality: the lower raw embedding norm of the pair, MagFace's score).",
            rich_help_panel=CALIBRATION,
        ),
    ] = False,
) -> None:
    """Embed each image of a pairs set once (and its mirror), score the pairs, report the metrics.

    A model that carries a calibrated threshold (--calibrate) is also checked against it: the FAR
    and FRR it gives on these pairs, and a warning when the FAR is more than 3× its target.
    """
    from femb.evaluation import SIMILARITIES, VerificationEvaluator
    from femb.inference import PROVIDER_CHOICES, ModelLoadError, OnnxEmbedder, ProviderError, open_embedder

    if similarity not in SIMILARITIES:
        raise fail(f"--similarity must be one of {', '.join(SIMILARITIES)}, got {similarity!r}")
    if provider.lower() not in PROVIDER_CHOICES:
        raise fail(f"--provider must be one of {', '.join(PROVIDER_CHOICES)}, got {provider!r}")
    if plot is not None and importlib.util.find_spec("matplotlib") is None:
        raise fail("--plot needs matplotlib, which is not installed: pip install femb[plot]")
    threshold = None if fail_under is None else (fail_under / 100.0 if fail_under > 1 else fail_under)
    fars = thresholds.far_targets(far)

    # Pairs first: a wrong path should not wait for a model to load.
    dataset, source_text, notes = _load_pairs(bin_file, pairs_txt, csv_file, folder, root, num_pairs, seed)
    if calibrate:
        thresholds.require_resolvable(dataset, fars[0])
    try:
        embedder = open_embedder(model, provider=provider, batch_size=batch_size, mean=mean, std=std, bgr=bgr)
    except (ModelLoadError, ProviderError, ValueError) as error:
        raise fail(str(error)) from None
    if calibrate and not isinstance(embedder, OnnxEmbedder):
        raise fail(f"--calibrate writes into an ONNX model; {model} is a checkpoint (export it first)")
    stored = thresholds.stored_threshold(embedder)
    if fail_over_far is not None and stored is None:
        raise fail(f"--fail-over-far: {model.name} carries no calibrated threshold (see --calibrate)")
    if embedder.note:
        typer.echo(f"note: {embedder.note}", err=True)
    if getattr(embedder, "assumption", ""):
        typer.echo(f"note: {embedder.assumption}", err=True)
    for note in notes:
        typer.echo(f"note: {note}", err=True)

    timer = _TimedEmbed(embedder)
    evaluator = VerificationEvaluator(
        similarity=similarity, n_folds=folds, flip=flip, far_targets=fars, batch_size=batch_size
    )
    started = time.perf_counter()
    try:
        pairs = evaluator.pairs_for(dataset)
        with progress_bar("embedding the pairs' images") as update:
            embeddings, norms = evaluator.embed(
                timer, pairs.images, batch_size, return_norms=True, on_batch=update
            )
        result = evaluator.evaluate_embeddings(embeddings, pairs.pairs, pairs.issame, normalized=True)
    except (
        ValueError,
        RuntimeError,
        OSError,
    ) as error:  # unreadable images, a model that rejects the input, ...
        raise fail(one_line(error)) from None
    elapsed = time.perf_counter() - started

    summary = _summary(
        result, model, embedder, source_text, len(dataset.images), flip, similarity, folds, timer, elapsed
    )
    points, flat = thresholds.operating_points(result, fars, folds)
    summary.update(flat)
    summary.update(thresholds.threshold_check(stored, result, similarity, flip))
    quality_note = None
    if quality_curve:
        curve, quality_note = thresholds.quality_curve(embedder, result, norms, pairs.pairs, fars)
        summary.update(curve)
    _print_table(summary, embedder)
    for key in ("model_threshold_note", "calibration_drift"):
        if key in summary:
            typer.echo(f"{'warning' if key == 'calibration_drift' else 'note'}: {summary[key]}", err=True)
    if quality_note:
        typer.echo(f"note: {quality_note}", err=True)
    elif quality_curve:
        thresholds.print_quality_curve(summary)
    if roc if roc is not None else sys.stdout.isatty():
        typer.echo(_terminal_roc(result.fpr, result.tpr, result.auc))
    if calibrate:
        source = _pairs_source(bin_file, pairs_txt, csv_file, folder)
        chosen = thresholds.calibration_threshold(points, similarity, flip, source, pairs)
        thresholds.write_calibration(model, chosen)
        summary["calibrated"] = chosen.to_metadata()
    _write_outputs(summary, json_out, csv_out)
    if plot is not None:
        _save_plot(result.fpr, result.tpr, result.auc, plot, model.name)
        typer.echo(f"ROC curve written to {plot}")
    if threshold is not None and not result.accuracy >= threshold:
        raise fail(f"accuracy {result.accuracy:.4f} is below --fail-under {threshold:.4f}", code=1)
    achieved = summary.get("far_at_model_threshold")
    if fail_over_far is not None and not (achieved is not None and achieved <= fail_over_far):
        shown = "not measured" if achieved is None else f"{achieved:.4g}"
        raise fail(f"FAR at the model's threshold {shown} is above --fail-over-far {fail_over_far:g}", code=1)


def _pairs_source(bin_file, pairs_txt, csv_file, folder) -> dict:
    """Which kind of pairs set was given, and its path (one was, :func:`_load_pairs` checked)."""
    for kind, path in (("bin", bin_file), ("pairs", pairs_txt), ("csv", csv_file), ("folder", folder)):
        if path is not None:
            return {"kind": kind, "path": path}
    raise AssertionError("no pairs source")


# ---------------------------------------------------------------------------------------- pairs
def _load_pairs(bin_file, pairs_txt, csv_file, folder, root, num_pairs, seed):
    """The chosen pairs set, a description, and notes (e.g. fewer pairs than asked)."""
    from femb.data import (
        ImageFolderDataset,
        load_lfw_pairs,
        load_pairs_csv,
        load_verification_bin,
        pairs_from_labelled,
    )

    chosen = [
        name
        for name, value in (
            ("--bin", bin_file),
            ("--pairs", pairs_txt),
            ("--csv", csv_file),
            ("--folder", folder),
        )
        if value is not None
    ]
    if len(chosen) != 1:
        given = f" (got {', '.join(chosen)})" if chosen else ""
        raise fail(f"give exactly one pairs source: --bin, --pairs with --root, --csv or --folder{given}")
    if pairs_txt is not None and root is None:
        raise fail("--pairs needs --root, the folder holding name/name_0001.jpg")
    if root is not None and (bin_file is not None or folder is not None):
        raise fail("--root applies to --pairs and --csv only")
    notes: list[str] = []
    try:
        if bin_file is not None:
            dataset, text = load_verification_bin(bin_file), str(bin_file)
        elif pairs_txt is not None:
            _require_folder(root, "--root")
            dataset, text = load_lfw_pairs(pairs_txt, root), f"{pairs_txt} (root {root})"
        elif csv_file is not None:
            if root is not None:
                _require_folder(root, "--root")
            dataset, text = load_pairs_csv(csv_file, root), str(csv_file)
        else:
            _require_folder(folder, "--folder")
            images = ImageFolderDataset(folder)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                dataset = pairs_from_labelled(images, num_pairs=num_pairs, seed=seed)
            notes.extend(str(w.message) for w in caught)
            text = f"{folder} ({len(images.classes)} identities, {len(images)} images, seed {seed})"
    except (ValueError, OSError) as error:  # UnsafePickleError included: its message says why
        raise fail(one_line(error)) from None
    return dataset, text, notes


def _require_folder(path: Path, option: str) -> None:
    if not path.exists():
        raise fail(f"{option} {path}: no such directory")
    if not path.is_dir():
        raise fail(f"{option} {path}: not a directory")


# ---------------------------------------------------------------------------------------- results
class _TimedEmbed:
    """The embedder as ``embed_fn``, counting images and time spent in the model."""

    def __init__(self, embedder):
        self.embedder = embedder
        self.images = 0
        self.seconds = 0.0

    def __call__(self, batch):
        started = time.perf_counter()
        out = self.embedder(batch)
        self.seconds += time.perf_counter() - started
        self.images += len(batch)
        return out

    @property
    def rate(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")


def _summary(
    result, model, embedder, source_text, num_images, flip, similarity, folds, timer, elapsed
) -> dict:
    summary: dict[str, Any] = {
        "model": str(model),
        "runtime": embedder.describe(),
        "provider": embedder.provider,
        "pairs_source": source_text,
        "num_images": int(num_images),
        "flip": bool(flip),
        "similarity": similarity,
        "n_folds": int(folds),
    }
    summary.update(result.to_dict())
    summary["images_per_second"] = None if math.isnan(timer.rate) else round(timer.rate, 2)
    summary["forward_images"] = timer.images
    summary["seconds"] = round(elapsed, 3)
    return summary


def _print_table(summary: dict, embedder) -> None:
    from rich.console import Console
    from rich.table import Table

    def number(key: str, digits: int = 4) -> str:
        value = summary.get(key)
        return "n/a" if value is None else f"{value:.{digits}f}"

    accuracy, std = summary["accuracy"], summary["accuracy_std"]
    table = Table(title="face verification", show_header=False, title_justify="left")
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("model", f"{summary['model']} — {summary['runtime']}")
    table.add_row("pairs", summary["pairs_source"])
    table.add_row(
        "protocol",
        f"{summary['n_folds']}-fold, flip {'on' if summary['flip'] else 'off'}, "
        f"{'cosine similarity' if summary['similarity'] == 'cos' else 'squared L2 distance'}",
    )
    table.add_row(
        "accuracy", "n/a" if accuracy is None else f"{100 * accuracy:.2f}% ± {100 * (std or 0):.2f}%"
    )
    table.add_row("best threshold", number("threshold"))
    table.add_row("EER", number("eer"))
    table.add_row("ROC AUC", number("auc"))
    for key in summary:
        if re.fullmatch(r"tar_at_far_[-+.e0-9]+", key):
            table.add_row("TAR@FAR=" + key.removeprefix("tar_at_far_"), _tar_text(summary, key))
    table.add_row(
        "pairs",
        f"{summary['num_pairs']:,} ({summary['num_same']:,} same, {summary['num_different']:,} different), "
        f"{summary['num_images']:,} images",
    )
    rate = summary["images_per_second"]
    table.add_row(
        "images/s", "n/a" if rate is None else f"{rate:,.1f} ({summary['forward_images']:,} forward passes)"
    )
    if "model_threshold" in summary:
        table.add_row("model threshold", _model_threshold_text(summary))
    # soft_wrap off and a fixed width when not a terminal: the table must not depend on $COLUMNS.
    console = Console(file=sys.stdout, width=None if sys.stdout.isatty() else 110)
    console.print(table)


def _tar_text(summary: dict, key: str) -> str:
    """``0.9800 (folds 0.9750 ± 0.0100) at threshold 0.3120``: all pairs, the held-out folds, the cut."""
    value = summary[key]
    if value is None:
        return "n/a (too few different pairs)"
    text = f"{value:.4f}"
    mean, std = summary.get(f"{key}_fold_mean"), summary.get(f"{key}_std")
    if mean is not None and std is not None:
        text += f" (folds {mean:.4f} ± {std:.4f})"
    cut = summary.get(key.replace("tar_at", "threshold_at", 1))
    return text + ("" if cut is None else f" at threshold {cut:.4f}")


def _model_threshold_text(summary: dict) -> str:
    text = f"{summary['model_threshold']:.4f} (FAR target {summary['model_threshold_far']:g})"
    far, frr = summary.get("far_at_model_threshold"), summary.get("frr_at_model_threshold")
    if far is None:
        return text + ": not measured"
    return text + f": FAR {far:.4g}, FRR {frr:.4g} on these pairs"


def _terminal_roc(fpr, tpr, auc: float) -> str:
    """The ROC curve as text: log10(FAR) on a linear axis with decade labels (plotext's own log
    axis mislabels values below 1)."""

    import numpy as np
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
    plt.title(f"ROC (AUC {auc:.4f})")
    plt.xlabel("false accept rate")
    plt.ylabel("true accept rate")
    text = plt.build()
    plt.clf()
    # plotext ends lines with colour resets even in its colourless theme.
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def _save_plot(fpr, tpr, auc: float, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5, 4.5), dpi=120)
    axes.plot(fpr, tpr, label=f"AUC {auc:.4f}")
    axes.set_xscale("log")
    axes.set_xlim(left=max(1e-5, min((f for f in fpr if f > 0), default=1e-4)), right=1.0)
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


def _write_outputs(summary: dict, json_out: Path | None, csv_out: Path | None) -> None:
    try:
        if json_out is not None:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(json.dumps(summary, indent=2) + "\n")
            typer.echo(f"results written to {json_out}")
        if csv_out is not None:
            import pandas as pd

            csv_out.parent.mkdir(parents=True, exist_ok=True)
            pd.DataFrame([thresholds.flat_for_csv(summary)]).to_csv(csv_out, index=False)
            typer.echo(f"results written to {csv_out}")
    except OSError as error:
        raise fail(f"cannot write results: {one_line(error)}") from None
