"""`femb data align` (aligned 112×112 crops from five-point landmarks) and `femb data ijb-synthetic`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from femb.errors import one_line
from femb_cli.errors import fail


def align_command(
    src: Annotated[Path, typer.Argument(help="Folder the landmarks file's image paths are relative to.")],
    dst: Annotated[Path, typer.Argument(help="Output folder: each aligned crop at the same relative path.")],
    landmarks: Annotated[
        Path,
        typer.Option(
            help="Text file, one line per image: 'relative/path.jpg x1 y1 x2 y2 x3 y3 x4 y4 x5 y5' "
            "(left eye, right eye, nose, left and right mouth corner, in pixels; an 11th number, "
            "a detector score, is allowed and ignored; blank and # lines are skipped).",
        ),
    ],
    size: Annotated[int, typer.Option(help="Side of the square crops (ArcFace: 112).", min=16)] = 112,
    on_bad_image: Annotated[
        str, typer.Option(help="error | skip: an unreadable image stops the run, or is left out and counted.")
    ] = "error",
) -> None:
    """Write DST/<path> for every line of --landmarks: SRC/<path> aligned to the ArcFace template.

    The transform is the least-squares similarity from the five points to ArcFace's destination
    points (the one `femb verify ijb` uses); bilinear, black outside the source image. Crops are
    written as PNG when the source's extension is not .jpg/.jpeg/.png.
    """
    from femb.data.align import align_face, read_landmarks
    from femb.data.transforms import ImageLoadError, load_image
    from femb_cli.progress import progress_bar

    if on_bad_image not in ("error", "skip"):
        raise fail(f"--on-bad-image must be error or skip, got {on_bad_image!r}")
    if not src.is_dir():
        raise fail(f"SRC {src}: no such directory")
    try:
        entries = read_landmarks(landmarks)
    except ValueError as error:
        raise fail(one_line(error)) from None
    if not entries:
        raise fail(f"{landmarks}: no landmark lines")
    skipped: list[str] = []
    with progress_bar("aligning", unit="faces") as update:
        for done, entry in enumerate(entries, start=1):
            where = f"{landmarks}:{entry.line}"
            try:
                crop = align_face(load_image(src / entry.path), entry.points, size)
            except ImageLoadError as error:
                if on_bad_image == "skip":
                    skipped.append(entry.path)
                    continue
                raise fail(f"{one_line(error)} (listed at {where})") from None
            except ValueError as error:
                raise fail(f"{where}: {one_line(error)}") from None
            _save(crop, dst / _output_name(entry.path))
            update(done, len(entries))
    typer.echo(f"aligned {len(entries) - len(skipped)} faces into {dst} ({size}×{size})")
    if skipped:
        typer.echo(f"warning: skipped {len(skipped)} unreadable images; first: {skipped[0]}", err=True)


def _output_name(path: str) -> str:
    kept = Path(path).suffix.lower() in (".jpg", ".jpeg", ".png")
    return path if kept else str(Path(path).with_suffix(".png"))


def _save(crop, path: Path) -> None:
    from PIL import Image

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(crop).save(path, quality=95)
    except OSError as error:
        raise fail(f"cannot write {path}: {one_line(error)}") from None


def ijb_synthetic_command(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write: meta/ and loose_crop/ inside.")],
    set_name: Annotated[
        str, typer.Option("--set", help="Set name; the meta files' prefix in lower case.")
    ] = "IJBC",
    subjects: Annotated[int, typer.Option(help="Subjects (identities).", min=2)] = 20,
    templates: Annotated[int, typer.Option(help="Templates per subject.", min=2)] = 2,
    media: Annotated[int, typer.Option(help="Media per template.", min=1)] = 2,
    faces: Annotated[int, typer.Option(help="Faces per media (frames of one video).", min=1)] = 2,
    seed: Annotated[int, typer.Option(help="Seed of the faces and of their placement.")] = 0,
) -> None:
    """Write a tiny IJB-style set from femb's synthetic faces, in InsightFace's layout (for tests and docs).

    Loose crops (150-200 px) hold each face rotated, scaled and shifted, with its true five points;
    every pair of templates is listed; 1:N lists split the subjects into galleries G1 and G2.
    """
    from femb.data.ijb_synthetic import write_ijb_synthetic

    try:
        summary = write_ijb_synthetic(out_dir, set_name, subjects, templates, media, faces, seed)
    except (ValueError, OSError) as error:
        raise fail(one_line(error)) from None
    typer.echo(
        f"wrote {summary.faces} faces, {summary.templates} templates of {summary.subjects} subjects and "
        f"{summary.pairs} pairs ({summary.genuine} genuine) to {out_dir}"
    )
