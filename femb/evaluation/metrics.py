"""Face-verification metrics: k-fold accuracy, EER, ROC AUC and TAR at fixed FAR.

k-fold accuracy (the LFW protocol): pairs are split into ``n_folds`` contiguous folds in the
given order (LFW's pairs.txt holds its 10 folds in this order; the same split as InsightFace's
``KFold(shuffle=False)``). For each fold the threshold with the best accuracy on the other
folds is applied to the held-out fold; the result is the mean and population std (``ddof=0``,
as in the reference code) of the held-out accuracies, and the mean of the chosen thresholds.

The best threshold is found exactly, not on a grid: scores are sorted once, every cut between
two distinct scores is a candidate, and accuracy at all cuts comes from cumulative sums, so the
cost is one sort plus O(N) per fold. The threshold reported for a cut is the midpoint between
the two scores it separates; ties in accuracy go to the strictest threshold.

ROC, AUC, EER and TAR@FAR use scikit-learn's ``roc_curve`` over all pairs. EER is the point
where FPR = 1 − TPR, interpolated linearly between ROC points. TAR@FAR is TPR interpolated
linearly at that FPR; a FAR below ``1 / num_different`` cannot be resolved (FAR 1e-4 needs at
least 10,000 different pairs) and is reported as NaN (``None`` in ``to_dict``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


def far_key(far: float) -> str:
    """``1e-3`` → ``"tar_at_far_1e-3"`` (the key in ``to_dict`` and in training events)."""
    mantissa, exponent = f"{far:e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"tar_at_far_{mantissa}e{int(exponent)}"


def _json_number(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass
class VerificationResult:
    """What a verification run measured; ``to_dict()`` is flat and JSON-safe (NaN → None)."""

    accuracy: float
    accuracy_std: float
    threshold: float
    eer: float
    auc: float
    tar_at_far: dict[float, float]
    num_pairs: int
    num_same: int
    num_different: int
    fpr: np.ndarray = field(repr=False)
    tpr: np.ndarray = field(repr=False)
    fold_accuracies: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    fold_thresholds: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    higher_is_same: bool = True
    scores: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))  # per pair, as given
    issame: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, dtype=bool))

    def to_dict(self) -> dict[str, float | int | None]:
        out: dict[str, float | int | None] = {
            "accuracy": _json_number(self.accuracy),
            "accuracy_std": _json_number(self.accuracy_std),
            "threshold": _json_number(self.threshold),
            "eer": _json_number(self.eer),
            "auc": _json_number(self.auc),
        }
        for far, tar in self.tar_at_far.items():
            out[far_key(far)] = _json_number(tar)
        out.update(
            num_pairs=int(self.num_pairs), num_same=int(self.num_same), num_different=int(self.num_different)
        )
        return out

    def summary(self) -> str:
        """One line, e.g. ``acc 0.9950 ± 0.0030  EER 0.0060  AUC 0.9990  TAR@FAR=1e-3 0.9800``."""
        parts = [
            f"acc {self.accuracy:.4f} ± {self.accuracy_std:.4f}",
            f"EER {self.eer:.4f}",
            f"AUC {self.auc:.4f}",
        ]
        for far, tar in self.tar_at_far.items():
            label = far_key(far).removeprefix("tar_at_far_")
            parts.append(f"TAR@FAR={label} " + ("n/a" if math.isnan(tar) else f"{tar:.4f}"))
        parts.append(f"({self.num_pairs} pairs)")
        return "  ".join(parts)


def _best_cuts(sorted_scores: np.ndarray, sorted_same: np.ndarray) -> tuple[float, float]:
    """Best accuracy threshold for scores sorted in DESCENDING order (predict same if score > t)."""
    n = len(sorted_scores)
    positives = int(sorted_same.sum())
    negatives = n - positives
    # Candidate k: the top k scores are called "same". Only cuts between distinct scores count.
    true_pos = np.concatenate(([0], np.cumsum(sorted_same, dtype=np.int64)))
    k = np.arange(n + 1)
    correct = true_pos + (negatives - (k - true_pos))
    valid = np.ones(n + 1, dtype=bool)
    valid[1:n] = sorted_scores[:-1] != sorted_scores[1:]
    correct = np.where(valid, correct, -1)
    best = int(np.argmax(correct))  # first maximum: fewest "same" calls, the strictest threshold
    span = float(sorted_scores[0] - sorted_scores[-1]) or 1.0
    if best == 0:
        threshold = float(sorted_scores[0]) + span / n
    elif best == n:
        threshold = float(sorted_scores[-1]) - span / n
    else:
        threshold = 0.5 * (float(sorted_scores[best - 1]) + float(sorted_scores[best]))
    return threshold, correct[best] / n


def kfold_accuracy(
    scores: np.ndarray, issame: np.ndarray, n_folds: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Held-out accuracy and chosen threshold per fold (higher score = same)."""
    n = len(scores)
    fold_of = np.repeat(np.arange(n_folds), [len(f) for f in np.array_split(np.arange(n), n_folds)])
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_same, sorted_fold = scores[order], issame[order], fold_of[order]
    accuracies, thresholds = np.empty(n_folds), np.empty(n_folds)
    for fold in range(n_folds):
        train = sorted_fold != fold
        threshold, _ = _best_cuts(sorted_scores[train], sorted_same[train])
        held_out = fold_of == fold
        accuracies[fold] = np.mean((scores[held_out] > threshold) == issame[held_out])
        thresholds[fold] = threshold
    return accuracies, thresholds


