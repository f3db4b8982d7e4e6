"""`femb embed MODEL IMAGES`: embeddings of many face images into one .npy or .parquet file.

Each row holds the image's path, the raw embedding norm (MagFace's quality score) and the
embedding (L2-normalised unless ``--raw``). The ``.npy`` file is a structured array
(``path``, ``norm``, ``embedding``) that ``numpy.load`` reads without pickle; the ``.parquet``
file has the same three columns (pandas). Unreadable images are skipped and counted.
"""

from __future__ import annotations

import glob
import io
import os
from pathlib import Path
from typing import Annotated

import typer

from femb_cli.errors import fail

OUTPUT_SUFFIXES = (".npy", ".parquet")
MODEL_INPUT = "Model input (ONNX models without femb metadata)"


def embed_command(
    model: Annotated[Path, typer.Argument(help="An .onnx model, or a checkpoint / run directory.")],
    images: Annotated[
        str,
        typer.Argument(
            help="A folder (searched recursively), a list file (one path per line, relative to the "
            "list's folder) or a glob pattern (quote it: 'faces/**/*.jpg')."
        ),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The .npy or .parquet file to write.")
    ] = Path("embeddings.npy"),
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.", min=1)] = 64,
    provider: Annotated[
        str, typer.Option(help="auto | cuda | cpu (onnxruntime provider, or the PyTorch device).")
    ] = "auto",
    flip: Annotated[
        bool, typer.Option("--flip/--no-flip", help="Add the mirrored image's embedding.")
    ] = False,
    raw: Annotated[
        bool,
        typer.Option("--raw", help="Store raw embeddings (default: L2-normalised; the norm has its column)."),
    ] = False,
    mean: Annotated[
        float | None, typer.Option(help="Pixel mean the model subtracts.", rich_help_panel=MODEL_INPUT)
    ] = None,
    std: Annotated[
        float | None,
        typer.Option(help="Pixel std the model divides by.", min=1e-12, rich_help_panel=MODEL_INPUT),
    ] = None,
    bgr: Annotated[
        bool | None,
        typer.Option("--bgr/--rgb", help="Colour order the model takes.", rich_help_panel=MODEL_INPUT),
    ] = None,
    json_out: Annotated[
        Path | None,
        typer.Option("--json", help="Write the run's summary (counts, precision, images/s) as JSON."),
    ] = None,
) -> None:
    """Embed every image of IMAGES with MODEL; write paths, raw norms and embeddings to one file."""
    from femb.inference import (
        PROVIDER_CHOICES,
        InferenceError,
        ModelLoadError,
        ProviderError,
        Throughput,
        open_embedder,
    )

    if output.suffix.lower() not in OUTPUT_SUFFIXES:
        raise fail(f"--output must end in .npy or .parquet, got {output.name}")
    if output.suffix.lower() == ".parquet":
        _require_parquet_engine()
    if provider.lower() not in PROVIDER_CHOICES:
        raise fail(f"--provider must be one of {', '.join(PROVIDER_CHOICES)}, got {provider!r}")
    paths = collect_images(images)
    if not paths:
        raise fail(f"no images found in {images}")
    try:
        embedder = open_embedder(model, provider=provider, batch_size=batch_size, mean=mean, std=std, bgr=bgr)
    except (ModelLoadError, ProviderError, ValueError) as error:
        raise fail(str(error)) from None
    for note in model_notes(embedder):
        typer.echo(f"note: {note}", err=True)
    meter = Throughput()
    try:
        kept, vectors, skipped = embed_paths(embedder, paths, batch_size, flip, meter)
    except (InferenceError, ValueError) as error:
        raise fail(str(error)) from None
    if not kept:
        raise fail(f"none of the {len(paths)} images could be read (first: {skipped[0][1]})")
    write_embeddings(output, kept, vectors, normalize=not raw)
    typer.echo(
        f"embedded {len(kept):,} images ({vectors.shape[1]}-d, {embedder.describe()}) → {output}"
        + (f"; skipped {len(skipped):,} unreadable" if skipped else "")
    )
    typer.echo(f"model: {embedder.precision}, {meter.describe()} (time in the model, flip included)")
    if json_out is not None:
        summary = {
            "model": str(model),
            "output": str(output),
            "runtime": embedder.describe(),
            "provider": embedder.provider,
            "images": len(kept),
            "skipped": len(skipped),
            "embed_dim": int(vectors.shape[1]),
            "flip": bool(flip),
            **meter.to_dict(precision=embedder.precision),
        }
        _write_json(json_out, summary)
    for path, reason in skipped[:5]:
        typer.echo(f"skipped {path}: {reason}", err=True)
    if len(skipped) > 5:
        typer.echo(f"… and {len(skipped) - 5:,} more unreadable images", err=True)


