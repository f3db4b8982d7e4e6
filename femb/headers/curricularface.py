"""CurricularFace: ArcFace's target, and hard negatives re-weighted by an EMA of the target cosine."""

from __future__ import annotations

import torch
from torch import Tensor

from femb.headers.arcface import MARGIN, SCALE
from femb.headers.base import MarginHeader, additive_angular_margin, cos_plus, ema
from femb.headers.registry import register_header

# The official code's fixed EMA momentum of t (not an option there either).
T_MOMENTUM = 0.01


@register_header
class CurricularFaceHeader(MarginHeader):
    """Target s·cos(θ_y + m) as ArcFace (cosθ − m·sin m past π − m); defaults s=64, m=0.5.

    A negative is *hard* when cosθ_j > cos(θ_y + m); its logit becomes s·cosθ_j·(t + cosθ_j).
    ``t`` (a buffer, so it resumes; it starts at 0) follows the batch's mean target cosine,
    t ← 0.01·mean(cosθ_y) + 0.99·t, updated in training mode *before* it is used. Early in
    training t ≈ 0 and hard negatives weigh less than plain ones (easy samples first); as t
    grows they weigh more. Like the official code, the margin's gradient is exact and t has none.

    Statistics across shards: :meth:`batch_statistics` gives every row's cosθ_y through
    :meth:`sum_over_shards`, so on a class-sharded head every shard re-weights every labelled
    row's hard negatives (also rows whose class another shard holds) and computes the same t.
    In one process it is the identity: label ``-1`` rows get no margin and no re-weighting, and
    are left out of t.
    """

    name = "curricularface"
    options = (SCALE, MARGIN)

    def __init__(
        self,
        in_features: int,
        out_features: int,
        s: float | None = SCALE.default,
        m: float = MARGIN.default,
        normalize_weight_in_place: bool = True,
    ) -> None:
        super().__init__(in_features, out_features, normalize_weight_in_place, s=s, m=m)
        self.register_buffer("t", torch.zeros(()))

    def margin(self, cos_target: Tensor, norms: Tensor, valid: Tensor) -> Tensor:
        return additive_angular_margin(cos_target, self.m, easy_margin=False)

    def batch_statistics(self, cos_target: Tensor, valid: Tensor) -> Tensor:
        """``N × 2``: each row's cosθ_y and 1 where some shard holds its class (0 and 0 elsewhere).

        The one place the batch is reduced: a wrapper that shards rows rather than classes
        overrides this method.
        """
        partial = torch.stack([torch.where(valid, cos_target, 0.0), valid.float()], dim=1)
        return self.sum_over_shards(partial)

    def non_target_logits(
        self, logits: Tensor, cos_target: Tensor, valid: Tensor, scale: float | Tensor
    ) -> Tensor:
        with torch.no_grad():
            rows = self.batch_statistics(cos_target.detach(), valid)
            cos_y, labelled = rows[:, 0], rows[:, 1] > 0
            if self.training:
                count = labelled.sum()
                mean = cos_y.sum() / count.clamp_min(1)
                self.t.copy_(ema(self.t, mean, T_MOMENTUM, count))
            # cos(θ_y + m) itself (no fallback past π − m), as in the official code.
            threshold = cos_plus(cos_y, self.m) * scale
            hard = labelled.unsqueeze(1) & (logits > threshold.unsqueeze(1))
        # s·cosθ_j·(t + cosθ_j) = logit·(t + logit/s). The target column is overwritten afterwards.
        return torch.where(hard, logits * (self.t + logits / scale), logits)
