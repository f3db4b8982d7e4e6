"""CosFace (large margin cosine loss): target s·(cosθ_y − m)."""

from __future__ import annotations

from torch import Tensor

from femb.headers.base import MarginHeader
from femb.headers.registry import register_header


@register_header
class CosFaceHeader(MarginHeader):
    """s·(cosθ_y − m); others s·cosθ_j. Defaults s=64, m=0.35 (the paper's)."""

    name = "cosface"

    def __init__(
        self,
        in_features: int,
        out_features: int,
        s: float = 64.0,
        m: float = 0.35,
        normalize_weight_in_place: bool = True,
    ) -> None:
        super().__init__(in_features, out_features, s=s, normalize_weight_in_place=normalize_weight_in_place)
        self.m = float(m)

    def hparams(self) -> dict[str, int | float | bool | str]:
        return {**super().hparams(), "s": self.s, "m": self.m}

    def margin(self, cos_target: Tensor, norms: Tensor) -> Tensor:
        return cos_target - self.m
