"""``build_backbone``: a registered backbone by name, optionally started from weights on disk.

It sits above both :mod:`femb.backbones.registry` (the names) and :mod:`femb.backbones.weights`
(the files), which itself builds networks through the registry: neither of those two imports the
other's caller, so there is no import cycle.
"""

from __future__ import annotations

import os

from torch import nn

from femb.backbones.registry import create_backbone
from femb.backbones.weights import load_weights_into


def build_backbone(
    backbone: str, embed_dim: int = 512, weights: str | os.PathLike | None = None, **kwargs
) -> nn.Module:
    """Build a registered backbone; its input is N×3×112×112, its output the raw N×embed_dim embedding.

    ``weights``: a file or run directory to start from (arcface_torch, MagFace or femb; see
    :mod:`femb.backbones.weights`), loaded strictly; ``model.femb_weights`` then says where from.
    """
    model = create_backbone(backbone, embed_dim=embed_dim, **kwargs)
    if weights is not None:
        model.femb_weights = load_weights_into(model, weights).describe()
    return model
