"""The shared base of every classification head: class centres, cosine logits, the margin hook.

A margin head computes scale·cosθ_j between the normalised embedding and each normalised class
centre (the scale, ``s`` or ‖x‖ for SphereFace, multiplies x̂ before the matmul, which is cheaper
than multiplying ``N×C`` logits), lets the method change only the target logit
(:meth:`MarginHeader.margin`, on cosθ_y clamped to [−1, 1]) and writes it back in place. The
result goes to a plain ``torch.nn.CrossEntropyLoss``.

Class centres stay unit-norm *in place*
---------------------------------------
Normalising the full ``C×D`` weight through autograd every step (``F.normalize(weight)``) costs
more than twice a plain ``linear + cross_entropy`` step at C=100k on CPU (``benchmarks/bench_heads.py``;
figures in benchmarks/RESULTS.md): the normalised copy, its backward and the projection of the
gradient all touch ``C×D`` floats. Instead, in training mode
the rows of ``weight`` are divided by their norms under ``no_grad`` before the matmul (only when
``weight`` changed since the last time: after an optimizer step, ``load_state_dict`` or a device
move), and ``weight`` itself is then used as the unit centres (as opensphere does).

What this does to the gradient: autograd sees ``cos = x̂ · Wᵀ`` with ``W`` already unit, so
``dL/dW_j`` is not multiplied by ``(I − ŵŵᵀ)/‖W_j‖``: its radial component is kept. The optimizer
step therefore moves ``W_j`` slightly off the sphere and the next forward projects it back — a
projected-gradient scheme on the sphere. The logits and the gradients with respect to the
embeddings are *exactly* those of the fully normalised version (the centres are unit already);
``dL/dW_j`` differs by the factor ‖W_j‖ (1 here) and the radial part, which the next
renormalisation removes.
``normalize_weight_in_place=False`` gives the autograd-normalised version (slower, and
``weight`` is left as the optimizer made it). In eval mode ``weight`` is never written: the
centres are normalised out of place, so a non-normalised checkpoint is read correctly either way.

Numerics
--------
All margin maths runs in float32 with autocast disabled, whatever the caller's autocast
(``exp(64)`` overflows fp16, and bf16 has 8 bits of mantissa for cosines near 1). Margins never
call ``acos`` on an unclamped cosine, so losses and gradients stay finite at cosθ = ±1.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from femb.headers.options import HeadOption, OptionValue

# F.normalize's default; also used for the in-place renormalisation so both give identical centres.
NORM_EPS = 1e-12
# Floor of sin²θ in sqrt(1 − cos²θ): keeps d sinθ / d cosθ finite at cosθ = ±1.
SIN2_EPS = 1e-7
# Distance from ±1 of the cosine given to acos, whose derivative is infinite at ±1.
ACOS_EPS = 1e-6


class Header(nn.Module):
    """A classification head: class centres ``weight`` (``out_features·centres_per_class × in_features``).

    Subclasses set the class attribute ``name`` (their registry name) and declare their
    hyper-parameters once in ``options``; the constructor passes its option arguments on to
    ``Header.__init__``, which checks each against its declaration (type and range) and stores it
    as an attribute of the same name. :meth:`hparams` lists them, so that
    :func:`femb.headers.header_spec` can rebuild the head.
    """

    name: str = ""
    options: tuple[HeadOption, ...] = ()
    # Rows of `weight` per class: 1, except for heads with several centres per class (sub-centres).
    centres_per_class: int = 1

    def __init__(self, in_features: int, out_features: int, **options: Any) -> None:
        super().__init__()
        if int(in_features) <= 0 or int(out_features) <= 0:
            raise ValueError(
                f"in_features and out_features must be positive, got {in_features}, {out_features}"
            )
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        for option in self.options:
            try:
                value = option.parse(options.pop(option.name, option.default))
            except ValueError as error:
                raise ValueError(f"head {self.name!r}: {error}") from None
            setattr(self, option.name, value)
        if options:
            known = ", ".join(option.name for option in self.options) or "none"
            raise TypeError(
                f"head {self.name!r} takes no option {sorted(options)[0]!r} (its options: {known})"
            )
        rows = self.out_features * int(self.centres_per_class)
        self.weight = nn.Parameter(torch.empty(rows, self.in_features))

    def hparams(self) -> dict[str, OptionValue]:
        """Constructor arguments that rebuild this head (numbers, bools and strings only)."""
        declared = {option.name: getattr(self, option.name) for option in self.options}
        return {"in_features": self.in_features, "out_features": self.out_features, **declared}

    def extra_loss(self, embeddings: Tensor) -> Tensor | None:
        """An extra, already weighted, scalar term for the loss; ``None`` when the method has none."""
        return None

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value}" for key, value in self.hparams().items())


class MarginHeader(Header):
    """Cosine logits with a per-method margin on the target logit; see the module docstring.

    Hooks, each a no-op here, in the order :meth:`forward` calls them:

    - :meth:`class_logits`: scaled cosines of each class (sub-centres take the max here);
    - :meth:`update_statistics`: training mode only, *before* the margin, for EMA buffers;
    - :meth:`margin`: the new target logit (before scaling), the one hook most heads override;
    - :meth:`non_target_logits`: for the rare head that also changes other classes' logits;
    - :meth:`logit_scale`: when the scale is not ``s``.

    :meth:`sum_over_shards` is where a class-sharded wrapper reduces statistics of the targets.

    Rows labelled ``-1`` (their class is held by another shard) get no margin, and no change to
    their other logits either.
    """

    def __init__(
        self, in_features: int, out_features: int, normalize_weight_in_place: bool = True, **options: Any
    ) -> None:
        super().__init__(in_features, out_features, **options)
        if getattr(self, "s", 0.0) is None:  # the declared default: resolved from the classes
            self.s = adacos_scale(self.out_features)
        self.normalize_weight_in_place = bool(normalize_weight_in_place)
        # (storage, version) of `weight` when it was last renormalised; skipped while unchanged, so
        # two forwards before one backward (or activation checkpointing) never write a saved tensor.
        self._unit_weight_key: tuple[int, int] | None = None
        nn.init.normal_(self.weight)
        with torch.no_grad():
            self.weight.div_(torch.linalg.vector_norm(self.weight, dim=1, keepdim=True))

    def hparams(self) -> dict[str, OptionValue]:
        return {**super().hparams(), "normalize_weight_in_place": self.normalize_weight_in_place}

    def margin(self, cos_target: Tensor, norms: Tensor, valid: Tensor) -> Tensor:
        """The new target logit before scaling, from ``cosθ_y`` and ‖x‖ (all three of shape ``N``).

        ``valid`` marks the rows whose result is used (label ≥ 0); the others are discarded.
        """
        return cos_target

    def logit_scale(self, norms: Tensor) -> float | Tensor:
        """What multiplies every logit: ``s`` (a float) or one value per row (shape ``N``)."""
        return self.s

    def class_logits(self, scaled_embeddings: Tensor) -> Tensor:
        """``N × out_features`` scaled cosines from the scaled unit embeddings (``N × D``)."""
        return F.linear(scaled_embeddings, self.unit_centres())

    def update_statistics(self, cos_target: Tensor, norms: Tensor, valid: Tensor) -> None:
        """Update the head's running statistics (detached inputs); called in training mode only."""

    def non_target_logits(
        self, logits: Tensor, cos_target: Tensor, valid: Tensor, scale: float | Tensor
    ) -> Tensor:
        """The logits with non-target entries changed (out of place); the target column is overwritten."""
        return logits

    def sum_over_shards(self, tensor: Tensor) -> Tensor:
        """``tensor`` summed over the shards of a class-sharded head: here, one shard, the identity.

        :class:`femb.training.sharded_head.ShardedMarginLoss` replaces it during a forward with an
        all-reduce (no gradient). A head whose statistics come from the *target* cosines (which
        are spread over the shards) sums its partial quantities through it, so that its buffers
        stay identical on every rank.
        """
        return tensor

    def unit_centres(self) -> Tensor:
        """The class centres with unit rows, as float32 (in training, ``weight`` renormalised in place)."""
        weight = self.weight
        if not self.normalize_weight_in_place or not self.training:
            return F.normalize(weight.float(), dim=1, eps=NORM_EPS)
        key = (weight.data_ptr(), weight._version)
        if key != self._unit_weight_key:
            with torch.no_grad():
                weight.div_(torch.linalg.vector_norm(weight, dim=1, keepdim=True).clamp_min(NORM_EPS))
            self._unit_weight_key = (weight.data_ptr(), weight._version)
        return weight.float()

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """Margin-adjusted, scaled float32 logits ``N×C`` for ``torch.nn.CrossEntropyLoss``."""
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            x = embeddings.float()
            norms = torch.linalg.vector_norm(x, dim=1)
            scale = self.logit_scale(norms)
            # x̂·scale: the scale goes on the N×D side of the matmul, so no N×C pass multiplies logits.
            row_factor = scale / norms.clamp_min(NORM_EPS)
            logits = self.class_logits(x * row_factor.unsqueeze(1))

            rows = torch.arange(logits.shape[0], device=logits.device)
            valid = labels >= 0
            columns = labels.long().clamp_min(0)  # column 0 only as a placeholder for label -1
            # Advanced indexing (unlike gather) saves no reference to `logits` for the backward, so
            # the target can be written back in place below: no N×C copy in the forward.
            scaled_target = logits[rows, columns]
            # Only the target goes through the margin maths, so only it is clamped: the other
            # cosines are merely scaled, and a rounding ulp past ±1 does them no harm.
            divisor = scale.clamp_min(NORM_EPS) if isinstance(scale, Tensor) else scale
            cos_target = (scaled_target / divisor).clamp(-1.0, 1.0)
            if self.training:
                with torch.no_grad():
                    self.update_statistics(cos_target.detach(), norms.detach(), valid)
            margin_target = self.margin(cos_target, norms, valid) * scale
            logits = self.non_target_logits(logits, cos_target, valid, scale)
            # A row labelled -1 keeps column 0 as non_target_logits left it (on a shard,
            # CurricularFace re-weights rows whose class another shard holds).
            target = torch.where(valid, margin_target, logits[rows, columns])
            logits.index_put_((rows, columns), target)
        return logits


