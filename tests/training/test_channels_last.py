"""The trainer feeds channels-last input to the backbones the registry lists for the device, and
only to those (a measured choice per backbone and device: benchmarks/bench_channels_last.py)."""

import torch

from femb.backbones import build_backbone, registry
from femb.data import SyntheticFaces
from femb.headers import build_header
from femb.model import FaceEmbeddingModel
from femb.training.config import TrainConfig
from femb.training.loop import fit


def layouts_seen(monkeypatch, listed: dict) -> tuple[bool, bool]:
    """(input channels-last, first conv's weight channels-last) in a one-step fit."""
    monkeypatch.setattr(registry, "CHANNELS_LAST", listed)
    torch.manual_seed(0)
    backbone = build_backbone("mobilefacenet_small", embed_dim=16)
    model = FaceEmbeddingModel(backbone, build_header("cosface", 16, 4), torch.nn.CrossEntropyLoss())
    seen = []
    first_conv = next(m for m in backbone.modules() if isinstance(m, torch.nn.Conv2d))
    hook = first_conv.register_forward_pre_hook(
        lambda module, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last))
    )
    data = SyntheticFaces(num_identities=4, images_per_identity=4, seed=0, train=True)
    fit(model, data, TrainConfig(batch_size=8, device="cpu", steps=1, eval_every=0, checkpoint_every=0))
    hook.remove()
    return seen[0], first_conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_a_listed_backbone_trains_channels_last(monkeypatch):
    assert layouts_seen(monkeypatch, {"mobilefacenet_small": frozenset({"cpu"})}) == (True, True)


def test_an_unlisted_backbone_or_device_keeps_nchw(monkeypatch):
    assert layouts_seen(monkeypatch, {}) == (False, False)
    assert layouts_seen(monkeypatch, {"mobilefacenet_small": frozenset({"cuda"})}) == (False, False)


def test_the_cpu_listing_is_the_measured_one():
    """benchmarks/RESULTS.md: 1.28–1.47× faster steps on the CPU for these three, 3 rounds of 3;
    mobilefacenet_fast already feeds its layers channels-last itself (0.98×), and iresnet_tiny's
    channels-last backward crashes PyTorch's CPU kernels."""
    listed = {name for name in registry.list_backbones() if registry.prefers_channels_last(name, "cpu")}
    assert listed == {"iresnet18", "mobilefacenet_small", "mobilefacenet"}
    assert not any(registry.prefers_channels_last(name, "cuda") for name in registry.list_backbones())
