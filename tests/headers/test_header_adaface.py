"""AdaFace: EMA norm statistics by hand, the adaptive margin at known angles, a batch of one, resume."""

from __future__ import annotations

import math
import statistics

import pytest
import torch
import torch.nn.functional as F
from header_helpers import at_angles, planar_header

DEG = math.pi / 180.0
M, H, S = 0.4, 0.333, 64.0


def embeddings(angles: list[float], norms: list[float]) -> torch.Tensor:
    return torch.cat([at_angles(angle, norm) for angle, norm in zip(angles, norms, strict=True)])


def adaface_target(theta_deg: float, norm: float, mean: float, std: float) -> float:
    g = max(-1.0, min(1.0, H * (norm - mean) / (std + 1e-3)))
    return S * (math.cos(theta_deg * DEG - M * g) - (M + M * g))


def test_defaults_are_the_papers_training_values():
    header = planar_header("adaface")
    assert (header.m, header.h, header.s, header.t_alpha) == (0.4, 0.333, 64.0, 0.01)
    assert (header.batch_mean.item(), header.batch_std.item()) == (20.0, 100.0)
    assert {"batch_mean", "batch_std"} <= set(header.state_dict())


def test_statistics_and_logits_by_hand():
    # Two rows at 30° (norm 10) and 60° (norm 30) from class 0's centre (0°).
    header = planar_header("adaface").train()
    norms = [10.0, 30.0]
    mean = 0.01 * statistics.mean(norms) + 0.99 * 20.0
    std = 0.01 * statistics.stdev(norms) + 0.99 * 100.0  # unbiased: √(200/1)
    logits = header(embeddings([30.0, 60.0], norms), torch.tensor([0, 0]))
    assert header.batch_mean.item() == pytest.approx(mean, rel=1e-6)
    assert header.batch_std.item() == pytest.approx(std, rel=1e-6)
    cos = math.cos
    expected = torch.tensor(
        [
            [adaface_target(30.0, 10.0, mean, std), S * cos(60 * DEG), S * cos(150 * DEG)],
            [adaface_target(60.0, 30.0, mean, std), S * cos(30 * DEG), S * cos(120 * DEG)],
        ]
    )
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-4)


def test_t_alpha_one_uses_the_batch_alone_and_clips_g():
    # t_alpha = 1: μ, σ are this batch's, of the norms clipped to [0.001, 100] (400 → 100).
    # h = 10 drives g to its clip: −1 for the low norm, +1 for the high one.
    header = planar_header("adaface", t_alpha=1.0, h=10.0).train()
    logits = header(embeddings([40.0, 40.0], [1.0, 400.0]), torch.tensor([0, 0]))
    assert header.batch_mean.item() == pytest.approx(statistics.mean([1.0, 100.0]), rel=1e-6)
    assert header.batch_std.item() == pytest.approx(statistics.stdev([1.0, 100.0]), rel=1e-6)
    # g = −1: the angle grows by m and nothing is subtracted; g = +1: it shrinks by m, 2m subtracted.
    assert logits[0, 0].item() == pytest.approx(S * math.cos(40 * DEG + M), abs=1e-4)
    assert logits[1, 0].item() == pytest.approx(S * (math.cos(40 * DEG - M) - 2 * M), abs=1e-4)


def test_the_angle_is_clipped_at_zero():
    # 10° − m (22.9°) would be negative: θ − m·g is clipped to 0.001 rad, so cos ≈ 1, then − 2m.
    header = planar_header("adaface", t_alpha=1.0, h=10.0).train()
    logits = header(embeddings([10.0, 10.0], [1.0, 400.0]), torch.tensor([0, 0]))
    assert logits[1, 0].item() == pytest.approx(S * (math.cos(1e-3) - 2 * M), abs=1e-4)


def test_a_batch_of_one_is_safe_and_keeps_the_running_std():
    header = planar_header("adaface").train()
    x = at_angles(30.0, 50.0).requires_grad_()
    logits = header(x, torch.tensor([0]))
    assert header.batch_mean.item() == pytest.approx(0.01 * 50.0 + 0.99 * 20.0, rel=1e-6)
    assert header.batch_std.item() == 100.0  # the std of one sample is undefined: kept
    assert torch.isfinite(logits).all()
    F.cross_entropy(logits, torch.tensor([0])).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_eval_uses_the_statistics_without_updating_them():
    header = planar_header("adaface").eval()
    header.batch_mean.fill_(15.0)
    header.batch_std.fill_(5.0)
    logits = header(at_angles(45.0, 25.0), torch.tensor([0]))
    assert (header.batch_mean.item(), header.batch_std.item()) == (15.0, 5.0)
    assert logits[0, 0].item() == pytest.approx(adaface_target(45.0, 25.0, 15.0, 5.0), abs=1e-4)


def test_the_norm_gets_no_gradient_through_the_margin():
    # Scaling x leaves every cosine unchanged, so with the norm detached the loss does not move.
    header = planar_header("adaface").eval()
    radius = torch.tensor(25.0, requires_grad=True)
    logits = header(radius * at_angles(45.0), torch.tensor([0]))
    (grad,) = torch.autograd.grad(F.cross_entropy(logits, torch.tensor([0])), radius)
    assert grad.item() == pytest.approx(0.0, abs=1e-6)


def test_statistics_stay_float32_under_bf16_autocast():
    x = embeddings([30.0, 60.0, 80.0], [10.0, 30.0, 22.0]).to(torch.bfloat16)
    labels = torch.tensor([0, 1, 2])
    reference = planar_header("adaface").train()
    expected = reference(x.float(), labels)
    header = planar_header("adaface").train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = header(x, labels)
    assert logits.dtype == header.batch_mean.dtype == header.batch_std.dtype == torch.float32
    torch.testing.assert_close(logits, expected)
    torch.testing.assert_close(header.batch_std, reference.batch_std)