def adacos_scale(num_classes: int) -> float:
    """AdaCos's fixed scale √2·ln(C − 1) (Zhang et al., CVPR 2019), never below 4: every head's default ``s``.

    Why not the papers' s = 64: a fresh head has cosθ_j ≈ N(0, 1/D) to every centre, so with
    s = 64 the softmax is saturated (the hardest negative's logit is about +15, an ArcFace
    target about −30): the loss is s·(max_j cosθ_j − target), a hinge with slope s that weighs
    every sample alike. Its gradient first spreads the features (they grow correlated, and their
    cosines to the many centres not yet trained widen), so the hardest negative's cosine rises
    faster than the target's and the loss climbs for tens of steps, even with m = 0
    (``benchmarks/bench_first_steps.py``; figures in benchmarks/RESULTS.md). √2·ln(C − 1) is the scale
    at which a target at 90° still gets a useful, sample-dependent gradient. It depends on the
    number of classes only, so it is fixed when the head is built and recorded as ``s`` in the
    spec (a class-sharded head is built from the full head's spec, so every shard agrees). With
    2–4 classes the formula gives almost nothing (0.98 for 2), hence the floor of 4.
    """
    return round(max(4.0, math.sqrt(2.0) * math.log(max(2, int(num_classes)) - 1)), 4)


