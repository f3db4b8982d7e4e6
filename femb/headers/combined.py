"""InsightFace's combined margin: target s·(cos(m1·θ_y + m2) − m3)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from femb.headers.base import MarginHeader, cos_plus, monotonic_cos, safe_acos
from femb.headers.options import HeadOption, scale_option
from femb.headers.registry import register_header

SCALE = scale_option()
# m1 > 0 keeps m1·θ increasing in θ; 4 is SphereFace's multiplicative margin, the largest in use.
M1 = HeadOption(
    "m1", float, 1.0, "multiplicative angular margin: cos(m1·θ_y + m2)", low=0.0, high=4.0, low_open=True
)
M2 = HeadOption("m2", float, 0.3, "additive angular margin in radians", low=0.0, high=math.pi / 2)
M3 = HeadOption("m3", float, 0.2, "additive cosine margin: cos(m1·θ_y + m2) − m3", low=0.0, high=1.0)


@register_header
class CombinedMarginHeader(MarginHeader):
    """s·(ψ(m1·θ_y + m2) − m3); others s·cosθ_j. Defaults s=64, m1=1.0, m2=0.3, m3=0.2.

    With m1 = 1, cos(θ + m2) is computed from cosθ and sinθ as in ArcFace (exact derivative, no
    acos). m1 ≠ 1 needs the angle itself: θ = acos of the cosine clamped to [−1+ε, 1−ε], since
    acos has an infinite derivative at ±1 (the clamp costs a zero gradient, and an angle error
    below 1.5e-3 rad, within ε of ±1). Where m1·θ + m2 passes π, cos would rise again
    (InsightFace's code lets it); ψ, A-Softmax's (−1)^k·cos φ − 2k, continues it downwards, so
    the target keeps decreasing in θ. With (1, m, 0) this is ArcFace wherever θ + m ≤ π.
    """

    name = "combined"
    options = (SCALE, M1, M2, M3)

    def __init__(
        self,
        in_features: int,
        out_features: int,
        s: float | None = SCALE.default,
        m1: float = M1.default,
        m2: float = M2.default,
        m3: float = M3.default,
        normalize_weight_in_place: bool = True,
    ) -> None:
        super().__init__(in_features, out_features, normalize_weight_in_place, s=s, m1=m1, m2=m2, m3=m3)

    def margin(self, cos_target: Tensor, norms: Tensor, valid: Tensor) -> Tensor:
        with torch.no_grad():
            k = torch.floor((self.m1 * torch.acos(cos_target) + self.m2) / math.pi)
        if self.m1 == 1.0:
            cos_phi = cos_plus(cos_target, self.m2)
        else:
            cos_phi = torch.cos(self.m1 * safe_acos(cos_target) + self.m2)
        return monotonic_cos(cos_phi, k) - self.m3
