"""MagFace: an ArcFace margin that grows with the feature norm, plus a norm regulariser g(a)."""

from __future__ import annotations

import torch
from torch import Tensor

from femb.headers.base import MarginHeader, additive_angular_margin
from femb.headers.registry import register_header


@register_header
class MagFaceHeader(MarginHeader):
    """Target s·cos(θ_y + m(a)), a = ‖x‖ clamped to [l_a, u_a], m(a) linear from l_m to u_m.

    The loss also needs λ_g·mean(g(a)), g(a) = a/u_a² + 1/a: :meth:`extra_loss` returns it, and
    the model adds it to the cross-entropy (adding it to every logit would vanish in the softmax).
    The margin is differentiable in a, as in the official code. Outside [l_a, u_a] the clamp
    gives the norm no gradient from either term. Easy margin is on by default, as in the official
    code; λ_g = 20 is its argparse default (its run scripts use 35).
    """

    name = "magface"

    def __init__(
        self,
        in_features: int,
        out_features: int,
        s: float = 64.0,
        l_a: float = 10.0,
        u_a: float = 110.0,
        l_m: float = 0.45,
        u_m: float = 0.8,
        lambda_g: float = 20.0,
        easy_margin: bool = True,
        normalize_weight_in_place: bool = True,
    ) -> None:
        super().__init__(in_features, out_features, s=s, normalize_weight_in_place=normalize_weight_in_place)
        if not 0 < l_a < u_a:
            raise ValueError(f"MagFace needs 0 < l_a < u_a, got l_a={l_a}, u_a={u_a}")
        self.l_a, self.u_a = float(l_a), float(u_a)
        self.l_m, self.u_m = float(l_m), float(u_m)
        self.lambda_g = float(lambda_g)
        self.easy_margin = bool(easy_margin)

    def hparams(self) -> dict[str, int | float | bool | str]:
        return {
            **super().hparams(),
            "s": self.s,
            "l_a": self.l_a,
            "u_a": self.u_a,
            "l_m": self.l_m,
            "u_m": self.u_m,
            "lambda_g": self.lambda_g,
            "easy_margin": self.easy_margin,
        }

    def clamped_norm(self, norms: Tensor) -> Tensor:
        return norms.clamp(self.l_a, self.u_a)

    def margin_of(self, a: Tensor) -> Tensor:
        """m(a) = (u_m − l_m)/(u_a − l_a)·(a − l_a) + l_m."""
        return (self.u_m - self.l_m) / (self.u_a - self.l_a) * (a - self.l_a) + self.l_m

    def margin(self, cos_target: Tensor, norms: Tensor) -> Tensor:
        return additive_angular_margin(cos_target, self.margin_of(self.clamped_norm(norms)), self.easy_margin)

    def extra_loss(self, embeddings: Tensor) -> Tensor:
        """λ_g·mean(a/u_a² + 1/a), a float32 scalar to add to the cross-entropy."""
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            a = self.clamped_norm(torch.linalg.vector_norm(embeddings.float(), dim=1))
            return self.lambda_g * (a / self.u_a**2 + 1.0 / a).mean()
