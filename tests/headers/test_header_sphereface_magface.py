"""SphereFace's λ annealing and its resumable counter; MagFace's regulariser and its gradient."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from femb.headers import build_header


@pytest.mark.parametrize(
    ("iteration", "expected"),
    [(0, 1000.0), (100, 1000.0 / (1 + 0.12 * 100)), (10_000, 5.0)],  # 1000/1201 < λ_min
)
def test_sphereface_lambda_annealing(iteration, expected):
    header = build_header("sphereface", 4, 3)
    header.iter.fill_(iteration)
    assert header.current_lambda().item() == pytest.approx(expected, rel=1e-6)


def test_sphereface_lambda_power():
    header = build_header("sphereface", 4, 3, base=100.0, gamma=0.5, power=2.0, lambda_min=0.0)
    header.iter.fill_(2)
    assert header.current_lambda().item() == pytest.approx(100.0 / 4.0)


def test_sphereface_iter_counts_training_forwards_and_resumes():
    header = build_header("sphereface", 4, 3)
    x, labels = torch.randn(2, 4), torch.tensor([0, 1])
    assert "iter" in header.state_dict()
    header.train()
    for _ in range(3):
        header(x, labels)
    header.eval()(x, labels)
    assert header.iter.item() == 3

    state = header.state_dict()
    state["iter"] = torch.tensor(100)
    resumed = build_header("sphereface", 4, 3)
    resumed.load_state_dict(state)
    assert resumed.current_lambda().item() == pytest.approx(1000.0 / 13.0, rel=1e-6)


def test_sphereface_uses_lambda_of_the_current_step():
    # With λ huge the target is ≈ ‖x‖·cosθ; at λ_min it carries ψ.
    header = build_header("sphereface", 2, 2).train()
    with torch.no_grad():
        header.weight.copy_(torch.eye(2))
    x = torch.tensor([[math.cos(0.5), math.sin(0.5)]]) * 4.0
    first = header(x, torch.tensor([0]))[0, 0].item()
    header.iter.fill_(10**6)
    late = header(x, torch.tensor([0]))[0, 0].item()
    assert first == pytest.approx(4.0 * (1000 * math.cos(0.5) + math.cos(2.0)) / 1001, abs=1e-4)
    assert late == pytest.approx(4.0 * (5 * math.cos(0.5) + math.cos(2.0)) / 6, abs=1e-4)


def test_magface_extra_loss_by_hand():
    header = build_header("magface", 2, 3)
    embeddings = torch.tensor([[5.0, 0.0], [0.0, 50.0], [-200.0, 0.0]])  # a = 10, 50, 110 after clamp
    expected = 20.0 * sum(a / 110.0**2 + 1.0 / a for a in (10.0, 50.0, 110.0)) / 3
    assert header.extra_loss(embeddings).item() == pytest.approx(expected, rel=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        extra = header.extra_loss(embeddings.to(torch.bfloat16))
    assert extra.dtype == torch.float32 and extra.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("norm", [15.0, 60.0, 105.0])
def test_magface_total_loss_reaches_the_feature_norm(norm):
    header = build_header("magface", 8, 5).train()
    direction = F.normalize(torch.randn(4, 8), dim=1)
    labels = torch.tensor([0, 1, 2, 3])
    radius = torch.tensor(norm, requires_grad=True)
    embeddings = radius * direction
    loss = F.cross_entropy(header(embeddings, labels), labels) + header.extra_loss(embeddings)
    (grad,) = torch.autograd.grad(loss, radius)
    assert torch.isfinite(grad) and grad.abs().item() > 1e-6
    # The regulariser's own part, by hand: λ_g·(1/u_a² − 1/a²).
    (grad_g,) = torch.autograd.grad(header.extra_loss(radius * direction), radius)
    assert grad_g.item() == pytest.approx(20.0 * (1 / 110.0**2 - 1 / norm**2), rel=1e-4)


def test_magface_clamp_stops_the_norm_gradient_outside_the_range():
    header = build_header("magface", 8, 5)
    radius = torch.tensor(5.0, requires_grad=True)
    (grad,) = torch.autograd.grad(header.extra_loss(radius * F.normalize(torch.randn(4, 8), dim=1)), radius)
    assert grad.item() == 0.0
