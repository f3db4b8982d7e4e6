"""MagFace: an ArcFace margin that grows with the feature norm, plus a norm regulariser g(a)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from femb.headers.arcface import EASY_MARGIN
from femb.headers.base import MarginHeader, additive_angular_margin
from femb.headers.options import HeadOption, scale_option
from femb.headers.registry import register_header

SCALE = scale_option()
L_A = HeadOption("l_a", float, 10.0, "lower bound of the feature norm a", low=0.0, low_open=True)
U_A = HeadOption("u_a", float, 110.0, "upper bound of the feature norm a (above l_a)", low=0.0, low_open=True)
L_M = HeadOption("l_m", float, 0.45, "margin at a = l_a, radians", low=0.0, high=math.pi / 2)
U_M = HeadOption("u_m", float, 0.8, "margin at a = u_a, radians", low=0.0, high=math.pi / 2)
LAMBDA_G = HeadOption(
    "lambda_g", float, 20.0, "weight of the norm regulariser g(a) in the loss (run scripts: 35)", low=0.0
)
# Easy margin is on in the official code, off here (ArcFace's option and default): with it the
# target logit jumps down as cosθ_y crosses 0, so the loss *climbs* while training moves samples
# past 90° (the first steps of a MagFace training, both ways: benchmarks/RESULTS.md). The option
# ``easy_margin=True`` gives the official behaviour.


@register_header
class MagFaceHeader(MarginHeader):
    """Target s·cos(θ_y + m(a)), a = ‖x‖ clamped to [l_a, u_a], m(a) linear from l_m to u_m.

    The loss also needs λ_g·mean(g(a)), g(a) = a/u_a² + 1/a: :meth:`extra_loss` returns it, and
    the model adds it to the cross-entropy (adding it to every logit would vanish in the softmax).
    The margin is differentiable in a, as in the official code. Outside [l_a, u_a] the clamp
    gives the norm no gradient from either term. Easy margin is off by default, unlike the
    official code (the comment above its options says why); λ_g = 20 is its argparse default
    (its run scripts use 35).
    """

    name = "magface"
    options = (SCALE, L_A, U_A, L_M, U_M, LAMBDA_G, EASY_MARGIN)

    def __init__(
        self,
        in_features: int,
        out_features: int,
        s: float | None = SCALE.default,
        l_a: float = L_A.default,
        u_a: float = U_A.default,
        l_m: float = L_M.default,
        u_m: float = U_M.default,
        lambda_g: float = LAMBDA_G.default,
        easy_margin: bool = EASY_MARGIN.default,
        normalize_weight_in_place: bool = True,
    ) -> None:
        super().__init__(
            in_features,
            out_features,
            normalize_weight_in_place,
            s=s,
            l_a=l_a,
            u_a=u_a,
            l_m=l_m,
            u_m=u_m,
            lambda_g=lambda_g,
            easy_margin=easy_margin,
        )
        if not self.l_a < self.u_a:
            raise ValueError(f"head 'magface' needs l_a < u_a, got l_a={l_a}, u_a={u_a}")

    def clamped_norm(self, norms: Tensor) -> Tensor:
        return norms.clamp(self.l_a, self.u_a)

    def margin_of(self, a: Tensor) -> Tensor:
        """m(a) = (u_m − l_m)/(u_a − l_a)·(a − l_a) + l_m."""
        return (self.u_m - self.l_m) / (self.u_a - self.l_a) * (a - self.l_a) + self.l_m

    def margin(self, cos_target: Tensor, norms: Tensor, valid: Tensor) -> Tensor:
        return additive_angular_margin(cos_target, self.margin_of(self.clamped_norm(norms)), self.easy_margin)

    def extra_loss(self, embeddings: Tensor) -> Tensor:
        """λ_g·mean(a/u_a² + 1/a), a float32 scalar to add to the cross-entropy."""
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            a = self.clamped_norm(torch.linalg.vector_norm(embeddings.float(), dim=1))
            return self.lambda_g * (a / self.u_a**2 + 1.0 / a).mean()
