"""Logits recomputed by hand on 2-D embeddings at known angles, and the shape of each margin."""

from __future__ import annotations

import math

import pytest
import torch
from header_helpers import MARGIN_HEADERS, at_angles, class_centres, planar_header, target_sweep

from femb.headers.base import monotonic_cos
from femb.headers.sphereface import chebyshev_cos_multiple

DEG = math.pi / 180.0
ANGLE = 30.0  # the embedding's angle; centres at 0°, 90°, 180°
LABEL_0 = torch.tensor([0])


def expected_logits(target: float, scale: float) -> torch.Tensor:
    """Target at column 0; the other two columns are plain scaled cosines (60° and 150° away)."""
    return torch.tensor([[target, scale * math.cos(60 * DEG), scale * math.cos(150 * DEG)]])


def check(header, embedding, expected) -> None:
    logits = header.eval()(embedding, LABEL_0)
    assert logits.dtype == torch.float32
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-4)


def test_arcface_by_hand():
    # 64·cos(30° + 0.5 rad), 0.5 rad ≈ 28.65°
    check(
        planar_header("arcface"), at_angles(ANGLE, 7.0), expected_logits(64 * math.cos(ANGLE * DEG + 0.5), 64)
    )


def test_cosface_by_hand():
    check(
        planar_header("cosface"),
        at_angles(ANGLE, 7.0),
        expected_logits(64 * (math.cos(ANGLE * DEG) - 0.35), 64),
    )


def test_combined_by_hand_defaults_and_m1():
    default = 64 * (math.cos(ANGLE * DEG + 0.3) - 0.2)
    check(planar_header("combined"), at_angles(ANGLE, 3.0), expected_logits(default, 64))
    header = planar_header("combined", s=30.0, m1=0.9, m2=0.4, m3=0.15)
    check(header, at_angles(ANGLE), expected_logits(30 * (math.cos(0.9 * ANGLE * DEG + 0.4) - 0.15), 30))


def test_combined_with_only_m2_is_arcface():
    angles = [0.0, 20.0, 45.0, 90.0, 120.0, 140.0]
    x, labels = at_angles(angles, 2.0), torch.zeros(len(angles), dtype=torch.long)
    arc = planar_header("arcface", m=0.5).eval()(x, labels)
    combined = planar_header("combined", m1=1.0, m2=0.5, m3=0.0).eval()(x, labels)
    torch.testing.assert_close(combined, arc, rtol=1e-5, atol=1e-4)


def test_sphereface_by_hand():
    # ‖x‖ = 5 scales every logit; λ = 1000 at iter 0; 4·30° = 120° → k = 0, ψ = cos 120°.
    norm = 5.0
    header = planar_header("sphereface")
    psi = math.cos(4 * ANGLE * DEG)
    target = norm * (1000 * math.cos(ANGLE * DEG) + psi) / 1001
    check(header, at_angles(ANGLE, norm), expected_logits(target, norm))
    # At λ_min and 60°: 4·60° = 240° → k = 1, ψ = −cos 240° − 2 = −1.5.
    header.iter.fill_(1_000_000)
    logits = header(at_angles(60.0, norm), LABEL_0)
    assert logits[0, 0].item() == pytest.approx(norm * (5 * 0.5 - 1.5) / 6, abs=1e-4)
    assert logits[0, 1].item() == pytest.approx(norm * math.cos(30 * DEG), abs=1e-4)


@pytest.mark.parametrize(("norm", "margin"), [(5.0, 0.45), (60.0, 0.45 + 0.35 * 50 / 100), (200.0, 0.8)])
def test_magface_by_hand(norm, margin):
    # a = ‖x‖ clamped to [10, 110]; m(a) linear from 0.45 to 0.8; the scale is s, not ‖x‖.
    check(
        planar_header("magface"),
        at_angles(ANGLE, norm),
        expected_logits(64 * math.cos(ANGLE * DEG + margin), 64),
    )


def test_linear_by_hand():
    header = planar_header("linear")
    x = torch.tensor([[2.0, -3.0]])
    torch.testing.assert_close(header(x, LABEL_0), torch.tensor([[2.0, -3.0, -2.0]]))


