"""Quality: how much of the verification error the lowest-quality pairs explain.

The error-versus-reject curve (ISO/IEC 29794-1): FNMR at a threshold fixed at a target FMR on all
pairs, as the pairs of lowest quality are rejected. A pair's quality is the lower raw norm of its
two images' own, unflipped embeddings (MagFace's quality score; the ``norm`` column of
``femb embed``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from femb.evaluation.metrics import VerificationResult, _json_number
from femb.evaluation.thresholds import accepted, threshold_at_far

REJECT_FRACTIONS = tuple(i / 20 for i in range(11))  # 0%, 5%, ..., 50%


@dataclass
class RejectPoint:
    """One step of the error-versus-reject curve."""

    rejected: float  # the fraction of pairs rejected, lowest quality first
    kept_pairs: int
    fnmr: float  # among the kept same-person pairs; NaN when none is left

    def to_dict(self) -> dict[str, float | int | None]:
        return {"rejected": self.rejected, "kept_pairs": self.kept_pairs, "fnmr": _json_number(self.fnmr)}


def error_versus_reject(
    scores: Sequence[float] | np.ndarray,
    issame: Sequence[bool] | np.ndarray,
    quality: Sequence[float] | np.ndarray,
    threshold: float,
    fractions: Sequence[float] = REJECT_FRACTIONS,
    higher_is_same: bool = True,
) -> list[RejectPoint]:
    """FNMR at a fixed threshold as the lowest-quality pairs are rejected (ISO/IEC 29794-1's ERC).

    ``threshold`` stays the one fixed before any rejection (at the target FMR on all pairs), so
    the curve shows how much of the error the quality score explains. The ``⌊f·N⌋`` pairs of
    lowest ``quality`` are rejected at fraction ``f`` (ties: the earlier pair first).
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    issame = np.asarray(issame, dtype=bool).reshape(-1)
    quality = np.asarray(quality, dtype=np.float64).reshape(-1)
    if not len(scores) == len(issame) == len(quality):
        raise ValueError(f"{len(scores)} scores, {len(issame)} flags and {len(quality)} qualities")
    order = np.argsort(quality, kind="stable")
    rejected_same = ~accepted(scores, threshold, higher_is_same) & issame
    points = []
    for fraction in fractions:
        kept = order[int(math.floor(float(fraction) * len(scores) + 1e-9)) :]
        genuine = int(issame[kept].sum())
        fnmr = float(rejected_same[kept].sum()) / genuine if genuine else float("nan")
        points.append(RejectPoint(rejected=float(fraction), kept_pairs=len(kept), fnmr=fnmr))
    return points


def quality_curve(
    result: VerificationResult,
    norms: Sequence[float] | np.ndarray,
    pairs: np.ndarray,
    fmr: float,
    unit_vectors: bool = False,
) -> tuple[dict, str | None]:
    """The error-versus-reject curve of a verification run as flat JSON-safe entries, or a
    one-line note saying why there is none (``unit_vectors``: the model normalises its output, so
    the norm carries no quality; or too few different pairs to fix the threshold at ``fmr``).

    ``norms``: each image's raw embedding norm; ``pairs``: ``(N, 2)`` image indices, in the order
    of ``result.scores``.
    """
    norms = np.asarray(norms, dtype=np.float64)
    if unit_vectors or np.allclose(norms, 1.0, atol=1e-3):
        return {}, (
            "quality curve skipped: the model outputs unit vectors (L2-normalised in its graph), "
            "so the embedding norm carries no quality"
        )
    oriented = result.scores if result.higher_is_same else -result.scores
    cut = threshold_at_far(oriented, result.issame, fmr)
    if math.isnan(cut):
        return {}, (
            f"quality curve skipped: FMR {fmr:g} needs at least {math.ceil(1 / fmr):,} different pairs "
            f"(have {result.num_different:,}); choose a larger target FAR"
        )
    threshold = cut if result.higher_is_same else -cut
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
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
