"""Face-verification evaluation: k-fold accuracy, EER, ROC AUC, TAR@FAR, thresholds at a FAR,
calibration and drift, quality."""

from femb.evaluation.metrics import VerificationResult, far_key, verification_metrics
from femb.evaluation.quality import REJECT_FRACTIONS, RejectPoint, error_versus_reject, quality_curve
from femb.evaluation.report import PairsReport, report_pairs
from femb.evaluation.thresholds import (
    DEFAULT_FARS,
    DRIFT_FACTOR,
    OperatingPoint,
    accepted,
    calibrate,
    check_threshold,
    far_operating_points,
    far_targets,
    operating_point_entries,
    pairs_fingerprint,
    rates_at_threshold,
    require_resolvable,
    threshold_at_far,
)
from femb.evaluation.verification import (
    SIMILARITIES,
    VerificationEvaluator,
    evaluate_embeddings,
    pair_scores,
    require_informative,
)

__all__ = [
    "DEFAULT_FARS",
    "DRIFT_FACTOR",
    "REJECT_FRACTIONS",
    "SIMILARITIES",
    "OperatingPoint",
    "PairsReport",
    "RejectPoint",
    "VerificationEvaluator",
    "VerificationResult",
    "accepted",
    "calibrate",
    "check_threshold",
    "error_versus_reject",
    "evaluate_embeddings",
    "far_key",
    "far_operating_points",
    "far_targets",
    "operating_point_entries",
    "pair_scores",
    "pairs_fingerprint",
    "quality_curve",
    "rates_at_threshold",
    "report_pairs",
    "require_informative",
    "require_resolvable",
    "threshold_at_far",
    "verification_metrics",
]
