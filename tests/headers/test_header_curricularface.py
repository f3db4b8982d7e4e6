"""CurricularFace: t by hand (updated before use), hard negatives re-weighted, state that resumes."""

from __future__ import annotations

import math

import pytest
import torch
from header_helpers import at_angles, planar_header

DEG = math.pi / 180.0
M = 0.5
# Centres at 0°, 90°, 180°. Row 0 at 40° (class 0): class 1 is 50° away, cos 50° > cos(40° + m)
# = cos 68.6°, so it is a hard negative; class 2 (140° away) is not. Row 1 at 100° (class 1):
# cos(10° + m) = cos 38.6° is above both of its negatives (cos 100°, cos 80°). Row 2 is unlabelled.
ANGLES, LABELS = [40.0, 100.0, 40.0], torch.tensor([0, 1, -1])


def expected_logits(t: float) -> torch.Tensor:
    cos = math.cos
    return 64 * torch.tensor(
        [
            [cos(40 * DEG + M), cos(50 * DEG) * (t + cos(50 * DEG)), cos(140 * DEG)],
            [cos(100 * DEG), cos(10 * DEG + M), cos(80 * DEG)],
            [cos(40 * DEG), cos(50 * DEG), cos(140 * DEG)],  # label -1: untouched
        ]
    )


def test_defaults():
    header = planar_header("curricularface")
    assert (header.s, header.m, header.t.item()) == (64.0, 0.5, 0.0)
    assert "t" in header.state_dict()


def test_t_by_hand_updated_before_use():
    header = planar_header("curricularface").train()
    batch_mean = (math.cos(40 * DEG) + math.cos(10 * DEG)) / 2  # the unlabelled row is left out
    t1 = 0.01 * batch_mean
    logits = header(at_angles(ANGLES, 5.0), LABELS)
    assert header.t.item() == pytest.approx(t1, rel=1e-6)
    torch.testing.assert_close(logits, expected_logits(t1), rtol=1e-5, atol=1e-4)
    t2 = 0.01 * batch_mean + 0.99 * t1
    logits = header(at_angles(ANGLES, 5.0), LABELS)
    assert header.t.item() == pytest.approx(t2, rel=1e-6)
    torch.testing.assert_close(logits, expected_logits(t2), rtol=1e-5, atol=1e-4)


def test_eval_uses_t_without_updating_it():
    header = planar_header("curricularface").eval()
    header.t.fill_(0.3)
    logits = header(at_angles(ANGLES, 5.0), LABELS)
    assert header.t.item() == pytest.approx(0.3)
    torch.testing.assert_close(logits, expected_logits(0.3), rtol=1e-5, atol=1e-4)


def test_a_batch_without_labels_leaves_t_alone():
    header = planar_header("curricularface").train()
    header.t.fill_(0.25)
    header(at_angles([10.0, 20.0], 5.0), torch.tensor([-1, -1]))
    assert header.t.item() == pytest.approx(0.25)


def test_hard_negative_gradient_is_that_of_cos_times_t_plus_cos():
    header = planar_header("curricularface", s=1.0).eval()
    header.t.fill_(0.2)
    x = at_angles(40.0, 5.0).requires_grad_()
    logit = header(x, torch.tensor([0]))[0, 1]  # the hard negative: cos·(t + cos), cos = ⟨x̂, e_y⟩
    (grad,) = torch.autograd.grad(logit, x)
    # d/dx of c·(t + c) with c = x_y/‖x‖: (t + 2c)·dc/dx, dc/dx = (e_y − c·x̂)/‖x‖.
    c, x_hat = math.cos(50 * DEG), torch.tensor([math.cos(40 * DEG), math.sin(40 * DEG)])
    expected = (0.2 + 2 * c) * (torch.tensor([0.0, 1.0]) - c * x_hat) / 5.0
    torch.testing.assert_close(grad[0], expected, rtol=1e-5, atol=1e-6)


def test_sharded_rows_get_the_other_shards_target_cosines():
    # This process holds classes 0..2 only; row 1's class lives on another shard (label -1 here),
    # whose cosθ_y = cos 10° reaches this shard through sum_over_shards (as the wrapper's
    # all-reduce would give it). Row 1's negatives here: cos 100°, cos 80° < cos(10° + m): none
    # hard; the shard's t is the global batch's.
    header = planar_header("curricularface").train()
    other_shard = torch.tensor([[0.0, 0.0], [math.cos(10 * DEG), 1.0], [0.0, 0.0]])
    header.sum_over_shards = lambda partial: partial + other_shard
    header(at_angles(ANGLES, 5.0), torch.tensor([0, -1, -1]))
    assert header.t.item() == pytest.approx(0.01 * (math.cos(40 * DEG) + math.cos(10 * DEG)) / 2, rel=1e-6)
