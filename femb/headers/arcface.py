"""ArcFace (additive angular margin): target s·cos(θ_y + m)."""

from __future__ import annotations

from torch import Tensor

from femb.headers.base import MarginHeader, additive_angular_margin
from femb.headers.options import HeadOption, angular_margin_option, scale_option
from femb.headers.registry import register_header

SCALE = scale_option()
MARGIN = angular_margin_option(0.5)
EASY_MARGIN = HeadOption(
    "easy_margin", bool, False, "apply the margin only where cosθ_y > 0 (the target then jumps at 90°)"
)


@register_header
class ArcFaceHeader(MarginHeader):
    """s·cos(θ_y + m); others s·cosθ_j. Defaults s=64, m=0.5.

    Gradient: the *exact* derivative of cos(θ+m), computed as cosθ·cos m − sinθ·sin m with
    sinθ = sqrt(max(1 − cos²θ, ε)) (never acos), so it is finite at cosθ = ±1. InsightFace
    instead edits the logit in place under ``no_grad`` (straight-through: d target/d cosθ = 1).
    Where θ + m > π the target falls back to cosθ − m·sin m (InsightFace's ``th``/``mm``), which
    keeps it decreasing in θ; ``easy_margin=True`` applies the margin only where cosθ > 0.
    """

    name = "arcface"
    options = (SCALE, MARGIN, EASY_MARGIN)

    def __init__(
        self,
        in_features: int,
        out_features: int,
        s: float | None = SCALE.default,
        m: float = MARGIN.default,
        easy_margin: bool = EASY_MARGIN.default,
        normalize_weight_in_place: bool = True,
    ) -> None:
        super().__init__(
            in_features, out_features, normalize_weight_in_place, s=s, m=m, easy_margin=easy_margin
        )

    def margin(self, cos_target: Tensor, norms: Tensor, valid: Tensor) -> Tensor:
        return additive_angular_margin(cos_target, self.m, self.easy_margin)
