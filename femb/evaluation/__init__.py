"""Face-verification evaluation: k-fold accuracy, EER, ROC AUC, TAR@FAR."""

from femb.evaluation.metrics import VerificationResult, far_key, verification_metrics
from femb.evaluation.verification import (
    SIMILARITIES,
    VerificationEvaluator,
    evaluate_embeddings,
    pair_scores,
)

__all__ = [
    "SIMILARITIES",
    "VerificationEvaluator",
    "VerificationResult",
    "evaluate_embeddings",
    "far_key",
    "pair_scores",
    "verification_metrics",
]