def model_notes(embedder) -> list[str]:
    """The notes to print on loading a model: the provider's, and the input convention assumed for a
    model without femb metadata with the flags that override it (``femb verify pairs`` prints them too)."""
    notes = [embedder.note] if embedder.note else []
    assumption = getattr(embedder, "assumption", "")
    if assumption:
        notes.append(f"{assumption}; override with --mean, --std, --bgr")
    return notes


def collect_images(spec: str) -> list[Path]:
    """The images named by ``spec``: a folder (recursive), a list file, or a glob pattern; sorted."""
    from femb.data import IMAGE_EXTENSIONS

    path = Path(spec)
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if path.is_file():
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            return [path]
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        entries = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        return [p if p.is_absolute() else path.parent / p for p in map(Path, entries)]
    if glob.has_magic(spec):
        return sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
    raise fail(f"{spec}: no such folder, list file or image, and not a glob pattern")


def embed_paths(embedder, paths: list[Path], batch_size: int, flip: bool, meter=None):
    """Raw embeddings of the readable images, batched, with a progress bar; the unreadable ones listed.

    ``meter``: a :class:`femb.inference.Throughput` that counts the images and the time in the model."""
    import contextlib

    import numpy as np
    import torch

    from femb.data.transforms import load_image, to_face_tensor
    from femb_cli.progress import progress_bar

    kept: list[Path] = []
    chunks: list[np.ndarray] = []
    skipped: list[tuple[Path, str]] = []
    with progress_bar("embedding") as update:
        for start in range(0, len(paths), batch_size):
            faces, names = [], []
            for path in paths[start : start + batch_size]:
                try:
                    faces.append(to_face_tensor(load_image(path)))
                    names.append(path)
                except (ValueError, OSError) as error:  # ImageLoadError is a ValueError
                    skipped.append((path, str(error)))
            if faces:
                batch = torch.stack(faces)
                with meter.timing(len(batch)) if meter is not None else contextlib.nullcontext():
                    chunks.append(embedder.embed(batch, flip=flip))
                kept.extend(names)
            update(min(start + batch_size, len(paths)), len(paths))
    vectors = np.concatenate(chunks) if chunks else np.zeros((0, 0), dtype=np.float32)
    return kept, vectors, skipped


def write_embeddings(output: Path, paths: list[Path], vectors, normalize: bool = True) -> None:
    """One file, written atomically: structured .npy or .parquet with ``path``, ``norm``, ``embedding``."""
    import numpy as np

    from femb.fileio import atomic_write_bytes
    from femb.inference import embedding_norms

    vectors = np.asarray(vectors, dtype=np.float32)
    norms = embedding_norms(vectors)
    if normalize:
        vectors = vectors / np.maximum(norms, 1e-12)[:, None]
    names = [os.fspath(p) for p in paths]
    buffer = io.BytesIO()
    if output.suffix.lower() == ".npy":
        width = max(1, max(len(n) for n in names))
        dtype = [("path", f"U{width}"), ("norm", "f4"), ("embedding", "f4", (vectors.shape[1],))]
        table = np.empty(len(names), dtype=dtype)
        table["path"], table["norm"], table["embedding"] = names, norms, vectors
        np.save(buffer, table, allow_pickle=False)
    else:
        import pandas as pd

        frame = pd.DataFrame({"path": names, "norm": norms, "embedding": list(vectors)})
        frame.to_parquet(buffer, index=False)
    try:
        atomic_write_bytes(output, buffer.getvalue())
    except OSError as error:
        raise fail(f"cannot write {output}: {error}") from None


def _write_json(path: Path, summary: dict) -> None:
    import json

    from femb.fileio import atomic_write_bytes

    try:
        atomic_write_bytes(path, (json.dumps(summary, indent=2) + "\n").encode())
    except OSError as error:
        raise fail(f"cannot write {path}: {error}") from None


def _require_parquet_engine() -> None:
    import importlib.util

    if not any(importlib.util.find_spec(name) for name in ("pyarrow", "fastparquet")):
        raise fail("writing .parquet needs pyarrow (pip install pyarrow); or write .npy")
