"""What `femb verify pairs` reports and writes about thresholds and quality.

- ``--far``: per target false-accept rate, the threshold on all pairs and the k-fold TAR there;
- a model that carries a calibrated threshold: the FAR and FRR it achieves on these pairs, and a
  one-line warning when the FAR is more than 3× off its target (calibration drift);
- ``--calibrate``: the threshold at the first ``--far`` written into the ONNX model;
- ``--quality-curve``: FNMR at a fixed FMR as the lowest-quality pairs are rejected, a pair's
  quality being the lower raw norm (MagFace's quality score) of its two images' own, unflipped
  embeddings (the ``norm`` column of ``femb embed``).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import typer

from femb.errors import one_line
from femb_cli.errors import fail

DRIFT_FACTOR = 3.0
REJECT_FRACTIONS = tuple(i / 20 for i in range(11))  # 0%, 5%, ..., 50%
DEFAULT_FARS = (1e-3, 1e-4)


def far_targets(values: list[float] | None) -> tuple[float, ...]:
    """The ``--far`` values (default 1e-3 and 1e-4), each checked to lie in (0, 1)."""
    for value in values or ():
        if not 0.0 < value < 1.0:
            raise fail(f"--far must lie between 0 and 1 (exclusive), got {value:g}")
    return tuple(dict.fromkeys(values)) if values else DEFAULT_FARS


def stored_threshold(embedder):
    """The model's calibrated threshold (None when it carries none); a malformed one is an error."""
    try:
        return getattr(embedder, "threshold", None)
    except ValueError as error:
        raise fail(one_line(error)) from None


def operating_points(result, fars, folds: int) -> tuple[list, dict]:
    from femb.evaluation import far_operating_points

    points = far_operating_points(result.scores, result.issame, fars, folds, result.higher_is_same)
    flat: dict = {}
    for point in points:
        flat.update(point.to_dict())
    return points, flat


def threshold_check(stored, result, similarity: str, flip: bool) -> dict:
    """FAR and FRR at the model's own threshold on these pairs, and the drift warning if any."""
    from femb.evaluation import rates_at_threshold

    if stored is None:
        return {}
    out = {
        "model_threshold": stored.threshold,
        "model_threshold_far": stored.far,
        "model_threshold_similarity": stored.similarity,
        "model_threshold_flip": stored.flip,
        "model_threshold_calibration_set": stored.calibration_set,
    }
    if (stored.similarity, stored.flip) != (similarity, flip):
        out["model_threshold_note"] = (
            f"the model's threshold is for {stored.similarity} with flip {'on' if stored.flip else 'off'}; "
            f"this run uses {similarity} with flip {'on' if flip else 'off'}: FAR/FRR at it not measured"
        )
        return out
    far, frr = rates_at_threshold(result.scores, result.issame, stored.threshold, stored.higher_is_same)
    out.update(far_at_model_threshold=far, frr_at_model_threshold=frr)
    ratio = far / stored.far
    # A FAR below target/3 only counts when these pairs can show it (enough different pairs).
    resolvable_low = result.num_different * stored.far / DRIFT_FACTOR >= 1.0
    if ratio > DRIFT_FACTOR or (ratio < 1.0 / DRIFT_FACTOR and resolvable_low):
        out["calibration_drift"] = (
            f"calibration drift: FAR {far:.3g} at the model's threshold {stored.threshold:.4f} is "
            f"{ratio:.2g}× its target {stored.far:g}"
            + (f" (calibrated on {stored.calibration_set})" if stored.calibration_set else "")
            + "; recalibrate with --calibrate on pairs like these"
        )
    return out


def require_resolvable(dataset, far: float) -> None:
    """``--calibrate`` before any embedding: the pairs must hold at least ``1 / far`` different pairs."""
    different = int((~np.asarray(dataset.issame, dtype=bool)).sum())
    if different * far < 1.0:
        raise fail(
            f"--calibrate: {len(dataset)} pairs ({different} different) cannot resolve FAR {far:g}; "
            f"it needs at least {math.ceil(1 / far):,} different pairs"
        )


