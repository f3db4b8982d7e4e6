"""Backbones with realistic activations for export tests."""

from __future__ import annotations

import torch
from torch import nn

from femb.backbones import build_backbone
from femb.export.parity import face_batch


def faces(n: int) -> torch.Tensor:
    """``n`` normalised synthetic faces, float32 ``n×3×112×112``."""
    return (face_batch(n).float() - 127.5) / 127.5


def calibrated_backbone(name: str, embed_dim: int = 32, seed: int = 0, **kwargs) -> nn.Module:
    """An untrained backbone whose BatchNorm statistics come from face images.

    An untrained network in eval mode uses running statistics (0, 1) that do not match its
    activations, so MobileFaceNet's embeddings come out around 1e-5 — a poor test of fp16 parity.
    """
    torch.manual_seed(seed)
    model = build_backbone(name, embed_dim=embed_dim, **kwargs)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration batches
    model.train()
    with torch.no_grad():
        model(faces(4))
    return model.eval()


def write_identity_folder(root, identities: int, per_identity: int, seed: int):
    """``root/id<label>/<index>.png``: synthetic faces, one folder per identity; returns ``root``."""
    from PIL import Image

    from femb.data import SyntheticFaces

    faces = SyntheticFaces(
        num_identities=identities, images_per_identity=per_identity, seed=seed, cache=False
    )
    for index in range(len(faces)):
        image, label = faces.load_uint8(index)
        (root / f"id{label}").mkdir(exist_ok=True)
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(root / f"id{label}" / f"{index}.png")
    return root