def ema(running: Tensor, batch: Tensor, alpha: float, count: Tensor, needed: int = 1) -> Tensor:
    """``alpha·batch + (1 − alpha)·running`` where the batch had at least ``needed`` values, else ``running``.

    Written with ``torch.where`` (no ``if`` on a device tensor, so no host sync per step).
    """
    return torch.where(count >= needed, alpha * batch + (1.0 - alpha) * running, running)


def sin_from_cos(cos: Tensor) -> Tensor:
    """sinθ for θ ∈ [0, π], with a floor on sin²θ so that the gradient is finite at cosθ = ±1."""
    return torch.sqrt((1.0 - cos * cos).clamp_min(SIN2_EPS))


def safe_acos(cos: Tensor) -> Tensor:
    """θ = acos(cos), the cosine first clamped to [−1+ε, 1−ε] (acos' is infinite at ±1).

    Clamping is monotonic, so θ stays non-increasing in cosθ; the cost is a zero gradient for the
    few cosines within ε of ±1 and an angle error below sqrt(2ε) ≈ 1.4e-3 rad there.
    """
    return torch.acos(cos.clamp(-1.0 + ACOS_EPS, 1.0 - ACOS_EPS))


def monotonic_cos(cos_phi: Tensor, k: Tensor) -> Tensor:
    """A-Softmax's ψ: (−1)^k·cos φ − 2k with k = ⌊φ/π⌋ (given, without gradient).

    cos φ turns back up past φ = π; ψ continues it downwards instead, so a target built from
    cos(θ + margin) keeps decreasing over θ ∈ [0, π] and stays continuous.
    """
    sign = 1.0 - 2.0 * torch.remainder(k, 2.0)
    return sign * cos_phi - 2.0 * k


