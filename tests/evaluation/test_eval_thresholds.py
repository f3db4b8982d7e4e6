"""Thresholds at a target FAR (all pairs and per fold), rates at a threshold, and the
error-versus-reject curve, on score arrays small enough to check by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from femb.evaluation import (
    error_versus_reject,
    far_operating_points,
    rates_at_threshold,
    threshold_at_far,
)

# Sorted: 9 S, 8 S, 7 D, 6 S, 5 D, 4 S, 3 D, 2 D (4 same, 4 different).
SCORES = np.array([9.0, 7.0, 8.0, 5.0, 6.0, 3.0, 4.0, 2.0])
ISSAME = np.array([True, False, True, False, True, False, True, False])


def test_threshold_at_far_by_hand():
    # FAR 1/4: 7 may pass; 6 (same) comes free before 5 (different): midway between 6 and 5.
    assert threshold_at_far(SCORES, ISSAME, 0.25) == pytest.approx(5.5)
    assert threshold_at_far(SCORES, ISSAME, 0.5) == pytest.approx(3.5)
    # Everything accepted: below the lowest score.
    assert threshold_at_far(SCORES, ISSAME, 1.0) < 2.0
    # 4 different pairs cannot resolve FAR 0.1.
    assert math.isnan(threshold_at_far(SCORES, ISSAME, 0.1))
    # The two different pairs tie at the top score: any cut that accepts one accepts both (FAR 1),
    # so FAR 1/2 accepts nothing.
    tied = np.array([9.0, 9.0, 8.0, 0.0])
    flags = np.array([False, False, True, True])
    assert threshold_at_far(tied, flags, 0.5) == 9.0  # score > 9 accepts nothing


def test_rates_at_threshold_by_hand():
    assert rates_at_threshold(SCORES, ISSAME, 5.5) == (0.25, 0.25)  # accepts 7 (D); rejects 4 (S)
    assert rates_at_threshold(-SCORES, ISSAME, -5.5, higher_is_same=False) == (0.25, 0.25)
    assert rates_at_threshold(SCORES, ISSAME, 100.0) == (0.0, 1.0)


def test_per_fold_threshold_and_tar_by_hand():
    # Two folds: [9 S, 7 D, 8 S, 5 D] and [6 S, 3 D, 4 S, 2 D], FAR 1/2.
    (point,) = far_operating_points(SCORES, ISSAME, [0.5], n_folds=2)
    # Fold 1 held out: on fold 2, FAR 1/2 accepts 6, 4, 3: cut (3+2)/2 = 2.5; on fold 1 it accepts
    # everything: TAR 1, FAR 1. Fold 2 held out: on fold 1, accept 9, 8, 7: cut (7+5)/2 = 6;
    # on fold 2 nothing is above 6: TAR 0, FAR 0.
    assert point.fold_thresholds.tolist() == pytest.approx([2.5, 6.0])
    assert point.fold_tars.tolist() == pytest.approx([1.0, 0.0])
    assert point.fold_fars.tolist() == pytest.approx([1.0, 0.0])
    assert point.tar == pytest.approx(0.5) and point.tar_std == pytest.approx(0.5)
    assert point.threshold == pytest.approx(3.5)  # on all pairs
    assert point.to_dict() == {
        "threshold_at_far_5e-1": pytest.approx(3.5),
        "tar_at_far_5e-1_fold_mean": pytest.approx(0.5),
        "tar_at_far_5e-1_std": pytest.approx(0.5),
    }
    # Distances: the same cuts, negated.
    (distance,) = far_operating_points(-SCORES, ISSAME, [0.5], n_folds=2, higher_is_same=False)
    assert distance.fold_thresholds.tolist() == pytest.approx([-2.5, -6.0])
    assert distance.threshold == pytest.approx(-3.5) and distance.tar == pytest.approx(0.5)


def test_unresolvable_far_is_nan_not_a_number():
    (point,) = far_operating_points(SCORES, ISSAME, [1e-3], n_folds=2)
    assert math.isnan(point.threshold) and math.isnan(point.tar)
    assert point.to_dict()["threshold_at_far_1e-3"] is None


def test_error_versus_reject_on_crafted_quality():
    # Threshold 5.5: the same pairs scoring 4 (quality 0.1) and 6... only 4 is falsely rejected.
    quality = np.array([5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 0.1, 5.0])
    curve = error_versus_reject(SCORES, ISSAME, quality, threshold=5.5, fractions=(0.0, 0.1, 0.125, 0.5))
    assert [p.kept_pairs for p in curve] == [8, 8, 7, 4]
    # All 4 same pairs kept: 1 of 4 rejected (the one scoring 4). Rejecting the one low-quality
    # pair (1/8 of them) removes that error: FNMR 0.
    assert [p.fnmr for p in curve] == pytest.approx([0.25, 0.25, 0.0, 0.0])
    assert curve[2].to_dict() == {"rejected": 0.125, "kept_pairs": 7, "fnmr": 0.0}
    # Quality that says nothing: the error stays while good pairs leave.
    reversed_quality = np.where(quality < 1, 9.0, quality)
    curve = error_versus_reject(SCORES, ISSAME, reversed_quality, threshold=5.5, fractions=(0.0, 0.875))
    assert curve[-1].kept_pairs == 1 and curve[-1].fnmr == 1.0
    with pytest.raises(ValueError, match="qualities"):
        error_versus_reject(SCORES, ISSAME, quality[:3], threshold=5.5)
