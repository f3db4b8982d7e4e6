"""SphereFace (A-Softmax): target ‖x‖·(λ·cosθ_y + ψ(θ_y))/(1+λ), λ annealed from 1000 to 5."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from femb.headers.base import MarginHeader, monotonic_cos
from femb.headers.options import HeadOption
from femb.headers.registry import register_header

MARGIN = HeadOption("m", int, 4, "multiplicative angular margin: ψ(m·θ_y)", low=1, high=8)
BASE = HeadOption("base", float, 1000.0, "λ at step 0 (λ blends cosθ_y into the target)", low=0.0)
GAMMA = HeadOption("gamma", float, 0.12, "λ = base·(1 + gamma·iter)^(−power)", low=0.0)
POWER = HeadOption("power", float, 1.0, "exponent of λ's decay", low=0.0)
LAMBDA_MIN = HeadOption("lambda_min", float, 5.0, "floor of λ", low=0.0)


def chebyshev_cos_multiple(cos: Tensor, m: int) -> Tensor:
    """cos(m·θ) as the Chebyshev polynomial T_m(cosθ): exact, smooth gradient even at cosθ = ±1."""
    previous, current = torch.ones_like(cos), cos
    for _ in range(m - 1):
        previous, current = current, 2.0 * cos * current - previous
    return current


@register_header
class SphereFaceHeader(MarginHeader):
    """A-Softmax with the original training's λ blend; logits are scaled by ‖x‖, not ``s``.

    ψ(θ) = (−1)^k·cos(mθ) − 2k with k = ⌊mθ/π⌋ is decreasing over [0, π] (plain cos(mθ) is not:
    it would *raise* the target near θ = 90° for m = 4). The target is ‖x‖·(λ·cosθ + ψ(θ))/(1+λ)
    with λ = max(λ_min, base·(1 + γ·iter)^(−power)); ``iter`` is a buffer (so it resumes from a
    checkpoint) that counts training-mode forwards. Others are ‖x‖·cosθ_j.
    """

    name = "sphereface"
    # No `s`: the scale is ‖x‖.
    options = (MARGIN, BASE, GAMMA, POWER, LAMBDA_MIN)

    def __init__(
        self,
        in_features: int,
        out_features: int,
        m: int = MARGIN.default,
        base: float = BASE.default,
        gamma: float = GAMMA.default,
        power: float = POWER.default,
        lambda_min: float = LAMBDA_MIN.default,
        normalize_weight_in_place: bool = True,
    ) -> None:
        super().__init__(
            in_features,
            out_features,
            normalize_weight_in_place,
            m=m,
            base=base,
            gamma=gamma,
            power=power,
            lambda_min=lambda_min,
        )
        self.register_buffer("iter", torch.zeros((), dtype=torch.long))

    def current_lambda(self) -> Tensor:
        """λ at the current ``iter``, as a 0-d float32 tensor (no host sync on an accelerator)."""
        annealed = self.base * (1.0 + self.gamma * self.iter.float()) ** (-self.power)
        return annealed.clamp_min(self.lambda_min)

    def margin(self, cos_target: Tensor, norms: Tensor, valid: Tensor) -> Tensor:
        with torch.no_grad():
            theta = torch.acos(cos_target.clamp(-1.0, 1.0))
            k = torch.floor(self.m * theta / math.pi).clamp_(0, self.m - 1)
        psi = monotonic_cos(chebyshev_cos_multiple(cos_target, self.m), k)
        lam = self.current_lambda()
        return (lam * cos_target + psi) / (1.0 + lam)

    def logit_scale(self, norms: Tensor) -> Tensor:
        return norms

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        logits = super().forward(embeddings, labels)
        if self.training:
            with torch.no_grad():
                self.iter.add_(1)
        return logits
