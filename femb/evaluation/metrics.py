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