def test_arcface_fallback_past_pi_minus_m():
    # θ = 170° > π − 0.5 rad (151.4°): cosθ − m·sin m instead of cos(θ + m), which would rise again.
    logits = planar_header("arcface").eval()(at_angles(170.0), LABEL_0)
    assert logits[0, 0].item() == pytest.approx(64 * (math.cos(170 * DEG) - 0.5 * math.sin(0.5)), abs=1e-4)


@pytest.mark.parametrize("name", ["arcface", "magface"])
def test_easy_margin_only_where_cos_positive(name):
    header = planar_header(name, easy_margin=True).eval()
    # 120° from the centre: cos < 0, the target stays the plain scaled cosine.
    assert header(at_angles(120.0, 50.0), LABEL_0)[0, 0].item() == pytest.approx(
        64 * math.cos(120 * DEG), abs=1e-4
    )
    # 30°: the margin applies.
    assert header(at_angles(30.0, 10.0), LABEL_0)[0, 0].item() < 64 * math.cos(30 * DEG) - 1.0


def test_easy_margin_jumps_back_at_90_degrees():
    targets = target_sweep(planar_header("arcface", easy_margin=True), steps=181)
    assert targets[91].item() > targets[89].item() + 20.0


def test_arcface_easy_margin_off_by_default_applies_past_90_degrees():
    logits = planar_header("arcface").eval()(at_angles(120.0), LABEL_0)
    assert logits[0, 0].item() == pytest.approx(64 * math.cos(120 * DEG + 0.5), abs=1e-4)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("arcface", {}),
        ("arcface", {"m": 1.2}),
        ("cosface", {}),
        ("sphereface", {}),
        ("magface", {"easy_margin": False}),
        ("combined", {}),
        ("combined", {"m1": 1.35, "m2": 0.5, "m3": 0.1}),  # m1·θ + m2 passes π well before θ = π
        ("combined", {"m1": 0.7, "m2": 0.2, "m3": 0.0}),
    ],
)
def test_target_never_increases_with_theta(name, kwargs):
    # Easy margin is left out: by definition it jumps back up at 90° (see the next test).
    targets = target_sweep(planar_header(name, **kwargs), norm=30.0)
    assert torch.isfinite(targets).all()
    assert (targets[1:] - targets[:-1]).max().item() <= 1e-4


@pytest.mark.parametrize("name", MARGIN_HEADERS)
def test_margin_never_helps_the_target(name):
    header = planar_header(name)
    targets = target_sweep(header, steps=721, norm=30.0)
    scale = 30.0 if name == "sphereface" else header.s
    plain = scale * torch.cos(torch.linspace(0.0, math.pi, 721, dtype=torch.float64)).float()
    assert (targets - plain).max().item() <= 1e-3


def test_sphereface_psi_is_monotonic_and_plain_cos4_is_not():
    theta = torch.linspace(0.0, math.pi, 4001, dtype=torch.float64)
    k = torch.floor(4 * theta / math.pi).clamp(max=3)
    psi = monotonic_cos(chebyshev_cos_multiple(torch.cos(theta), 4), k)
    assert (psi[1:] - psi[:-1]).max().item() <= 1e-12
    assert psi[-1].item() == pytest.approx(-7.0)  # (−1)^3·cos 4π − 6
    plain = torch.cos(4 * theta)
    assert plain[theta.numel() // 2] > plain[theta.numel() // 4]  # cos 4θ is higher at 90° than at 45°


@pytest.mark.parametrize("m", [1, 2, 3, 4, 5])
def test_chebyshev_is_cos_of_multiple_angle(m):
    theta = torch.linspace(0.0, math.pi, 101, dtype=torch.float64)
    torch.testing.assert_close(chebyshev_cos_multiple(torch.cos(theta), m), torch.cos(m * theta))


@pytest.mark.parametrize("name", MARGIN_HEADERS)
def test_label_minus_one_rows_get_no_margin(name):
    header = planar_header(name).eval()
    x = at_angles([30.0, 30.0, 100.0], 20.0)
    logits = header(x, torch.tensor([0, -1, -1]))
    scale = 20.0 if name == "sphereface" else header.s
    plain = scale * torch.nn.functional.normalize(x, dim=1) @ class_centres(header).T
    torch.testing.assert_close(logits[1:], plain[1:], rtol=1e-5, atol=1e-4)
    assert logits[0, 0] < plain[0, 0] - 1e-2  # the labelled row did get its margin
    torch.testing.assert_close(logits[0, 1:], plain[0, 1:], rtol=1e-5, atol=1e-4)
