"""femb.evaluation's threshold policy as a Python user calls it, on score arrays small enough to
check by hand: thresholds at a target FAR (all pairs and per fold), rates at a threshold, drift
at a model's own threshold, calibration with the set's fingerprint, the error-versus-reject curve,
refusing embeddings that cannot tell faces apart, and one call that reports a pairs set; no CLI
flag anywhere in the library."""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import femb.evaluation as evaluation
from femb.data import SyntheticFaces, load_verification_bin, write_verification_bin
from femb.evaluation import (
    VerificationEvaluator,
    calibrate,
    check_threshold,
    error_versus_reject,
    far_operating_points,
    far_targets,
    quality_curve,
    rates_at_threshold,
    report_pairs,
    require_informative,
    require_resolvable,
    threshold_at_far,
    verification_metrics,
)
from femb.export import ModelThreshold

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


def test_far_targets_default_dedupe_and_name_the_field():
    assert far_targets(None) == (1e-3, 1e-4)
    assert far_targets([0.5, 0.25, 0.5]) == (0.5, 0.25)
    with pytest.raises(ValueError, match=r"^far must lie between 0 and 1 \(exclusive\), got 1.5$"):
        far_targets([1.5])


def test_check_threshold_rates_and_drift_by_hand():
    result = verification_metrics(SCORES, ISSAME, n_folds=2)
    # At 5.5: accepted 9, 7 (D), 8, 6 → FAR 1/4, FRR 1/4 (rejects 4).
    within = check_threshold(ModelThreshold(threshold=5.5, far=0.25), result, "cos", True)
    assert within["far_at_model_threshold"] == 0.25 and within["frr_at_model_threshold"] == 0.25
    assert "calibration_drift" not in within
    # At 1.0 every different pair passes: FAR 1 is 4× a 0.25 target → drift, named set, no flag.
    drifted = check_threshold(
        ModelThreshold(threshold=1.0, far=0.25, calibration_set="lfw.bin"), result, "cos", True
    )
    assert drifted["far_at_model_threshold"] == 1.0
    assert "4× its target 0.25" in drifted["calibration_drift"] and "lfw.bin" in drifted["calibration_drift"]
    assert "--" not in drifted["calibration_drift"]
    # Another similarity: not measured, said why.
    other = check_threshold(ModelThreshold(threshold=5.5, far=0.25), result, "euclidean", True)
    assert "far_at_model_threshold" not in other and "not measured" in other["model_threshold_note"]
    assert check_threshold(None, result, "cos", True) == {}


def test_require_resolvable_counts_different_pairs():
    require_resolvable(ISSAME, 0.25)  # 4 different pairs resolve 1/4
    with pytest.raises(ValueError, match="8 pairs \\(4 different\\) cannot resolve FAR 0.1; .* 10 different"):
        require_resolvable(ISSAME, 0.1)


@pytest.fixture(scope="module")
def tiny_bin(tmp_path_factory) -> Path:
    """12 synthetic identities, two images each: alternating same / different pairs."""
    faces = SyntheticFaces(num_identities=12, images_per_identity=2, seed=5, cache=False)
    images, issame = [], []
    for i in range(12):
        pair = [faces.load_uint8(2 * i)[0], faces.load_uint8(2 * i + 1)[0]]
        other = faces.load_uint8(2 * ((i + 1) % 12) + 1)[0]
        images += [pair[0].permute(1, 2, 0).numpy(), pair[1].permute(1, 2, 0).numpy()]
        images += [pair[0].permute(1, 2, 0).numpy(), other.permute(1, 2, 0).numpy()]
        issame += [True, False]
    return write_verification_bin(tmp_path_factory.mktemp("bin") / "tiny.bin", images, issame)


def test_calibrate_fingerprints_the_file(tiny_bin):
    pairs = load_verification_bin(tiny_bin)
    point = far_operating_points(SCORES, ISSAME, [0.25], n_folds=2)[0]
    chosen = calibrate(point, "cos", True, tiny_bin, pairs)
    assert chosen.threshold == pytest.approx(5.5) and chosen.far == 0.25
    assert chosen.calibration_set == "tiny.bin" and chosen.calibration_pairs == 24
    assert chosen.calibration_sha256 == hashlib.sha256(tiny_bin.read_bytes()).hexdigest()
    unresolved = far_operating_points(SCORES, ISSAME, [0.1], n_folds=2)[0]
    with pytest.raises(ValueError, match="no threshold at FAR 0.1"):
        calibrate(unresolved, "cos", True, tiny_bin, pairs)


def test_quality_curve_skips_unit_vectors_and_unresolvable_fmr():
    result = verification_metrics(SCORES, ISSAME, n_folds=2)
    pairs = np.arange(16).reshape(8, 2)
    norms = np.linspace(1.0, 20.0, 16)
    curve, note = quality_curve(result, norms, pairs, 0.25)
    assert note is None and curve["quality_curve_threshold"] == pytest.approx(5.5)
    assert curve["quality_curve"][0]["kept_pairs"] == 8
    assert quality_curve(result, np.ones(16), pairs, 0.25)[1].startswith("quality curve skipped")
    assert "target FAR" in quality_curve(result, norms, pairs, 0.1)[1]


def test_require_informative_refuses_nan_and_identical_embeddings():
    rng = np.random.default_rng(0)
    require_informative(rng.normal(size=(6, 8)), "a.bin")
    nan = rng.normal(size=(6, 8))
    nan[2, 3] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite embeddings for 1 of the 6 images of a.bin"):
        require_informative(nan, "a.bin")
    with pytest.raises(ValueError, match="same embedding for all 6 images of a.bin"):
        require_informative(np.zeros((6, 8)), "a.bin")
    with pytest.raises(ValueError, match="same embedding"):
        require_informative(np.tile(rng.normal(size=8), (6, 1)), "a.bin")


def test_report_pairs_gathers_every_figure(tiny_bin):
    pairs = load_verification_bin(tiny_bin)
    torch.manual_seed(0)
    projection = torch.randn(3 * 112 * 112, 16)

    def embed(batch: torch.Tensor) -> torch.Tensor:
        return batch.flatten(1) @ projection

    evaluator = VerificationEvaluator(n_folds=2, far_targets=(0.25,), batch_size=8)
    stored = ModelThreshold(threshold=0.0, far=0.25)
    report = report_pairs(evaluator, embed, pairs, "tiny.bin", stored, with_quality=True)
    row = report.row
    assert row["num_pairs"] == 24 and row["num_images"] == 24  # the .bin stores each distinct image once
    assert row["accuracy"] == pytest.approx(report.result.accuracy)
    assert "threshold_at_far_2.5e-1" in row and "far_at_model_threshold" in row
    assert len(row["quality_curve"]) == 11 and report.points[0].far == 0.25

    def zeros(batch: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(batch), 16)

    with pytest.raises(ValueError, match="same embedding for all 24 images of tiny.bin"):
        report_pairs(evaluator, zeros, pairs, "tiny.bin")


def test_the_library_never_mentions_a_cli_flag():
    folder = Path(evaluation.__file__).parent
    flags = {
        path.name: re.findall(r"--[a-z][a-z-]+", path.read_text()) for path in sorted(folder.glob("*.py"))
    }
    assert {name: found for name, found in flags.items() if found} == {}
