"""AdaFace: a margin that adapts to image quality, read from the feature norm against the batch's."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from femb.headers.base import MarginHeader
from femb.headers.options import HeadOption, scale_option
from femb.headers.registry import register_header

SCALE = scale_option()
MARGIN = HeadOption(
    "m", float, 0.4, "margin m: angle θ − m·g, then minus m + m·g (g in [−1, 1])", low=0.0, high=1.0
)
H = HeadOption(
    "h", float, 0.333, "how far the normalised norm moves the margin: g = clip(h·z, −1, 1)", low=0.0
)
T_ALPHA = HeadOption(
    "t_alpha",
    float,
    0.01,
    "EMA momentum of the norm mean/std (the paper's training value; 1 uses each batch's alone)",
    low=0.0,
    high=1.0,
)
# The official code's stability constants: cosine and angle kept this far from their ends, and
# the norms clipped to [0.001, 100] before they enter the statistics.
EPS = 1e-3
NORM_MIN, NORM_MAX = 0.001, 100.0


@register_header
class AdaFaceHeader(MarginHeader):
    """Target s·(cos(θ_y − m·g) − (m + m·g)), g = clip(h·(‖x‖ − μ)/(σ + 0.001), −1, 1).

    Defaults m=0.4, h=0.333, s=64 and t_alpha=0.01: the value the paper's training runs pass
    (the official class's own default, 1.0, would use each batch's statistics alone). A high
    norm (good image, g > 0) turns the margin toward ArcFace's angular one, a low norm toward
    CosFace's additive one. ‖x‖ is clipped to [0.001, 100] and detached (the norm gets no
    gradient through the margin). μ and σ (buffers ``batch_mean``/``batch_std``, starting at 20
    and 100, so they resume) are EMAs of the batch's mean and *unbiased* std, updated in training
    mode *before* use; eval uses them as they are. θ_y − m·g is clipped to [0.001, π − 0.001] and
    cosθ_y to [−1 + 0.001, 1 − 0.001] before acos, so the gradient is finite at cosθ_y = ±1 (and
    zero within 0.001 of them). Unlike the official code, non-target cosines are not clamped
    (they differ from its logits by at most s·0.001, and only within 0.001 of ±1).

    A batch of one: its unbiased std is undefined (0/0), so σ keeps its running value and only
    μ moves. The statistics cover every row, labelled or not (a norm needs no label), and come
    from :meth:`batch_statistics`; on a class-sharded head the embeddings are all-gathered, so
    every shard sees the whole batch and computes the same μ and σ without a reduction.
    """

    name = "adaface"
    options = (SCALE, MARGIN, H, T_ALPHA)

    def __init__(
        self,
        in_features: int,
        out_features: int,
        s: float | None = SCALE.default,
        m: float = MARGIN.default,
        h: float = H.default,
        t_alpha: float = T_ALPHA.default,
        normalize_weight_in_place: bool = True,
    ) -> None:
        super().__init__(in_features, out_features, normalize_weight_in_place, s=s, m=m, h=h, t_alpha=t_alpha)
        self.register_buffer("batch_mean", torch.tensor(20.0))
        self.register_buffer("batch_std", torch.tensor(100.0))

    def batch_statistics(self, norms: Tensor) -> tuple[int, Tensor, Tensor]:
        """``(count, mean, unbiased std)`` of the clipped norms of this batch (std NaN below two).

        The one place the batch is reduced: a wrapper that splits the batch over processes
        without gathering it overrides this method (all-reduce count, Σ and Σ(x − μ)²).
        """
        count = norms.numel()  # a shape, so branching on it costs no device sync
        mean = norms.mean()
        variance = (
            (norms - mean).square().sum() / (count - 1) if count > 1 else torch.full_like(mean, math.nan)
        )
        return count, mean, variance.sqrt()

    def update_statistics(self, cos_target: Tensor, norms: Tensor, valid: Tensor) -> None:
        count, mean, std = self.batch_statistics(norms.clamp(NORM_MIN, NORM_MAX))
        alpha = self.t_alpha
        if count >= 1:
            self.batch_mean.copy_(alpha * mean + (1.0 - alpha) * self.batch_mean)
        if count >= 2:
            self.batch_std.copy_(alpha * std + (1.0 - alpha) * self.batch_std)

    def margin(self, cos_target: Tensor, norms: Tensor, valid: Tensor) -> Tensor:
        safe_norms = norms.detach().clamp(NORM_MIN, NORM_MAX)
        g = (self.h * (safe_norms - self.batch_mean) / (self.batch_std + EPS)).clamp(-1.0, 1.0)
        theta = torch.acos(cos_target.clamp(-1.0 + EPS, 1.0 - EPS))
        angular = torch.cos((theta - self.m * g).clamp(EPS, math.pi - EPS))
        return angular - (self.m + self.m * g)
