"""Operating points, calibration and drift: the threshold policy of a verification run.

- :func:`far_operating_points`: per target false-accept rate, the threshold on all pairs and the
  k-fold TAR there (:class:`OperatingPoint`);
- :func:`check_threshold`: the FAR and FRR a model's own calibrated threshold gives on new pairs,
  and a one-line drift message when the FAR is more than :data:`DRIFT_FACTOR` × off its target;
- :func:`calibrate`: the threshold at a target FAR as a :class:`~femb.export.ModelThreshold`,
  with the calibration set's name, pair count and SHA-256 (write it with
  :func:`femb.export.write_threshold`).

Thresholds are in the scores' units: a cosine (higher = same) or a squared distance (lower = same).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from femb.evaluation.metrics import VerificationResult, _json_number, far_key

if TYPE_CHECKING:
    from femb.data.pairs import PairsDataset
    from femb.export.metadata import ModelThreshold

DRIFT_FACTOR = 3.0
DEFAULT_FARS = (1e-3, 1e-4)


def far_targets(values: Sequence[float] | None) -> tuple[float, ...]:
    """Target false-accept rates, duplicates dropped (default 1e-3 and 1e-4); each must lie in (0, 1)."""
    for value in values or ():
        if not 0.0 < float(value) < 1.0:
            raise ValueError(f"far must lie between 0 and 1 (exclusive), got {value:g}")
    return tuple(dict.fromkeys(float(v) for v in values)) if values else DEFAULT_FARS


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


def operating_point_entries(points: Sequence[OperatingPoint]) -> dict[str, float | None]:
    """The points' flat, JSON-safe entries (``threshold_at_far_<far>``, ``..._fold_mean``, ``..._std``)."""
    flat: dict[str, float | None] = {}
    for point in points:
        flat.update(point.to_dict())
    return flat


# ---------------------------------------------------------------------------------------- drift
def check_threshold(
    stored: ModelThreshold | None, result: VerificationResult, similarity: str, flip: bool
) -> dict:
    """What a model's calibrated threshold gives on these pairs, as flat JSON-safe entries.

    ``model_threshold*``: the stored threshold; ``far_at_model_threshold`` and
    ``frr_at_model_threshold``: its rates here; ``calibration_drift``: a one-line message when the
    FAR is more than :data:`DRIFT_FACTOR` × above its target, or below it by as much where these
    pairs hold enough different pairs to show it. A threshold calibrated under another similarity
    or flip setting is not measured (``model_threshold_note`` says why). Empty without ``stored``.
    """
    if stored is None:
        return {}
    out: dict[str, Any] = {
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
    out.update(far_at_model_threshold=_json_number(far), frr_at_model_threshold=_json_number(frr))
    ratio = far / stored.far
    resolvable_low = result.num_different * stored.far / DRIFT_FACTOR >= 1.0
    if ratio > DRIFT_FACTOR or (ratio < 1.0 / DRIFT_FACTOR and resolvable_low):
        out["calibration_drift"] = (
            f"calibration drift: FAR {far:.3g} at the model's threshold {stored.threshold:.4f} is "
            f"{ratio:.2g}× its target {stored.far:g}"
            + (f" (calibrated on {stored.calibration_set})" if stored.calibration_set else "")
            + "; recalibrate on pairs like these"
        )
    return out


# ---------------------------------------------------------------------------------------- calibration
def require_resolvable(issame: Sequence[bool] | np.ndarray, far: float) -> None:
    """A ``ValueError`` unless the pairs hold at least ``1 / far`` different pairs (checked before
    any embedding, so that a calibration that cannot succeed fails at once)."""
    issame = np.asarray(issame, dtype=bool)
    different = int((~issame).sum())
    if different * far < 1.0:
        raise ValueError(
            f"{len(issame)} pairs ({different} different) cannot resolve FAR {far:g}; "
            f"it needs at least {math.ceil(1 / far):,} different pairs"
        )


def calibrate(
    point: OperatingPoint, similarity: str, flip: bool, source: str | os.PathLike, pairs: PairsDataset
) -> ModelThreshold:
    """The threshold of ``point`` as the record a model carries, fingerprinted with the pairs set
    it came from (``source``: the .bin, pairs.txt or CSV file, or the image folder the pairs were
    drawn from)."""
    # The record is the export's metadata type; imported here so that femb.evaluation loads without onnx.
    from femb.export.metadata import ModelThreshold

    if math.isnan(point.threshold):
        raise ValueError(f"no threshold at FAR {point.far:g} on these pairs (too few different pairs)")
    name, digest = pairs_fingerprint(source, pairs)
    return ModelThreshold(
        threshold=point.threshold,
        far=point.far,
        similarity=similarity,
        flip=flip,
        calibration_set=name,
        calibration_pairs=len(pairs),
        calibration_sha256=digest,
    )


def pairs_fingerprint(source: str | os.PathLike, pairs: PairsDataset) -> tuple[str, str]:
    """A pairs set's name and SHA-256: of the file's bytes; for an image folder, of the drawn pair
    list and the bytes of every image in it (so another seed gives another digest)."""
    from femb.export.calibration import file_sha256, image_pairs_sha256

    source = Path(source)
    if not source.is_dir():
        return source.name, file_sha256(source)
    images = pairs.images
    paths = [images.dataset.samples[index][0] for index in images.indices]
    flags = pairs.issame
    pair_list = ((paths[a], paths[b], same) for (a, b), same in zip(pairs.pairs, flags, strict=True))
    return source.name, image_pairs_sha256(pair_list, source)
