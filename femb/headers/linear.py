"""Plain softmax: logits = W x (+ b), no normalisation and no margin."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from femb.headers.base import Header
from femb.headers.options import HeadOption
from femb.headers.registry import register_header

BIAS = HeadOption("bias", bool, False, "add a learned bias per class")


@register_header
class LinearHeader(Header):
    """``x @ weight.T`` (+ ``bias``), computed in float32 like every head; ``labels`` are unused."""

    name = "linear"
    options = (BIAS,)

    def __init__(self, in_features: int, out_features: int, bias: bool = BIAS.default) -> None:
        super().__init__(in_features, out_features, bias=bias)
        # The option's name is nn.Linear's, so the checked bool is replaced by the parameter itself.
        self.bias = nn.Parameter(torch.empty(self.out_features)) if self.bias else None
        # nn.Linear's initialisation.
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_features)
            nn.init.uniform_(self.bias, -bound, bound)

    def hparams(self) -> dict[str, bool | int | float | str]:
        return {**super().hparams(), "bias": self.bias is not None}

    def forward(self, embeddings: Tensor, labels: Tensor | None = None) -> Tensor:
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            bias = None if self.bias is None else self.bias.float()
            return F.linear(embeddings.float(), self.weight.float(), bias)
