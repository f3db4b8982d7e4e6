"""`femb data`: pack an image folder as InsightFace RecordIO, inspect a data set, build verification pairs."""

from __future__ import annotations

import json
import statistics
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from femb.errors import one_line
from femb_cli.errors import fail

data_app = typer.Typer(
    help="Pack, inspect and pair face data sets (InsightFace RecordIO, image folders, verification .bin).",
    no_args_is_help=True,
)


@contextmanager
def _warnings_as_lines() -> Iterator[None]:
    """Library warnings (skipped images, shrunk pair counts) become `warning:` lines on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        yield
    for warning in caught:
        typer.echo(f"warning: {one_line(warning.message)}", err=True)


@contextmanager
def _data_errors() -> Iterator[None]:
    """Bad input of any kind ends as one `error:` line, never a traceback."""
    from femb.data.recordio_pack import ExistingSetError

    try:
        yield
    except ExistingSetError as error:  # the library says "overwrite"; here it is a flag
        raise fail(f"{error.folder}: already holds a RecordIO set; pass --overwrite to replace it") from None
    except (ValueError, OSError) as error:  # DataFormatError, ImageLoadError, UnsafePickleError included
        raise fail(one_line(error)) from None


@data_app.command("pack")
def pack_command(
    image_folder: Annotated[Path, typer.Argument(help="One folder per identity, images inside.")],
    out_dir: Annotated[Path, typer.Argument(help="Where train.rec, train.idx and property go.")],
    quality: Annotated[
        int, typer.Option(help="JPEG quality of the packed 112×112 faces.", min=1, max=100)
    ] = 95,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a RecordIO set already in OUT_DIR.")
    ] = False,
) -> None:
    """Write IMAGE_FOLDER as an InsightFace RecordIO training set in OUT_DIR (readable by femb and mxnet)."""
    from femb.data import pack_image_folder
    from femb_cli.progress import progress_bar

    with _data_errors(), _warnings_as_lines(), progress_bar("packing") as update:
        summary = pack_image_folder(image_folder, out_dir, quality, on_image=update, overwrite=overwrite)
    typer.echo(f"packed {summary.images} images of {summary.identities} identities into {out_dir}")
    if summary.skipped:
        typer.echo(f"skipped {summary.skipped} unreadable images; first: {summary.first_bad}", err=True)


@data_app.command("inspect")
def inspect_command(
    path: Annotated[Path, typer.Argument(help="An image folder, a RecordIO folder (or .rec) or a .bin.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the facts as JSON.")] = False,
    limit: Annotated[
        int, typer.Option(help="Decode at most this many images for sizes and bad records (0: all).", min=0)
    ] = 0,
) -> None:
    """Images, identities, images per identity, image sizes and the first bad image of a data set."""
    if not path.exists():
        raise fail(f"{path}: no such file or directory")
    with _data_errors(), _warnings_as_lines():
        facts = inspect_path(path, limit)
    if as_json:
        typer.echo(json.dumps(facts, indent=2))
        return
    typer.echo(f"{facts['kind']:<12} {facts['path']}")
    typer.echo(f"images       {facts['images']}")
    if facts.get("identities") is not None:
        per = facts["images_per_identity"]
        typer.echo(
            f"identities   {facts['identities']}  (images each: min {per['min']}, median {per['median']}, "
            f"max {per['max']})"
        )
    if facts.get("pairs") is not None:
        typer.echo(f"pairs        {facts['pairs']}  ({facts['same']} same, {facts['different']} different)")
    sizes = ", ".join(f"{size} ×{count}" for size, count in facts["image_sizes"].items())
    typer.echo(f"image sizes  {sizes or 'none read'}  ({facts['checked']} images checked)")
    typer.echo(
        f"bad images   {facts['bad']}" + (f"; first: {facts['first_bad']}" if facts["first_bad"] else "")
    )


def inspect_path(path: Path, limit: int = 0) -> dict[str, Any]:
    """The facts `femb data inspect` prints, as a dict (JSON-ready)."""
    from femb.data import ImageFolderDataset, RecordIODataset, load_verification_bin
    from femb.data.recordio_dataset import recordio_paths

    if recordio_paths(path) is not None:
        dataset = RecordIODataset(path)
        facts = _identity_facts("recordio", path, dataset.labels)
        sources = ((dataset.where(i), lambda i=i: dataset.encoded_image(i)) for i in range(len(dataset)))
    elif path.is_dir():
        folder = ImageFolderDataset(path)
        facts = _identity_facts("imagefolder", path, folder.labels)
        sources = ((str(p), p.read_bytes) for p, _ in folder.samples)
    else:
        pairs = load_verification_bin(path)
        facts = {"kind": "bin", "path": str(path), "images": len(pairs.images), "identities": None}
        facts.update(pairs=len(pairs), same=pairs.num_same, different=pairs.num_different)
        encoded = pairs.images.encoded
        sources = ((f"{path} image {i}", lambda i=i: encoded[i]) for i in range(len(encoded)))
    facts.update(_check_images(sources, limit))
    return facts


def _identity_facts(kind: str, path: Path, labels: list[int]) -> dict[str, Any]:
    counts = sorted(Counter(labels).values())
    return {
        "kind": kind,
        "path": str(path),
        "images": len(labels),
        "identities": len(counts),
        "images_per_identity": {"min": counts[0], "median": statistics.median(counts), "max": counts[-1]},
    }


def _check_images(sources: Iterator[tuple[str, Callable[[], bytes]]], limit: int) -> dict[str, Any]:
    """Decode each image fully (a header alone hides truncation); count sizes and bad images."""
    import io

    from PIL import Image

    from femb.data.transforms import IMAGE_ERRORS

    sizes: Counter[str] = Counter()
    checked = bad = 0
    first_bad = None
    for name, read in sources:
        if limit and checked >= limit:
            break
        checked += 1
        try:
            with Image.open(io.BytesIO(read())) as image:
                image.load()
                sizes[f"{image.width}x{image.height}"] += 1
        except IMAGE_ERRORS as error:  # PIL's errors (a decompression bomb too) and DataFormatError
            bad += 1
            first_bad = first_bad or f"{name}: {one_line(error)}"
    return {"image_sizes": dict(sizes.most_common()), "checked": checked, "bad": bad, "first_bad": first_bad}


@data_app.command("pairs")
def pairs_command(
    image_folder: Annotated[Path, typer.Argument(help="One folder per identity, images inside.")],
    pairs_out: Annotated[
        Path | None,
        typer.Option(help="Write LFW's pairs.txt here (numbers count each identity's sorted images)."),
    ] = None,
    bin_out: Annotated[
        Path | None, typer.Option("--bin-out", "--bin", help="Write a verification .bin here.")
    ] = None,
    num_pairs: Annotated[int, typer.Option(help="Pairs to draw, half same, half different.", min=20)] = 6000,
    folds: Annotated[int, typer.Option(help="Folds (balanced, contiguous).", min=1)] = 10,
    seed: Annotated[int, typer.Option(help="Seed of the pair draw.")] = 0,
    quality: Annotated[
        int, typer.Option(help="JPEG quality of the .bin's 112×112 faces.", min=1, max=100)
    ] = 95,
) -> None:
    """Draw balanced, seeded verification pairs from IMAGE_FOLDER: LFW pairs.txt and/or a .bin."""
    from femb.data import ImageFolderDataset, pairs_from_labelled, write_verification_bin
    from femb.data.pairs import lfw_image_names, lfw_order, write_lfw_pairs
    from femb.data.recordio_pack import encode_face

    if pairs_out is None and bin_out is None:
        raise fail("give --pairs-out, --bin-out or both")
    with _data_errors(), _warnings_as_lines():
        folder = ImageFolderDataset(image_folder)
        pairs = lfw_order(pairs_from_labelled(folder, num_pairs=num_pairs, seed=seed), folds=folds)
        sample_of = pairs.images.indices  # pair image k is folder sample sample_of[k]
        if pairs_out is not None:
            names = lfw_image_names(folder.root, [folder.samples[s][0] for s in sample_of])
            write_lfw_pairs(pairs_out, pairs, names)
            typer.echo(f"wrote {len(pairs)} pairs in {folds} folds to {pairs_out}")
        if bin_out is not None:
            encoded = [encode_face(folder.samples[s][0], quality) for s in sample_of]
            images = [encoded[k] for pair in pairs.pairs.tolist() for k in pair]
            write_verification_bin(bin_out, images, pairs.issame)
            typer.echo(f"wrote {len(pairs)} pairs ({len(encoded)} distinct images) to {bin_out}")
