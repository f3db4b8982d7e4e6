"""What the options of `femb verify pairs` decide: the checks made before any work (options that
need no file, a calibration set that can resolve its FAR), the calibrated threshold written into
the model, and the exit status (--fail-under, --fail-over-far)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import typer

from femb.errors import one_line
from femb_cli.errors import fail
from femb_cli.verify_sources import PairsSet


def check_options(similarity: str, provider: str, plot: Path | None, far: list[float] | None) -> tuple:
    """The options that need no file, checked first; the target FARs."""
    from femb.evaluation import SIMILARITIES, far_targets
    from femb.inference import PROVIDER_CHOICES

    if similarity not in SIMILARITIES:
        raise fail(f"--similarity must be one of {', '.join(SIMILARITIES)}, got {similarity!r}")
    if provider.lower() not in PROVIDER_CHOICES:
        raise fail(f"--provider must be one of {', '.join(PROVIDER_CHOICES)}, got {provider!r}")
    if plot is not None and importlib.util.find_spec("matplotlib") is None:
        raise fail("--plot needs matplotlib, which is not installed: pip install femb[plot]")
    try:
        return far_targets(far)
    except ValueError as error:
        raise fail(f"--{error}") from None  # the library names the field, far: the flag is --far


def check_calibration_set(sets: list[PairsSet], far: float) -> None:
    from femb.evaluation import require_resolvable

    if len(sets) != 1:
        raise fail(f"--calibrate writes one threshold: give one pairs set, not {len(sets)}")
    try:
        require_resolvable(sets[0].pairs.issame, far)
    except ValueError as error:
        raise fail(f"--calibrate: {one_line(error)}") from None


def write_calibration(model: Path, pairs_set: PairsSet, point, similarity: str, flip: bool) -> dict:
    """Write the threshold of ``point`` (the first target FAR) into MODEL; its metadata as written."""
    from femb.evaluation import calibrate
    from femb.export import ExportError, format_cosine, write_threshold

    try:
        chosen = calibrate(point, similarity, flip, pairs_set.path, pairs_set.pairs)
        parity = write_threshold(model, chosen)
    except (ExportError, ValueError, OSError) as error:
        raise fail(f"--calibrate: {one_line(error)}") from None
    typer.echo(
        f"threshold {chosen.describe()} written to {model} "
        f"(sha256 {chosen.calibration_sha256[:12]}…; embeddings unchanged: "
        f"min cosine {format_cosine(parity.min_cosine)}, max |Δ| {parity.max_abs_diff:.3g})"
    )
    return chosen.to_metadata()


def exit_status(rows: list[dict], fail_under: float | None, fail_over_far: float | None) -> None:
    """Status 1, with one line, for the first set below --fail-under or above --fail-over-far."""
    minimum = None if fail_under is None else (fail_under / 100.0 if fail_under > 1 else fail_under)
    for row in rows:
        prefix = f"{row['set']}: " if len(rows) > 1 else ""
        accuracy = row["accuracy"]
        if minimum is not None and not (accuracy is not None and accuracy >= minimum):
            raise fail(f"{prefix}accuracy {accuracy:.4f} is below --fail-under {minimum:.4f}", code=1)
        achieved = row.get("far_at_model_threshold")
        if fail_over_far is not None and not (achieved is not None and achieved <= fail_over_far):
            shown = "not measured" if achieved is None else f"{achieved:.4g}"
            raise fail(
                f"{prefix}FAR at the model's threshold {shown} is above --fail-over-far {fail_over_far:g}",
                code=1,
            )
