"""Sub-center ArcFace: K centres per class, the class's cosine is the best of them, then ArcFace."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from femb.headers.arcface import EASY_MARGIN, MARGIN, SCALE
from femb.headers.base import MarginHeader, additive_angular_margin
from femb.headers.options import HeadOption
from femb.headers.registry import register_header

CENTRES = HeadOption("k", int, 3, "centres per class (weight rows are class-major: c·k + j)", low=1, high=32)


@register_header
class SubCenterArcFaceHeader(MarginHeader):
    """cosθ_c = max over class c's K centres; then ArcFace s·cos(θ_y + m). Defaults K=3, s=64, m=0.5.

    ``weight`` has ``out_features·k`` rows, class-major (row c·k + j is centre j of class c), and
    the logits ``out_features`` columns. A noisy sample can then sit by a non-dominant centre of
    its class instead of pulling the dominant one; after training,
    :func:`find_dominant_centre_outliers` finds such samples. Each row's gradient reaches only
    the centre that gave the max. With k=1 this is ArcFace (same margin function).
    """

    name = "subcenter_arcface"
    options = (SCALE, MARGIN, EASY_MARGIN, CENTRES)

    def __init__(
        self,
        in_features: int,
        out_features: int,
        s: float | None = SCALE.default,
        m: float = MARGIN.default,
        easy_margin: bool = EASY_MARGIN.default,
        k: int = CENTRES.default,
        normalize_weight_in_place: bool = True,
    ) -> None:
        super().__init__(
            in_features, out_features, normalize_weight_in_place, s=s, m=m, easy_margin=easy_margin, k=k
        )

    @property
    def centres_per_class(self) -> int:
        return self.k

    def class_logits(self, scaled_embeddings: Tensor) -> Tensor:
        per_centre = super().class_logits(scaled_embeddings)
        # `max` rather than `amax`: its backward needs only the indices, not the values, so the
        # base may still write the target logit into the result in place.
        return per_centre.view(-1, self.out_features, self.k).max(dim=2).values

    def margin(self, cos_target: Tensor, norms: Tensor, valid: Tensor) -> Tensor:
        return additive_angular_margin(cos_target, self.m, self.easy_margin)


@torch.no_grad()
def find_dominant_centre_outliers(
    header: SubCenterArcFaceHeader,
    embeddings: Tensor,
    labels: Tensor,
    threshold_deg: float = 75.0,
    chunk_size: int = 4096,
) -> Tensor:
    """Indices (sorted, int64) of the samples more than ``threshold_deg`` from their class's dominant centre.

    A class's dominant centre is the one that is nearest for most of its samples (ties: the lower
    index). The sub-center ArcFace paper drops such samples as label noise (75° in its
    experiments) and retrains. ``embeddings`` (``N × D``, any norm) and ``labels`` (``N``;
    ``-1`` is skipped) are read in chunks of ``chunk_size`` rows; the result is on their device.
    """
    labels = labels.to(embeddings.device).long()
    if labels.shape[0] != embeddings.shape[0]:
        raise ValueError(f"{embeddings.shape[0]} embeddings but {labels.shape[0]} labels")
    if bool((labels >= header.out_features).any()) or bool((labels < -1).any()):
        raise ValueError(f"labels must be in [0, {header.out_features}) or -1")
    k = header.centres_per_class
    centres = F.normalize(header.weight.detach().float(), dim=1).to(embeddings.device)
    centres = centres.view(header.out_features, k, -1)
    labelled = labels >= 0
    classes = labels.clamp_min(0)

    # cos to each centre of the sample's own class: N × k (never N × C·k).
    cos_own = torch.empty(labels.shape[0], k, device=embeddings.device)
    for start in range(0, labels.shape[0], chunk_size):
        stop = start + chunk_size
        x = F.normalize(embeddings[start:stop].float(), dim=1)
        cos_own[start:stop] = torch.einsum("nd,nkd->nk", x, centres[classes[start:stop]])

    nearest = classes * k + cos_own.argmax(dim=1)
    # Counted on the CPU: bincount has no deterministic CUDA kernel, and this runs once, offline.
    votes = torch.bincount(nearest[labelled].cpu(), minlength=header.out_features * k)
    dominant = votes.view(header.out_features, k).argmax(dim=1).to(embeddings.device)
    cos_dominant = cos_own.gather(1, dominant[classes].unsqueeze(1)).squeeze(1)
    outliers = labelled & (cos_dominant < math.cos(math.radians(threshold_deg)))
    return outliers.nonzero().squeeze(1)


__all__ = ["SubCenterArcFaceHeader", "find_dominant_centre_outliers"]
