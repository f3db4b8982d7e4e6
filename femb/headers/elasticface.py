"""ElasticFace: ArcFace or CosFace with a per-sample margin drawn from N(m, σ) at every step."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from femb.headers.base import MarginHeader, additive_angular_margin
from femb.headers.options import HeadOption, scale_option
from femb.headers.registry import register_header

# (variant, plus) → the official (m, σ).
OFFICIAL_DEFAULTS = {
    ("arc", False): (0.5, 0.05),
    ("cos", False): (0.35, 0.05),
    ("arc", True): (0.5, 0.0175),
    ("cos", True): (0.35, 0.02),
}

SCALE = scale_option()
VARIANT = HeadOption(
    "variant", str, "arc", "arc: cos(θ_y + m_i) (ElasticArcFace); cos: cosθ_y − m_i", choices=("arc", "cos")
)
PLUS = HeadOption(
    "plus", bool, False, "ElasticFace+: larger drawn margins go to lower cosθ_y (harder samples)"
)
MARGIN = HeadOption(
    "m", float, None, "mean margin; default 0.5 (arc) or 0.35 (cos)", low=0.0, high=math.pi / 2
)
STD = HeadOption(
    "std",
    float,
    None,
    "std of the drawn margins; default 0.05, with plus 0.0175 (arc) or 0.02 (cos)",
    low=0.0,
    high=0.5,
)


@register_header
class ElasticFaceHeader(MarginHeader):
    """In training, row i's margin is m_i ~ N(m, σ), drawn afresh every forward; eval uses m.

    ``variant="arc"``: target s·cos(θ_y + m_i), with ArcFace's fallback past π − m_i (the
    official code has none); ``"cos"``: s·(cosθ_y − m_i). Defaults (official): arc m=0.5,
    cos m=0.35, σ=0.05; with ``plus`` σ=0.0175 (arc) or 0.02 (cos).

    ElasticFace+ (``plus=True``), following the paper: the labelled rows' drawn margins are
    sorted and handed out by the ranking of cosθ_y, so that the row with the k-th *largest*
    cosθ_y (the easiest) gets the k-th *smallest* margin and the hardest row the largest. (The
    official code indexes the ascending margins with the descending order of the cosines,
    ``margin[order]``, which applies the inverse permutation; that agrees with the paper only
    when the permutation is its own inverse.) Unlabelled rows (``-1``) take no part in the
    ranking and get no margin.

    Draws: one standard normal per row from the global RNG of the embeddings' device (no
    ``torch.Generator`` of its own), so the training loop's per-step seeding makes a resumed run
    draw exactly what the uninterrupted one drew. The number of draws depends only on the batch
    size (labelled or not), and eval mode draws nothing.
    """

    name = "elasticface"
    options = (SCALE, VARIANT, PLUS, MARGIN, STD)

    def __init__(
        self,
        in_features: int,
        out_features: int,
        s: float | None = SCALE.default,
        variant: str = VARIANT.default,
        plus: bool = PLUS.default,
        m: float | None = MARGIN.default,
        std: float | None = STD.default,
        normalize_weight_in_place: bool = True,
    ) -> None:
        super().__init__(
            in_features,
            out_features,
            normalize_weight_in_place,
            s=s,
            variant=variant,
            plus=plus,
            m=m,
            std=std,
        )
        official_m, official_std = OFFICIAL_DEFAULTS[(self.variant, self.plus)]
        self.m = official_m if self.m is None else self.m
        self.std = official_std if self.std is None else self.std

    def draw_margins(self, cos_target: Tensor, valid: Tensor) -> Tensor:
        """One margin per row, ~ N(m, σ); with ``plus``, re-assigned by the ranking of cosθ_y."""
        margins = self.m + self.std * torch.randn(cos_target.shape, device=cos_target.device)
        if not self.plus:
            return margins
        with torch.no_grad():
            # On a class-sharded head a row's target (and its draw) lives on one shard only: sum
            # them over the shards so that every shard ranks the whole batch alike.
            zero = torch.zeros_like(cos_target)
            shared = self.sum_over_shards(
                torch.stack(
                    [torch.where(valid, cos_target, zero), torch.where(valid, margins, zero), valid.float()]
                )
            )
            everywhere, cos_all, drawn = shared[2] > 0, shared[0], shared[1]
            # Labelled rows first in both orders (unlabelled ones sort to the end): rows by
            # descending cosθ_y, their own draws ascending; then the k-th row gets the k-th draw.
            rows = torch.argsort(torch.where(everywhere, cos_all, -math.inf), descending=True)
            ascending = torch.sort(torch.where(everywhere, drawn, math.inf)).values
            assigned = torch.empty_like(margins).index_put_((rows,), ascending)
            # Unlabelled rows' margins are discarded; m keeps the unused branch finite.
            return torch.where(valid, assigned, self.m)

    def margin(self, cos_target: Tensor, norms: Tensor, valid: Tensor) -> Tensor:
        margins = self.draw_margins(cos_target, valid) if self.training else self.m
        if self.variant == "arc":
            return additive_angular_margin(cos_target, margins, easy_margin=False)
        return cos_target - margins
