"""InsightFace's combined margin: target s·(cos(m1·θ_y + m2) − m3)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from femb.headers.base import MarginHeader, cos_plus, monotonic_cos, safe_acos
from femb.headers.registry import register_header


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

    def __init__(
        self,
        in_features: int,
        out_features: int,
        s: float = 64.0,
        m1: float = 1.0,
        m2: float = 0.3,
        m3: float = 0.2,
        normalize_weight_in_place: bool = True,
    ) -> None:
        super().__init__(in_features, out_features, s=s, normalize_weight_in_place=normalize_weight_in_place)
        if m1 <= 0:
            raise ValueError(f"m1 must be positive (θ must stay increasing), got {m1}")
        self.m1, self.m2, self.m3 = float(m1), float(m2), float(m3)

    def hparams(self) -> dict[str, int | float | bool | str]:
        return {**super().hparams(), "s": self.s, "m1": self.m1, "m2": self.m2, "m3": self.m3}

    def margin(self, cos_target: Tensor, norms: Tensor) -> Tensor:
        with torch.no_grad():
            k = torch.floor((self.m1 * torch.acos(cos_target) + self.m2) / math.pi)
        if self.m1 == 1.0:
            cos_phi = cos_plus(cos_target, self.m2)
        else:
            cos_phi = torch.cos(self.m1 * safe_acos(cos_target) + self.m2)
        return monotonic_cos(cos_phi, k) - self.m3