def calibration_threshold(points, similarity: str, flip: bool, source, dataset):
    """The :class:`ModelThreshold` at the first ``--far``, with the calibration set's fingerprint."""
    from femb.export import ModelThreshold

    point = points[0]
    name, digest = _fingerprint(source, dataset)
    return ModelThreshold(
        threshold=point.threshold,
        far=point.far,
        similarity=similarity,
        flip=flip,
        calibration_set=name,
        calibration_pairs=len(dataset),
        calibration_sha256=digest,
    )


def write_calibration(model: Path, threshold) -> None:
    from femb.export import ExportError, format_cosine, write_threshold

    try:
        parity = write_threshold(model, threshold)
    except (ExportError, ValueError, OSError) as error:
        raise fail(f"--calibrate: {one_line(error)}") from None
    typer.echo(
        f"threshold {threshold.describe()} written to {model} "
        f"(sha256 {threshold.calibration_sha256[:12]}…; embeddings unchanged: "
        f"min cosine {format_cosine(parity.min_cosine)}, max |Δ| {parity.max_abs_diff:.3g})"
    )


def _fingerprint(source: dict, dataset) -> tuple[str, str]:
    """The calibration set's name and SHA-256: of the .bin, pairs.txt or CSV file; for a folder, of
    the drawn pair list and the bytes of every image in it."""
    from femb.export import file_sha256, image_pairs_sha256

    kind, path = source["kind"], Path(source["path"])
    if kind != "folder":
        return path.name, file_sha256(path)
    images = dataset.images
    paths = [images.dataset.samples[index][0] for index in images.indices]
    flags = dataset.issame
    pair_list = ((paths[a], paths[b], same) for (a, b), same in zip(dataset.pairs, flags, strict=True))
    return path.name, image_pairs_sha256(pair_list, path)


# ---------------------------------------------------------------------------------------- quality
def quality_curve(embedder, result, norms, pairs, fars) -> tuple[dict, str | None]:
    """The error-versus-reject curve as summary entries, or a one-line note saying why there is none."""
    from femb.evaluation import error_versus_reject, threshold_at_far

    norms = np.asarray(norms, dtype=np.float64)
    if getattr(embedder, "outputs_unit_vectors", False) or np.allclose(norms, 1.0, atol=1e-3):
        return {}, (
            "quality curve skipped: the model outputs unit vectors (L2-normalised in its graph), "
            "so the embedding norm carries no quality"
        )
    fmr = fars[0]
    oriented = result.scores if result.higher_is_same else -result.scores
    cut = threshold_at_far(oriented, result.issame, fmr)
    if math.isnan(cut):
        return {}, (
            f"quality curve skipped: FMR {fmr:g} needs at least {math.ceil(1 / fmr):,} different pairs "
            f"(have {result.num_different:,}); pass a larger first --far"
        )
    threshold = cut if result.higher_is_same else -cut
    pairs = np.asarray(pairs, dtype=np.int64)
    quality = np.minimum(norms[pairs[:, 0]], norms[pairs[:, 1]])
    points = error_versus_reject(
        result.scores, result.issame, quality, threshold, REJECT_FRACTIONS, result.higher_is_same
    )
    return {
        "quality_curve_fmr": fmr,
        "quality_curve_threshold": threshold,
        "quality_curve_quality": "min over the pair of the raw norm of each image's unflipped embedding",
        "quality_curve": [point.to_dict() for point in points],
    }, None


def print_quality_curve(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    points = summary["quality_curve"]
    typer.echo(
        f"error versus reject: FNMR at FMR {summary['quality_curve_fmr']:g} "
        f"(threshold {summary['quality_curve_threshold']:.4f}, fixed before rejection); "
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
    return re.sub(r"\x1b\[[0-9;]*m", "", text)  # plotext's colour resets, even in its clear theme


def flat_for_csv(summary: dict) -> dict:
    """The summary as one CSV row: the curve's points become ``fnmr_at_reject_<pct>`` columns,
    a nested mapping (``calibrated``) ``<name>_<key>`` columns."""
    row = {}
    for key, value in summary.items():
        if key == "quality_curve":
            for point in value:
                row[f"fnmr_at_reject_{100 * point['rejected']:.0f}%"] = point["fnmr"]
        elif isinstance(value, dict):
            row.update({f"{key}_{inner}": item for inner, item in value.items()})
        else:
            row[key] = value
    return row