def _cos_sin(m: float | Tensor) -> tuple[float | Tensor, float | Tensor]:
    # A float margin stays a Python float: no tensor, no kernel launch for two constants.
    if isinstance(m, Tensor):
        return torch.cos(m), torch.sin(m)
    return math.cos(m), math.sin(m)


def cos_plus(cos: Tensor, m: float | Tensor) -> Tensor:
    """cos(θ + m) = cosθ·cos m − sinθ·sin m from cosθ, without acos (exact, finite derivative)."""
    cos_m, sin_m = _cos_sin(m)
    return cos * cos_m - sin_from_cos(cos) * sin_m


def additive_angular_margin(cos: Tensor, m: float | Tensor, easy_margin: bool) -> Tensor:
    """cos(θ + m) from cosθ, as used by ArcFace (``m`` a float) and MagFace (``m`` per row).

    :func:`cos_plus` gives the exact derivative s·sin(θ+m)/sinθ (finite: sin²θ is floored).
    InsightFace instead writes the margin in place under ``no_grad`` (a straight-through gradient
    of s); we do not.

    Where θ + m > π, cos(θ+m) would rise again; InsightFace's fallback cosθ − m·sin m is used for
    cosθ ≤ cos(π − m), which keeps the target decreasing in θ. With ``easy_margin`` the margin is
    applied only where cosθ > 0 (θ < π/2) and there is no fallback; the target then jumps back up
    at θ = 90° (from cos(π/2 + m) to 0), as in the official code.
    """
    cos_theta_plus_m = cos_plus(cos, m)
    if easy_margin:
        return torch.where(cos > 0, cos_theta_plus_m, cos)
    cos_m, sin_m = _cos_sin(m)
    # cos(π − m) = −cos m; past it, θ + m > π.
    return torch.where(cos > -cos_m, cos_theta_plus_m, cos - m * sin_m)


__all__ = [
    "Header",
    "adacos_scale",
    "MarginHeader",
    "additive_angular_margin",
    "cos_plus",
    "ema",
    "monotonic_cos",
    "safe_acos",
    "sin_from_cos",
]
