"""`femb verify ijb MODEL --root DIR`: IJB-B / IJB-C template verification (1:1) and identification (1:N)."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from femb.errors import one_line
from femb_cli.errors import fail
from femb_cli.ijb_report import print_identification, print_verification
from femb_cli.stages import stage_progress

SET, PROTOCOL, RUNTIME, OUTPUT = "Set", "Protocol", "Runtime", "Output"


def ijb_command(
    model: Annotated[
        Path, typer.Argument(help="An .onnx model (femb's or any ArcFace-style file), or a checkpoint / run.")
    ],
    root: Annotated[
        Path, typer.Option(help="The set's folder: meta/ and loose_crop/ inside.", rich_help_panel=SET)
    ],
    set_name: Annotated[
        str, typer.Option("--set", help="IJBC or IJBB: names the meta files.", rich_help_panel=SET)
    ] = "IJBC",
    meta_prefix: Annotated[
        str | None,
        typer.Option(
            help="The meta files' prefix for another set (default: --set in lower case).", rich_help_panel=SET
        ),
    ] = None,
    flip: Annotated[
        bool,
        typer.Option("--flip/--no-flip", help="Add the mirrored face's embedding.", rich_help_panel=PROTOCOL),
    ] = True,
    detector_score: Annotated[
        bool,
        typer.Option(
            "--detector-score/--no-detector-score",
            help="Weight each face by its detector score.",
            rich_help_panel=PROTOCOL,
        ),
    ] = True,
    normalize_faces: Annotated[
        bool,
        typer.Option(
            "--normalize-faces", help="L2-normalise each face before pooling.", rich_help_panel=PROTOCOL
        ),
    ] = False,
    on_bad_image: Annotated[
        str,
        typer.Option(
            help="error | skip: an image listed but absent or unreadable stops the run, or is left out "
            "and counted.",
            rich_help_panel=SET,
        ),
    ] = "error",
    batch_size: Annotated[
        int, typer.Option(help="Faces per forward pass.", min=1, rich_help_panel=RUNTIME)
    ] = 64,
    workers: Annotated[
        int, typer.Option(help="Threads that read and align the faces.", min=1, rich_help_panel=RUNTIME)
    ] = min(4, os.cpu_count() or 1),
    provider: Annotated[
        str,
        typer.Option(help="auto | cuda | cpu (onnxruntime, or the PyTorch device).", rich_help_panel=RUNTIME),
    ] = "auto",
    features: Annotated[
        Path | None,
        typer.Option(
            help="Face-feature cache (.npy): reused when the model's and the image list's digests match, "
            "else computed and written.",
            rich_help_panel=RUNTIME,
        ),
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the results as JSON.", rich_help_panel=OUTPUT)
    ] = None,
    scores_out: Annotated[
        Path | None,
        typer.Option(
            "--scores", help="Write every pair's score (.npy, pair-list order).", rich_help_panel=OUTPUT
        ),
    ] = None,
    roc: Annotated[
        bool | None,
        typer.Option(
            "--roc/--no-roc",
            help="Draw the ROC in the terminal (default: when stdout is a terminal).",
            rich_help_panel=OUTPUT,
        ),
    ] = None,
) -> None:
    """Align every face from its five points, embed it (and its mirror), pool templates, score every pair.

    Prints TAR at FAR = 1e-6 … 1e-1 (InsightFace's protocol) and, where the set has its 1:N lists,
    rank-1/rank-5 and TPIR at FPIR = 0.01 and 0.1 for each gallery.
    """
    from femb.evaluation.ijb_meta import KNOWN_SETS, load_ijb_meta
    from femb.inference import PROVIDER_CHOICES

    if set_name.upper() not in KNOWN_SETS and not meta_prefix:
        raise fail(f"--set {set_name} is neither IJBB nor IJBC; give --meta-prefix, its meta files' prefix")
    if on_bad_image not in ("error", "skip"):
        raise fail(f"--on-bad-image must be error or skip, got {on_bad_image!r}")
    if provider.lower() not in PROVIDER_CHOICES:
        raise fail(f"--provider must be one of {', '.join(PROVIDER_CHOICES)}, got {provider!r}")
    if not root.is_dir():
        raise fail(f"--root {root}: no such directory")
    timings: dict[str, float] = {}
    started = time.perf_counter()
    try:
        with stage_progress() as progress:
            progress("reading meta files", 0, 1)
            meta = load_ijb_meta(root, set_name, meta_prefix)
            progress("reading meta files", 1, 1)
            timings["reading_meta"] = time.perf_counter() - started
            embedding = _Embedding(model, provider, batch_size, workers, flip, on_bad_image, features)
            runtime, notes, faces = _face_embeddings(embedding, meta, progress, timings)
            outcome = _evaluate(meta, faces, flip, detector_score, normalize_faces, progress, timings)
    except (ValueError, OSError, RuntimeError) as error:  # bad input, unreadable files, a failing model
        raise fail(one_line(error)) from None
    for note in notes:
        typer.echo(f"note: {note}", err=True)
    if faces.skipped:
        typer.echo(
            f"warning: skipped {len(faces.skipped)} unreadable images; first: {faces.skipped[0]}", err=True
        )
    verification, identification, scores = outcome
    summary = _summary(model, runtime, meta, set_name, faces, flip, detector_score, normalize_faces)
    summary.update(verification.to_dict())
    summary["identification"] = identification
    summary["seconds"] = {key: round(value, 3) for key, value in timings.items()}
    print_verification(summary)
    if identification:
        print_identification(identification)
    if roc if roc is not None else sys.stdout.isatty():
        from femb_cli.verify_plots import terminal_roc

        typer.echo(terminal_roc(verification.fpr, verification.tpr, verification.auc, summary["set"]))
    _write_outputs(summary, scores, json_out, scores_out)


@dataclass(frozen=True)
class _Embedding:
    """How the faces are embedded: the options that reach :func:`_face_embeddings`."""

    model: Path
    provider: str
    batch_size: int
    workers: int
    flip: bool
    on_bad_image: str
    features: Path | None


def _face_embeddings(options: _Embedding, meta, progress, timings):
    """(runtime description, notes, the faces' embeddings): from the cache when it matches (the model
    is then never loaded), else computed."""
    from femb.checkpoint import resolve_checkpoint_path
    from femb.evaluation.ijb import embed_faces
    from femb.evaluation.ijb_cache import load_features, save_features
    from femb.export.calibration import file_sha256
    from femb.inference import is_onnx_model, open_embedder

    started = time.perf_counter()
    model, features = options.model, options.features
    model_file = model if model.is_file() and is_onnx_model(model) else resolve_checkpoint_path(model)
    identity = {
        "model_sha256": file_sha256(model_file),
        "face_list_sha256": file_sha256(meta.meta_file("face_tid_mid")),
        "landmarks_sha256": file_sha256(meta.meta_file("name_5pts_score")),
    }
    notes = []
    if features is not None:
        cached, why = load_features(features, identity, options.flip)
        if cached is not None:
            timings["features_from_cache"] = time.perf_counter() - started
            return (
                f"face features from {features}",
                [f"face features read from {features} (digests match)"],
                cached,
            )
        notes.append(f"computing face features: {why}")
    embedder = open_embedder(model, provider=options.provider, batch_size=options.batch_size)
    notes[:0] = [note for note in (embedder.note, getattr(embedder, "assumption", "")) if note]
    faces = embed_faces(
        meta,
        embedder.embed,
        options.batch_size,
        options.flip,
        options.on_bad_image,
        progress,
        options.workers,
    )
    timings["aligning_and_embedding"] = time.perf_counter() - started
    if features is not None:
        save_features(features, faces, identity)
        notes.append(f"face features written to {features}")
    return embedder.describe(), notes, faces


def _evaluate(meta, faces, flip, detector_score, normalize_faces, progress, timings):
    """Pool the faces into templates, score the pairs; (1:1 result, 1:N results, scores)."""
    from femb.evaluation.identification import identify_from_lists
    from femb.evaluation.ijb import (
        face_features,
        pool_templates,
        require_pooled,
        score_pairs,
        verification_at_far,
    )

    started = time.perf_counter()
    progress("pooling templates", 0, 1)
    per_face = face_features(faces, meta.scores, flip, detector_score, normalize_faces)
    template_ids, matrix = pool_templates(per_face, meta.templates, meta.medias, faces.present)
    require_pooled(meta, template_ids, matrix)
    progress("pooling templates", 1, 1)
    timings["pooling"] = time.perf_counter() - started
    started = time.perf_counter()
    scores = score_pairs(template_ids, matrix, meta.pairs, progress=progress)
    verification = verification_at_far(meta.labels, scores)
    timings["scoring"] = time.perf_counter() - started
    try:
        identification = identify_from_lists(meta, template_ids, matrix)
    except ValueError as error:  # a broken 1:N list must not cost the 1:1 result
        typer.echo(f"warning: 1:N identification skipped: {one_line(error)}", err=True)
        identification = {}
    return verification, identification, scores


def _summary(model, runtime, meta, set_name, faces, flip, detector_score, normalize_faces) -> dict:
    return {
        "model": str(model),
        "runtime": runtime,
        "set": set_name,
        "root": str(meta.root),
        "protocol": {"flip": flip, "detector_score": detector_score, "normalize_faces": normalize_faces},
        "num_faces": int(len(meta.names)),
        "num_templates": int(len(set(meta.templates.tolist()))),
        "skipped_images": len(faces.skipped),
    }


def _write_outputs(summary: dict, scores, json_out: Path | None, scores_out: Path | None) -> None:
    import numpy as np

    try:
        if scores_out is not None:
            scores_out.parent.mkdir(parents=True, exist_ok=True)
            np.save(scores_out, np.asarray(scores, dtype=np.float32), allow_pickle=False)
            typer.echo(f"pair scores written to {scores_out}")
        if json_out is not None:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(json.dumps(summary, indent=2) + "\n")
            typer.echo(f"results written to {json_out}")
    except OSError as error:
        raise fail(f"cannot write results: {one_line(error)}") from None
