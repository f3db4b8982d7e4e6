"""`femb export onnx SOURCE`: the backbone of a run, checkpoint or saved model as one ONNX file, checked."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Annotated

import typer

from femb.errors import one_line
from femb_cli.errors import fail
from femb_cli.progress import progress_bar

INT8_PANEL = "int8 quantization"

export_app = typer.Typer(
    help="Export a trained backbone (the header is stripped) for inference.",
    no_args_is_help=True,
)


@export_app.command("onnx")
def onnx_command(
    source: Annotated[
        Path,
        typer.Argument(
            help="A run directory, a checkpoint (.pt) or a saved model; with --backbone, a state dict "
            "from arcface_torch (backbone.pth) or MagFace."
        ),
    ],
    backbone: Annotated[
        str | None,
        typer.Option(
            help="Export SOURCE as a plain state dict of this backbone: a femb name (iresnet50, "
            "mobilefacenet) or an arcface_torch one (r50, mbf)."
        ),
    ] = None,
    embed_dim: Annotated[
        int | None,
        typer.Option(help="Embedding size of --backbone (default: read from the weights).", min=1),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="The .onnx file (default: exports/<run-name>.onnx)."),
    ] = None,
    fp16: Annotated[
        bool,
        typer.Option(
            "--fp16",
            help="fp16 weights and compute; the input and output stay float32 "
            "(parity bound defaults to 0.999 then).",
        ),
    ] = False,
    normalize_in_graph: Annotated[
        bool,
        typer.Option(
            "--normalize-in-graph",
            help="The graph takes float32 N×3×112×112 raw RGB pixels (0-255) and does "
            "(x-127.5)/127.5 itself, in nodes insightface recognises (mean 0, std 1).",
        ),
    ] = False,
    opset: Annotated[int, typer.Option(help="ONNX opset, 17 up to the newest the exporter writes.")] = 17,
    min_cosine: Annotated[
        float | None,
        typer.Option(
            help="Smallest acceptable cosine between ONNX and PyTorch embeddings "
            "(default: 0.9999; 0.999 with --fp16).",
            min=-1.0,
            max=1.0,
        ),
    ] = None,
    exporter: Annotated[
        str,
        typer.Option(help="torchscript (fast, default) | dynamo (torch.export; needs onnxscript) | auto."),
    ] = "torchscript",
    meta: Annotated[
        list[str] | None,
        typer.Option("--meta", help="Extra metadata property KEY=VALUE (repeatable)."),
    ] = None,
    int8: Annotated[
        bool,
        typer.Option(
            "--int8",
            help="Write a statically quantized int8 model (QDQ, per-channel weights), gated on "
            "verification against the fp32 model.",
            rich_help_panel=INT8_PANEL,
        ),
    ] = False,
    calibration: Annotated[
        str | None,
        typer.Option(
            help="Calibration images for --int8: an image folder, a .bin, a RecordIO set or 'synthetic'.",
            rich_help_panel=INT8_PANEL,
        ),
    ] = None,
    calibration_images: Annotated[
        int,
        typer.Option(
            help="Calibration images drawn (seeded).", min=1, max=100_000, rich_help_panel=INT8_PANEL
        ),
    ] = 512,
    calibration_method: Annotated[
        str | None,
        typer.Option(
            help="minmax | entropy | percentile (default: the method femb's measurement chose).",
            rich_help_panel=INT8_PANEL,
        ),
    ] = None,
    gate_pairs: Annotated[
        Path | None,
        typer.Option(
            help="Held-out pairs for the int8 gate: a .bin or an image folder (default: the run's "
            "validation set).",
            rich_help_panel=INT8_PANEL,
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Write an int8 model that fails its gate (the figures go into its metadata), or an "
            "output not ending in .onnx.",
        ),
    ] = False,
) -> None:
    """Export the backbone of SOURCE to ONNX, run onnx.checker and an onnxruntime-vs-PyTorch parity check.

    The model is written only when both pass; a parity below --min-cosine exits with status 1. With
    --int8, the quantized model is also verified against the fp32 one on held-out pairs and written
    only when it loses at most 0.5 points of accuracy and 1 point of TAR at FAR 1e-3 (else exit 1).
    """
    from femb.export import ExportError, ParityError, export_onnx, format_cosine
    from femb.export.graph import check_opset
    from femb.inference import is_onnx_model

    extras = _parse_meta(meta or [])
    try:
        check_opset(opset, exporter if exporter in ("torchscript", "dynamo", "auto") else "auto")
    except ValueError as error:
        raise fail(f"--opset: {error}") from None
    _check_int8_flags(int8, fp16, calibration, calibration_method)
    if output is not None and output.suffix.lower() != ".onnx" and not force:
        raise fail(f"--output {output} does not end in .onnx; pass --force to write it anyway")
    if not source.exists():
        raise fail(f"{source}: no such file or directory")
    if source.is_file() and not zipfile.is_zipfile(source) and is_onnx_model(source):
        raise fail(f"{source} is already an ONNX model; export takes a run directory or a checkpoint")
    if backbone is not None:
        export_source, output, run_name = _foreign_source(source, backbone, embed_dim, output, extras)
    else:
        if embed_dim is not None:
            raise fail("--embed-dim goes with --backbone (a checkpoint records its own)")
        export_source, output = _checkpoint_source(source, output)
        run_name = None
    int8_options = None
    if int8:
        int8_options = _int8_options(
            export_source, calibration, calibration_images, calibration_method, gate_pairs, force
        )
        for note in int8_options.calibration.notes:
            typer.echo(f"note: {note}", err=True)
    try:
        with progress_bar("exporting", unit="stages") as update:
            report = export_onnx(
                export_source,
                output,
                fp16=fp16,
                normalize_in_graph=normalize_in_graph,
                opset=opset,
                parity_bound=min_cosine,
                exporter=exporter,
                metadata=extras,
                run_name=run_name,
                on_stage=update,
                any_suffix=force,
                int8=int8_options,
            )
    except ParityError as error:
        _print_parity(error.report)
        _print_int8(error.report)
        raise fail(str(error), code=1) from None
    except (ExportError, ValueError) as error:
        raise fail(str(error)) from None
    except (RuntimeError, KeyError, TypeError) as error:  # weights that do not fit the recorded spec
        raise fail(f"{source}: cannot rebuild the backbone ({one_line(error, limit=200)})") from None

    if report.header:
        typer.echo(
            f"stripped header {report.header}: {report.header_parameters_removed:,} parameters removed "
            f"(backbone keeps {report.num_parameters:,})"
        )
    else:
        typer.echo(f"no header in the checkpoint (backbone: {report.num_parameters:,} parameters)")
    for note in report.notes:
        typer.echo(f"note: {note}")
    precision = {
        "fp16": "fp16 weights, float32 interface",
        "int8": "int8 weights and activations (QDQ), float32 interface",
    }.get(report.precision, "fp32")
    typer.echo(
        f"exported {report.path} ({report.file_size / 1e6:.1f} MB, opset {report.opset}, {precision}, "
        f"{report.exporter} exporter)"
    )
    typer.echo(f"  input  'input'     {report.input_spec}, batch axis dynamic")
    typer.echo(f"  output 'embedding' float32 N×{report.embed_dim}")
    typer.echo("onnx.checker: ok")
    _print_parity(report)
    typer.echo(f"parity ok: min cosine {format_cosine(report.min_cosine)} ≥ {report.min_cosine_bound}")
    _print_int8(report)


def _check_int8_flags(int8: bool, fp16: bool, calibration: str | None, method: str | None) -> None:
    from femb.export.quantize import CALIBRATION_METHODS

    if not int8:
        if calibration is not None:
            raise fail("--calibration goes with --int8")
        return
    if fp16:
        raise fail("--int8 and --fp16 exclude each other: the int8 model is quantized from the fp32 one")
    if calibration is None:
        raise fail("--int8 needs --calibration DATA (an image folder, a .bin, a RecordIO set or synthetic)")
    if method is not None and method not in CALIBRATION_METHODS:
        raise fail(f"--calibration-method must be one of {', '.join(CALIBRATION_METHODS)}, got {method!r}")


def _int8_options(export_source, calibration, count, method, gate_pairs, force):
    """Calibration images and gate pairs, loaded before the export starts so that bad ones fail fast."""
    from femb.export.calibration_images import load_calibration_images
    from femb.export.int8 import Int8Options, validation_set_of
    from femb.export.quantize import DEFAULT_METHOD, quantization_tools

    try:
        quantization_tools()
        images = load_calibration_images(calibration, count)
        if gate_pairs is not None:
            pairs, name = _gate_pairs(gate_pairs), str(gate_pairs)
        elif isinstance(export_source, dict):
            pairs, name = validation_set_of(export_source)
        else:
            raise fail("--int8 on a state dict needs --gate-pairs (a .bin or an image folder)")
    except ValueError as error:  # ExportError (no quantization tools) and unreadable data alike
        raise fail(one_line(error)) from None
    return Int8Options(images, pairs, name, method=method or DEFAULT_METHOD, force=force)


def _gate_pairs(path: Path):
    from femb.data import ImageFolderDataset, load_verification_bin

    if not path.exists():
        raise fail(f"--gate-pairs {path}: no such file or folder")
    if path.is_dir():
        return ImageFolderDataset(path)
    if path.suffix.lower() != ".bin":
        raise fail(f"--gate-pairs {path}: expected a .bin pairs file or an image folder")
    return load_verification_bin(path)


def _print_int8(report) -> None:
    if report.int8 is None:
        return
    for note in report.int8.gate.notes:
        typer.echo(f"note: {note}", err=True)
    for line in report.int8.gate.lines():
        typer.echo(line)
    int8 = report.int8
    typer.echo(
        f"throughput on this machine (batch 32, CPU): fp32 {int8.fp32_images_per_second:,.1f} images/s, "
        f"int8 {int8.int8_images_per_second:,.1f} images/s ({int8.speedup:.2f}×)"
    )
    verdict = "passed" if int8.gate.passed else "FAILED"
    if int8.forced:
        verdict += " (written anyway: --force)"
    typer.echo(
        f"int8 gate {verdict}; calibrated on {int8.calibration_images} images of {int8.calibration_name} "
        f"({int8.method}, sha256 {int8.calibration_sha256[:12]}…)"
    )


FOREIGN_HINT = "for arcface_torch or MagFace weights, pass --backbone NAME (e.g. r50, mbf)"


def _checkpoint_source(source: Path, output: Path | None):
    """A femb checkpoint or run directory: the loaded payload and the output path."""
    from femb.checkpoint import CheckpointError, load_checkpoint
    from femb.export import default_output_path

    if source.is_file() and not zipfile.is_zipfile(source):
        # torch.save writes zip archives; anything else would only give a cryptic unpickling error.
        raise fail(f"{source}: not a femb checkpoint (nor a run directory); {FOREIGN_HINT}")
    try:
        payload = load_checkpoint(source)
    except CheckpointError as error:
        hint = f"; {FOREIGN_HINT}" if "not a femb checkpoint" in str(error) else ""
        raise fail(f"{error}{hint}") from None
    spec = payload.get("backbone") or {}
    if not isinstance(spec, dict) or "name" not in spec:
        raise fail(f"{payload['path']}: the checkpoint holds no backbone")
    output = output or default_output_path(source, payload.get("run_name"))
    training = payload.get("training") or {}
    step = f", step {training['step']}" if training.get("step") is not None else ""
    embed_dim = spec.get("kwargs", {}).get("embed_dim", "?")
    typer.echo(f"loaded {payload['path']} ({spec['name']}, {embed_dim}-d{step}); exporting to {output}")
    return payload, output


def _foreign_source(source: Path, backbone: str, embed_dim: int | None, output: Path | None, extras: dict):
    """A state dict (arcface_torch, MagFace, femb) built into ``backbone``: the module and the output path."""
    from femb.backbones.weights import backbone_from_weights
    from femb.export import default_output_path
    from femb.export.onnx_export import name_from_path

    try:
        model, weights = backbone_from_weights(backbone, source, embed_dim)
    except ValueError as error:  # WeightsError, or an unknown backbone name listing the choices
        raise fail(str(error)) from None
    spec = model.femb_spec
    run_name = name_from_path(source)
    output = output or default_output_path(source, run_name)
    extras.setdefault("weights_source", weights.describe())
    typer.echo(
        f"loaded {weights.path} ({weights.layout}) into {spec['name']} "
        f"({spec['kwargs']['embed_dim']}-d); exporting to {output}"
    )
    return model, output, run_name


def _print_parity(report) -> None:
    from femb.export import format_cosine

    for result in report.parity:
        typer.echo(
            f"parity batch {result.batch_size:>3}: max |ONNX − PyTorch| {result.max_abs_diff:.3g}, "
            f"min cosine {format_cosine(result.min_cosine)}"
        )


def _parse_meta(items: list[str]) -> dict[str, str]:
    extras = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise fail(f"--meta expects KEY=VALUE, got {item!r}")
        extras[key.strip()] = value
    return extras
