"""Every registered backbone: shape, parameter counts of the full variants, every parameter learns."""

import pytest
import torch

from femb.backbones import build_backbone, list_backbones

# InsightFace layout at D=512 (millions of parameters), from the issue and the reference code.
EXPECTED_MILLIONS = {
    "iresnet18": 24.0,
    "iresnet34": 34.1,
    "iresnet50": 43.6,
    "iresnet100": 65.2,
    "iresnet200": 118.8,
    "mobilefacenet": 2.06,
}
# Forward/backward on the big ones is minutes on 2 cores; their code path is iresnet_tiny's.
FAST = [
    name
    for name in list_backbones()
    if name in {"iresnet_tiny", "mobilefacenet_small", "mobilefacenet", "iresnet18"}
]


def test_registry_lists_the_family():
    assert set(EXPECTED_MILLIONS) | {"iresnet_tiny", "mobilefacenet_small"} <= set(list_backbones())


def test_unknown_backbone_lists_choices():
    with pytest.raises(ValueError, match="unknown backbone 'resnet9'.*iresnet50.*mobilefacenet"):
        build_backbone("resnet9")


@pytest.mark.parametrize("name", sorted(EXPECTED_MILLIONS))
def test_parameter_count(name):
    model = build_backbone(name, embed_dim=512)
    millions = sum(p.numel() for p in model.parameters()) / 1e6
    assert millions == pytest.approx(EXPECTED_MILLIONS[name], rel=0.01)


@pytest.mark.parametrize("name", FAST)
def test_forward_backward_every_parameter_gets_a_gradient(name):
    torch.manual_seed(0)
    model = build_backbone(name, embed_dim=64)
    images = torch.randn(2, 3, 112, 112)
    out = model(images)
    assert out.shape == (2, 64)
    (out**2).sum().backward()
    for pname, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None, f"{name}.{pname} got no gradient"
            assert torch.isfinite(param.grad).all(), f"{name}.{pname} has a non-finite gradient"


@pytest.mark.parametrize("name", FAST)
def test_eval_mode_is_deterministic_and_batch_independent(name):
    model = build_backbone(name, embed_dim=32).eval()
    images = torch.randn(3, 3, 112, 112)
    with torch.no_grad():
        together = model(images)
        alone = model(images[:1])
    torch.testing.assert_close(together[:1], alone, rtol=1e-4, atol=1e-4)


def test_spec_recorded_for_checkpoints():
    model = build_backbone("iresnet_tiny", embed_dim=16)
    assert model.femb_spec == {"name": "iresnet_tiny", "kwargs": {"embed_dim": 16}}
