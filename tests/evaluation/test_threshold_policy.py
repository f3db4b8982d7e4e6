"""femb.evaluation's threshold policy as a Python user calls it: target FARs, drift at a model's
own threshold, calibration with the set's fingerprint, the quality curve, refusing embeddings
that cannot tell faces apart, and one call that reports a pairs set; no CLI flag anywhere."""

from __future__ import annotations

import hashlib
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
    far_operating_points,
    far_targets,
    quality_curve,
    report_pairs,
    require_informative,
    require_resolvable,
    verification_metrics,
)
from femb.export import ModelThreshold

# Sorted: 9 S, 8 S, 7 D, 6 S, 5 D, 4 S, 3 D, 2 D (4 same, 4 different).
SCORES = np.array([9.0, 7.0, 8.0, 5.0, 6.0, 3.0, 4.0, 2.0])
ISSAME = np.array([True, False, True, False, True, False, True, False])


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
