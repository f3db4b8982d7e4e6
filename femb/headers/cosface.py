"""CosFace (large margin cosine loss): target s·(cosθ_y − m)."""

from __future__ import annotations

from torch import Tensor

from femb.headers.base import MarginHeader
from femb.headers.options import HeadOption, scale_option
from femb.headers.registry import register_header

SCALE = scale_option()
MARGIN = HeadOption("m", float, 0.35, "additive cosine margin: cosθ_y − m", low=0.0, high=1.0)


@register_header
class CosFaceHeader(MarginHeader):
    """s·(cosθ_y − m); others s·cosθ_j. Defaults s=64, m=0.35 (the paper's)."""

    name = "cosface"
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

    def margin(self, cos_target: Tensor, norms: Tensor, valid: Tensor) -> Tensor:
        return cos_target - self.m
