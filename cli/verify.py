"""`femb verify pairs MODEL`: face-verification accuracy of an ONNX model or a checkpoint on pairs sets.

The policy (operating points, calibration, drift, quality) is :mod:`femb.evaluation`'s; this
module turns options into calls and calls into one table (:mod:`femb_cli.verify_report`).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from femb.errors import one_line
from femb_cli import verify_report
from femb_cli.errors import fail
from femb_cli.progress import progress_bar
from femb_cli.verify_gates import check_calibration_set, check_options, exit_status, write_calibration
from femb_cli.verify_plots import print_quality_curve, save_roc, terminal_roc
from femb_cli.verify_sources import PairsSet, load_sets

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
    bin_files: Annotated[
        list[Path] | None,
        typer.Option(
            "--bin",
            help="An InsightFace verification .bin (lfw.bin, cfp_fp.bin, ...). Every source option is "
            "repeatable and they combine: one row per set, named by the file's stem or NAME=PATH.",
            rich_help_panel=SOURCE,
        ),
    ] = None,
    pairs_txts: Annotated[
        list[Path] | None,
        typer.Option("--pairs", help="An LFW-style pairs.txt (needs --root).", rich_help_panel=SOURCE),
    ] = None,
    csv_files: Annotated[
        list[Path] | None,
        typer.Option(
            "--csv",
            help="A CSV of path1,path2,same rows (paths relative to --root or the CSV).",
            rich_help_panel=SOURCE,
        ),
    ] = None,
    folders: Annotated[
        list[Path] | None,
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
            help="Write the results as CSV, one row per pairs set (--csv names a pairs input).",
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
            help="Save the ROC curves as an image (needs matplotlib: pip install femb[plot]).",
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
    """Embed each image of every pairs set once (and its mirror), score the pairs, report the metrics:
    one row per set, with the model's throughput and precision.

    A model that carries a calibrated threshold (--calibrate) is also checked against it: the FAR
    and FRR it gives on these pairs, and a warning when the FAR is more than 3× its target.
    """
    fars = check_options(similarity, provider, plot, far)
    sources = {"bin": bin_files, "pairs": pairs_txts, "csv": csv_files, "folder": folders}
    # Pairs first: a wrong path should not wait for a model to load.
    sets = load_sets(sources, root, num_pairs, seed)
    if calibrate:
        check_calibration_set(sets, fars[0])
    embedder, stored = _open_model(model, provider, batch_size, mean, std, bgr, calibrate, fail_over_far)

    from femb.evaluation import VerificationEvaluator
    from femb.inference.speed import Throughput, model_precision

    evaluator = VerificationEvaluator(
        similarity=similarity, n_folds=folds, flip=flip, far_targets=fars, batch_size=batch_size
    )
    started = time.perf_counter()
    named = len(sets) > 1  # notes name their set only when there are several
    scored = [_score_set(evaluator, embedder, s, stored, quality_curve, named) for s in sets]
    reports, meters = [report for report, _ in scored], [meter for _, meter in scored]
    rows = [report.row for report in reports]
    total = Throughput(images=sum(m.images for m in meters), seconds=sum(m.seconds for m in meters))
    run = {
        "model": str(model),
        "runtime": embedder.describe(),
        "provider": embedder.provider,
        "flip": bool(flip),
        "similarity": similarity,
        "n_folds": int(folds),
        **total.to_dict(precision=model_precision(embedder)),
        "seconds": round(time.perf_counter() - started, 3),
    }
    if len(rows) == 1:
        verify_report.print_set(run, rows[0])
    else:
        verify_report.print_sets(run, rows)
    verify_report.print_notes(rows)
    results = [report.result for report in reports]
    _print_curves(sets, rows, results, quality_curve, roc if roc is not None else sys.stdout.isatty())
    if calibrate:
        rows[0]["calibrated"] = write_calibration(model, sets[0], reports[0].points[0], similarity, flip)
    verify_report.write_outputs(run, rows, json_out, csv_out)
    if plot is not None:
        curves = [
            (row["set"], result.fpr, result.tpr, result.auc)
            for row, result in zip(rows, results, strict=True)
        ]
        save_roc(curves, plot, model.name)
        typer.echo(f"ROC curve{'s' if len(curves) > 1 else ''} written to {plot}")
    exit_status(rows, fail_under, fail_over_far)


def _open_model(model, provider, batch_size, mean, std, bgr, calibrate: bool, fail_over_far):
    """The embedder and its calibrated threshold (None when it carries none), notes printed."""
    from femb.inference import ModelLoadError, OnnxEmbedder, ProviderError, open_embedder

    try:
        embedder = open_embedder(model, provider=provider, batch_size=batch_size, mean=mean, std=std, bgr=bgr)
        stored = getattr(embedder, "threshold", None)  # a malformed one is a ValueError
    except (ModelLoadError, ProviderError, ValueError) as error:
        raise fail(one_line(error)) from None
    if calibrate and not isinstance(embedder, OnnxEmbedder):
        raise fail(f"--calibrate writes into an ONNX model; {model} is a checkpoint (export it first)")
    if fail_over_far is not None and stored is None:
        raise fail(f"--fail-over-far: {model.name} carries no calibrated threshold (see --calibrate)")
    for note in (embedder.note, getattr(embedder, "assumption", "")):
        if note:
            typer.echo(f"note: {note}", err=True)
    return embedder, stored


def _score_set(evaluator, embedder, pairs_set: PairsSet, stored, quality_curve: bool, named: bool):
    """One set's report (its row named and described) and the throughput of its embedding."""
    from femb.evaluation import report_pairs
    from femb.inference.speed import Throughput

    prefix = f"{pairs_set.name}: " if named else ""
    for note in pairs_set.notes:
        typer.echo(f"note: {prefix}{note}", err=True)
    meter, started = Throughput(), time.perf_counter()
    unit_vectors = bool(getattr(embedder, "outputs_unit_vectors", False))
    try:
        with progress_bar(f"embedding the images of {pairs_set.name}") as update:
            report = report_pairs(
                evaluator,
                meter.wrap(embedder),
                pairs_set.pairs,
                str(pairs_set.path),
                stored,
                quality_curve,
                unit_vectors,
                on_batch=update,
            )
    except (ValueError, RuntimeError, OSError) as error:  # unreadable images, a model that rejects them
        raise fail(one_line(error)) from None
    for note in report.notes:
        typer.echo(f"note: {prefix}{note}", err=True)
    report.row = {"set": pairs_set.name, "pairs_source": pairs_set.description, **report.row}
    report.row.update(meter.to_dict(), seconds=round(time.perf_counter() - started, 3))
    return report, meter


def _print_curves(sets, rows, results, quality_curve: bool, roc: bool) -> None:
    for pairs_set, row, result in zip(sets, rows, results, strict=True):
        name = pairs_set.name if len(sets) > 1 else ""
        if quality_curve and "quality_curve" in row:
            print_quality_curve(row, name)
        if roc:
            typer.echo(terminal_roc(result.fpr, result.tpr, result.auc, name))
