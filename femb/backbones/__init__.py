"""Backbones by name: ``build_backbone(backbone="iresnet50", embed_dim=512)``."""

from femb.backbones import iresnet, mobilefacenet  # noqa: F401  (registers the variants)
from femb.backbones.build import build_backbone
from femb.backbones.registry import backbone_spec, list_backbones, register_backbone

__all__ = ["backbone_spec", "build_backbone", "list_backbones", "register_backbone"]