def _eer(fpr: np.ndarray, tpr: np.ndarray) -> float:
    gap = fpr - (1.0 - tpr)  # rises from -1 to +1 along the curve
    i = int(np.argmax(gap >= 0))
    if i == 0:
        return float(fpr[0])
    t = -gap[i - 1] / (gap[i] - gap[i - 1])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def _tar_at(far: float, fpr: np.ndarray, tpr: np.ndarray, negatives: int) -> float:
    if negatives * far < 1.0:
        return float("nan")
    # For repeated FPR values keep the highest TPR (the top of a vertical ROC step).
    last = np.append(fpr[1:] != fpr[:-1], True)
    return float(np.interp(far, fpr[last], tpr[last]))


def verification_metrics(
    scores: Sequence[float] | np.ndarray,
    issame: Sequence[bool] | np.ndarray,
    n_folds: int = 10,
    far_targets: Sequence[float] = (1e-3, 1e-4),
    higher_is_same: bool = True,
) -> VerificationResult:
    """Metrics of pair scores. ``higher_is_same=False`` for distances: then a pair is called
    "same" when its score is BELOW ``threshold``, and the threshold is in the scores' units."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    issame = np.asarray(issame).reshape(-1)
    if issame.dtype != bool:
        if not np.isin(issame, (0, 1)).all():
            raise ValueError("issame must hold booleans (or 0/1)")
        issame = issame.astype(bool)
    if len(scores) != len(issame):
        raise ValueError(f"{len(scores)} scores but {len(issame)} same/different flags")
    bad = int((~np.isfinite(scores)).sum())
    if bad:
        raise ValueError(f"{bad} of {len(scores)} scores are NaN or infinite")
    num_same = int(issame.sum())
    num_different = len(issame) - num_same
    if num_same == 0 or num_different == 0:
        raise ValueError(
            f"need both same and different pairs, got {num_same} same and {num_different} different"
        )
    if not 2 <= int(n_folds) <= len(scores):
        raise ValueError(f"n_folds must be between 2 and the number of pairs ({len(scores)}), got {n_folds}")
    # scikit-learn is imported here: it takes seconds to import, and `import femb` should not.
    from sklearn.metrics import auc as trapezoid_auc
    from sklearn.metrics import roc_curve

    oriented = scores if higher_is_same else -scores

    accuracies, thresholds = kfold_accuracy(oriented, issame, int(n_folds))
    if not higher_is_same:
        thresholds = -thresholds
    fpr, tpr, _ = roc_curve(issame, oriented)
    return VerificationResult(
        accuracy=float(accuracies.mean()),
        accuracy_std=float(accuracies.std()),
        threshold=float(thresholds.mean()),
        eer=_eer(fpr, tpr),
        auc=float(trapezoid_auc(fpr, tpr)),
        tar_at_far={float(far): _tar_at(float(far), fpr, tpr, num_different) for far in far_targets},
        num_pairs=len(scores),
        num_same=num_same,
        num_different=num_different,
        fpr=fpr,
        tpr=tpr,
        fold_accuracies=accuracies,
        fold_thresholds=thresholds,
        higher_is_same=bool(higher_is_same),
        scores=scores,
        issame=issame,
    )


# ---------------------------------------------------------------------------------------- operating points
def threshold_at_far(scores: np.ndarray, issame: np.ndarray, far: float) -> float:
    """The threshold (call "same" when score > threshold, higher = same) whose false-accept rate on
    these pairs is the largest not above ``far``; NaN when ``far < 1 / num_different``.

    From scikit-learn's ``roc_curve`` over every distinct score: the cut sits midway between the
    lowest accepted score and the next one below, so it does not hinge on a tie.
    """
    from sklearn.metrics import roc_curve

    scores = np.asarray(scores, dtype=np.float64)
    issame = np.asarray(issame, dtype=bool)
    negatives = int((~issame).sum())
    if negatives == 0 or negatives * far < 1.0 or issame.all() or not issame.any():
        return float("nan")
    fpr, _, cuts = roc_curve(issame, scores, drop_intermediate=False)
    # cuts[0] is +inf (nothing accepted); cuts[i] accepts every score >= cuts[i].
    i = int(np.flatnonzero(fpr <= far + 1e-12)[-1])
    if i == 0:
        return float(cuts[1])  # even the top score is a false accept: accept nothing
    if i == len(cuts) - 1:
        span = float(cuts[1] - cuts[-1]) or 1.0
        return float(cuts[-1]) - span / len(scores)
    return 0.5 * (float(cuts[i]) + float(cuts[i + 1]))


def accepted(scores: np.ndarray, threshold: float, higher_is_same: bool = True) -> np.ndarray:
    """Which pairs a threshold calls "same": score > threshold (similarities), < (distances)."""
    scores = np.asarray(scores, dtype=np.float64)
    return scores > threshold if higher_is_same else scores < threshold


def rates_at_threshold(
    scores: np.ndarray, issame: np.ndarray, threshold: float, higher_is_same: bool = True
) -> tuple[float, float]:
    """(FAR, FRR) of ``threshold`` on these pairs; NaN for a rate with no pairs of its kind."""
    issame = np.asarray(issame, dtype=bool)
    same = accepted(scores, threshold, higher_is_same)
    far = float(same[~issame].mean()) if (~issame).any() else float("nan")
    frr = float((~same[issame]).mean()) if issame.any() else float("nan")
    return far, frr


@dataclass
class OperatingPoint:
    """A target false-accept rate: the threshold on all pairs and the k-fold TAR there.

    ``threshold`` comes from every pair (what calibration writes into a model). ``tar`` and
    ``tar_std`` are the mean and population std of the held-out TARs of the k-fold protocol:
    for each fold the threshold at ``far`` is chosen on the other folds and applied to it;
    ``fold_fars`` are the false-accept rates those thresholds gave on their held-out folds.
    """

    far: float
    threshold: float
    tar: float
    tar_std: float
    fold_thresholds: np.ndarray = field(repr=False)
    fold_tars: np.ndarray = field(repr=False)
    fold_fars: np.ndarray = field(repr=False)

    def to_dict(self) -> dict[str, float | None]:
        """Flat keys beside ``tar_at_far_<far>``: ``threshold_at_far_<far>``, ``tar_at_far_<far>_fold_mean``,
        ``tar_at_far_<far>_std``."""
        key = far_key(self.far)
        return {
            key.replace("tar_at", "threshold_at", 1): _json_number(self.threshold),
            f"{key}_fold_mean": _json_number(self.tar),
            f"{key}_std": _json_number(self.tar_std),
        }


def far_operating_points(
    scores: Sequence[float] | np.ndarray,
    issame: Sequence[bool] | np.ndarray,
    fars: Sequence[float],
    n_folds: int = 10,
    higher_is_same: bool = True,
) -> list[OperatingPoint]:
    """One :class:`OperatingPoint` per target FAR, on the folds of :func:`kfold_accuracy`.

    Thresholds are in the scores' units (a distance when ``higher_is_same=False``). A FAR the
    pairs cannot resolve (fewer than ``1 / far`` different pairs where it is chosen) gives NaN.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    issame = np.asarray(issame, dtype=bool).reshape(-1)
    oriented = scores if higher_is_same else -scores
    sign = 1.0 if higher_is_same else -1.0
    fold_of = np.repeat(np.arange(n_folds), [len(f) for f in np.array_split(np.arange(len(scores)), n_folds)])
    points = []
    for far in fars:
        thresholds, tars, fars_held = np.empty(n_folds), np.empty(n_folds), np.empty(n_folds)
        for fold in range(n_folds):
            train, held = fold_of != fold, fold_of == fold
            threshold = threshold_at_far(oriented[train], issame[train], float(far))
            thresholds[fold] = sign * threshold
            false_accept, false_reject = rates_at_threshold(oriented[held], issame[held], threshold)
            tars[fold] = float("nan") if math.isnan(threshold) else 1.0 - false_reject
            fars_held[fold] = false_accept if not math.isnan(threshold) else float("nan")
        points.append(
            OperatingPoint(
                far=float(far),
                threshold=sign * threshold_at_far(oriented, issame, float(far)),
                tar=float(tars.mean()),
                tar_std=float(tars.std()),
                fold_thresholds=thresholds,
                fold_tars=tars,
                fold_fars=fars_held,
            )
        )
    return points


# ---------------------------------------------------------------------------------------- quality
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
    fractions: Sequence[float] = tuple(i / 20 for i in range(11)),
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
