"""Face-verification evaluation: k-fold accuracy, EER, ROC AUC, TAR@FAR, thresholds at a FAR, quality."""

from femb.evaluation.metrics import (
    OperatingPoint,
    RejectPoint,
    VerificationResult,
    accepted,
    error_versus_reject,
    far_key,
    far_operating_points,
    rates_at_threshold,
    threshold_at_far,
    verification_metrics,
)
from femb.evaluation.verification import (
    SIMILARITIES,
    VerificationEvaluator,
    evaluate_embeddings,
    pair_scores,
)

__all__ = [
    "SIMILARITIES",
    "OperatingPoint",
    "RejectPoint",
    "VerificationEvaluator",
    "VerificationResult",
    "accepted",
    "error_versus_reject",
    "evaluate_embeddings",
    "far_key",
    "far_operating_points",
    "pair_scores",
    "rates_at_threshold",
    "threshold_at_far",
    "verification_metrics",
]
