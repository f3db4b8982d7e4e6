"""Backbones registered by name; ``build_backbone`` builds one and records how, for checkpoints."""

from __future__ import annotations

import os
from collections.abc import Callable

from torch import nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_backbone(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a variant function ``fn(embed_dim=..., **kwargs) -> nn.Module`` under its name."""
    _REGISTRY[fn.__name__] = fn
    return fn


def list_backbones() -> list[str]:
    return sorted(_REGISTRY)


def build_backbone(
    backbone: str, embed_dim: int = 512, weights: str | os.PathLike | None = None, **kwargs
) -> nn.Module:
    """Build a registered backbone; its input is N×3×112×112, its output the raw N×embed_dim embedding.

    ``weights``: a file or run directory to start from (arcface_torch, MagFace or femb; see
    :mod:`femb.backbones.weights`), loaded strictly; ``model.femb_weights`` then says where from.
    """
    if backbone not in _REGISTRY:
        raise ValueError(f"unknown backbone {backbone!r}; choices: {', '.join(list_backbones())}")
    if int(embed_dim) <= 0:
        raise ValueError(f"embed_dim must be positive, got {embed_dim}")
    model = _REGISTRY[backbone](embed_dim=int(embed_dim), **kwargs)
    # Recorded so that a checkpoint can rebuild the same network without pickling code.
    model.femb_spec = {"name": backbone, "kwargs": {"embed_dim": int(embed_dim), **kwargs}}
    if weights is not None:
        from femb.backbones.weights import load_weights_into

        model.femb_weights = load_weights_into(model, weights).describe()
    return model


def backbone_spec(model: nn.Module) -> dict:
    spec = getattr(model, "femb_spec", None)
    if spec is None:
        raise ValueError(
            "this backbone was not built by femb.backbones.build_backbone, so a checkpoint cannot "
            "rebuild it; register it with @register_backbone and build it by name"
        )
    return spec
