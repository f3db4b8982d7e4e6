"""One verification report: embed a pairs set, refuse embeddings that cannot tell faces apart,
score the pairs, and gather every figure (metrics, operating points, a model's own threshold,
the quality curve) into one flat, JSON-safe row."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from femb.data.pairs import PairsDataset
from femb.evaluation.metrics import VerificationResult
from femb.evaluation.quality import quality_curve
from femb.evaluation.thresholds import (
    OperatingPoint,
    check_threshold,
    far_operating_points,
    operating_point_entries,
)
from femb.evaluation.verification import EmbedFn, VerificationEvaluator, require_informative


@dataclass
class PairsReport:
    """``row``: the flat figures; ``result``: the metrics with scores and ROC; ``points``: one per
    target FAR; ``notes``: why a part was skipped (the quality curve), one line each."""

    row: dict[str, Any]
    result: VerificationResult
    points: list[OperatingPoint]
    notes: list[str] = field(default_factory=list)


def report_pairs(
    evaluator: VerificationEvaluator,
    embed_fn: EmbedFn,
    pairs: PairsDataset,
    source: str = "the pairs set",
    stored: Any = None,
    with_quality: bool = False,
    unit_vectors: bool = False,
    on_batch: Callable[[int, int], None] | None = None,
) -> PairsReport:
    """Run ``evaluator``'s protocol on ``pairs`` with ``embed_fn`` and report everything.

    ``stored``: the model's calibrated threshold (a :class:`~femb.export.ModelThreshold`), checked
    on these pairs; ``with_quality``: add the error-versus-reject curve at the first target FAR
    (``unit_vectors``: the model normalises its output, so there is none). A ``ValueError`` names
    ``source`` when the embeddings are NaN or all alike.
    """
    embeddings, norms = evaluator.embed(embed_fn, pairs.images, return_norms=True, on_batch=on_batch)
    require_informative(embeddings, source)
    result = evaluator.evaluate_embeddings(embeddings, pairs.pairs, pairs.issame, normalized=True)
    row: dict[str, Any] = {"num_images": len(pairs.images), **result.to_dict()}
    points = far_operating_points(
        result.scores, result.issame, evaluator.far_targets, evaluator.n_folds, result.higher_is_same
    )
    row.update(operating_point_entries(points))
    row.update(check_threshold(stored, result, evaluator.similarity, evaluator.flip))
    notes = []
    if with_quality:
        curve, note = quality_curve(result, norms, pairs.pairs, evaluator.far_targets[0], unit_vectors)
        row.update(curve)
        notes += [note] if note else []
    return PairsReport(row=row, result=result, points=points, notes=notes)
