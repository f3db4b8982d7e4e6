"""verification_metrics against hand-computed cases, a naive loop, and scikit-learn."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from femb.evaluation import VerificationResult, far_key, verification_metrics


def test_perfect_separation():
    rng = np.random.default_rng(0)
    same = rng.uniform(0.6, 1.0, 1000)
    different = rng.uniform(-1.0, 0.4, 1000)
    scores = np.empty(2000)
    scores[0::2], scores[1::2] = same, different
    issame = np.arange(2000) % 2 == 0
    result = verification_metrics(scores, issame)
    assert isinstance(result, VerificationResult)
    assert result.accuracy == 1.0 and result.accuracy_std == 0.0
    assert result.eer == 0.0 and result.auc == 1.0
    assert result.tar_at_far[1e-3] == 1.0
    assert math.isnan(result.tar_at_far[1e-4])  # 1000 negatives cannot resolve 1e-4
    assert 0.4 < result.threshold < 0.6
    assert (result.num_pairs, result.num_same, result.num_different) == (2000, 1000, 1000)


def test_overlapping_case_by_hand():
    # Folds (n_folds=2): [9 S, 7 D, 4 S] and [8.5 S, 3 D, 2 D].
    scores = [9.0, 7.0, 4.0, 8.5, 3.0, 2.0]
    issame = [True, False, True, True, False, False]
    result = verification_metrics(scores, issame, n_folds=2, far_targets=(0.5,))
    # Fold 1 held out: fold 2 is separated best at (8.5+3)/2 = 5.75; on fold 1 only 9 is right.
    # Fold 2 held out: on fold 1 cuts after 9 and after 4 both get 2/3; the stricter one,
    # (9+7)/2 = 8, wins and classifies fold 2 perfectly.
    assert result.fold_accuracies.tolist() == pytest.approx([1 / 3, 1.0])
    assert result.fold_thresholds.tolist() == pytest.approx([5.75, 8.0])
    assert result.accuracy == pytest.approx(2 / 3)
    assert result.accuracy_std == pytest.approx(1 / 3)
    assert result.threshold == pytest.approx(6.875)
    # Same scores {9, 8.5, 4} vs different {7, 3, 2}: 8 of 9 orderings are right.
    assert result.auc == pytest.approx(8 / 9)
    # Order 9S 8.5S 7D 4S 3D 2D: after 7, FPR = 1/3 and FNR = 1/3.
    assert result.eer == pytest.approx(1 / 3)
    # At FPR 1/3 TPR steps from 2/3 to 1: the top of the step; at 0.5, halfway from 1/3 to 2/3.
    assert result.tar_at_far[0.5] == pytest.approx(1.0)
    distances = verification_metrics(-np.asarray(scores), issame, n_folds=2, higher_is_same=False)
    assert distances.accuracy == pytest.approx(result.accuracy)
    assert distances.threshold == pytest.approx(-result.threshold)
    assert distances.auc == pytest.approx(result.auc) and distances.eer == pytest.approx(result.eer)


def _naive_kfold(scores: np.ndarray, issame: np.ndarray, n_folds: int) -> tuple[list[float], list[float]]:
    """Try every threshold one by one (the slow, obvious way)."""
    folds = np.array_split(np.arange(len(scores)), n_folds)
    accuracies, thresholds = [], []
    for fold in folds:
        train = np.setdiff1d(np.arange(len(scores)), fold)
        values = np.unique(scores[train])[::-1]  # distinct, descending
        span = (values[0] - values[-1]) or 1.0
        candidates = [values[0] + span / len(train)]
        candidates += [(values[i] + values[i + 1]) / 2 for i in range(len(values) - 1)]
        candidates += [values[-1] - span / len(train)]
        best_threshold, best_accuracy = None, -1.0
        for threshold in candidates:
            accuracy = np.mean((scores[train] > threshold) == issame[train])
            if accuracy > best_accuracy:  # strict: the first (strictest) of equals wins
                best_threshold, best_accuracy = threshold, accuracy
        thresholds.append(best_threshold)
        accuracies.append(float(np.mean((scores[fold] > best_threshold) == issame[fold])))
    return accuracies, thresholds


@pytest.mark.parametrize("n, n_folds, decimals", [(97, 10, None), (240, 10, 1), (50, 3, 2), (31, 2, None)])
def test_kfold_matches_naive_loop(n, n_folds, decimals):
    rng = np.random.default_rng(n)
    issame = rng.random(n) < 0.5
    issame[:2] = [True, False]
    scores = rng.normal(0, 1, n) + 1.2 * issame
    if decimals is not None:
        scores = np.round(scores, decimals)  # many ties
    result = verification_metrics(scores, issame, n_folds=n_folds)
    accuracies, thresholds = _naive_kfold(scores, issame, n_folds)
    assert result.fold_accuracies.tolist() == pytest.approx(accuracies)
    assert result.fold_thresholds.tolist() == pytest.approx(thresholds)
    assert result.accuracy == pytest.approx(np.mean(accuracies))
    assert result.accuracy_std == pytest.approx(np.std(accuracies))


def test_roc_metrics_agree_with_sklearn_and_brute_force():
    rng = np.random.default_rng(1)
    issame = rng.random(5000) < 0.4
    scores = np.round(rng.normal(0, 1, 5000) + 1.5 * issame, 2)
    result = verification_metrics(scores, issame)
    assert result.auc == pytest.approx(roc_auc_score(issame, scores), abs=1e-12)
    # EER: where the false-accept and false-reject rates cross, checked on a fine threshold grid.
    grid = np.linspace(scores.min(), scores.max(), 20001)
    far = np.array([(scores[~issame] >= t).mean() for t in grid[::20]])
    frr = np.array([(scores[issame] < t).mean() for t in grid[::20]])
    crossing = np.argmin(np.abs(far - frr))
    assert result.eer == pytest.approx((far[crossing] + frr[crossing]) / 2, abs=0.01)
    assert result.fpr[0] == 0.0 and result.tpr[-1] == 1.0


def test_tar_at_far_and_its_resolution():
    negatives = np.arange(10_000) / 10_000  # 0.0000 .. 0.9999, all distinct
    positives = np.r_[np.full(500, 0.99955), np.full(500, 0.5)]
    scores = np.r_[positives, negatives]
    issame = np.r_[np.ones(1000, bool), np.zeros(10_000, bool)]
    order = np.random.default_rng(0).permutation(len(scores))
    result = verification_metrics(scores[order], issame[order])
    # 4 negatives beat the high positives: TPR is 0.5 from FPR 4e-4 until FPR 0.5.
    assert result.tar_at_far[1e-3] == pytest.approx(0.5)
    assert result.tar_at_far[1e-4] == pytest.approx(0.0)
    fewer = verification_metrics(scores[:-1], issame[:-1], far_targets=(1e-4,))  # 9,999 negatives
    assert math.isnan(fewer.tar_at_far[1e-4])
    assert fewer.to_dict()["tar_at_far_1e-4"] is None


def test_to_dict_is_flat_and_json_safe():
    rng = np.random.default_rng(2)
    issame = rng.random(400) < 0.5
    result = verification_metrics(rng.normal(size=400) + issame, issame)
    out = result.to_dict()
    assert list(out) == [
        "accuracy", "accuracy_std", "threshold", "eer", "auc",
        "tar_at_far_1e-3", "tar_at_far_1e-4", "num_pairs", "num_same", "num_different",
    ]  # fmt: skip
    json.dumps(out, allow_nan=False)
    assert out["tar_at_far_1e-4"] is None and isinstance(out["num_pairs"], int)
    assert far_key(5e-4) == "tar_at_far_5e-4" and far_key(0.01) == "tar_at_far_1e-2"
    assert "acc " in result.summary() and "n/a" in result.summary()


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="both same and different"):
        verification_metrics([0.1, 0.2, 0.3], [True, True, True], n_folds=2)
    with pytest.raises(ValueError, match="NaN or infinite"):
        verification_metrics([0.1, np.nan, 0.3, 0.4], [True, False, True, False], n_folds=2)
    with pytest.raises(ValueError, match="n_folds"):
        verification_metrics([0.1, 0.2], [True, False], n_folds=10)
    with pytest.raises(ValueError, match="2 scores but 3"):
        verification_metrics([0.1, 0.2], [True, False, True], n_folds=2)


def test_a_million_pairs_runs():
    # Correctness at scale; speed is measured by benchmarks/bench_verification_metrics.py.
    rng = np.random.default_rng(3)
    issame = rng.random(1_000_000) < 0.5
    scores = rng.normal(0, 1, 1_000_000).astype(np.float32) + 2.0 * issame
    result = verification_metrics(scores, issame)
    assert 0.83 < result.accuracy < 0.87  # Φ(1) ≈ 0.841 at the midpoint threshold
    assert result.threshold == pytest.approx(1.0, abs=0.05)
    assert not math.isnan(result.tar_at_far[1e-4])
