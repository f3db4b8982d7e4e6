"""ElasticFace: per-row margins drawn from N(m, σ), ElasticFace+'s assignment by rank, seeding."""

from __future__ import annotations

import math

import pytest
import torch
from header_helpers import at_angles, planar_header, resumed_copy

from femb.headers import build_header
from femb.headers.base import adacos_scale

DEG = math.pi / 180.0


def drawn(seed: int, n: int, m: float, std: float) -> list[float]:
    """What the head draws after ``torch.manual_seed(seed)``: m + σ·z, one z ~ N(0, 1) per row."""
    torch.manual_seed(seed)
    return (m + std * torch.randn(n, dtype=torch.float32)).tolist()


@pytest.mark.parametrize(
    ("variant", "plus", "m", "std"),
    [
        ("arc", False, 0.5, 0.05),
        ("cos", False, 0.35, 0.05),
        ("arc", True, 0.5, 0.0175),
        ("cos", True, 0.35, 0.02),
    ],
)
def test_official_defaults_per_variant(variant, plus, m, std):
    header = build_header("elasticface", 4, 3, variant=variant, plus=plus)
    assert (header.s, header.m, header.std) == (adacos_scale(3), m, std)
    assert header.hparams()["m"] == m  # resolved, so the spec rebuilds the same head


def test_explicit_margin_overrides_the_variant_default():
    header = build_header("elasticface", 4, 3, variant="cos", m=0.3, std=0.0)
    assert (header.m, header.std) == (0.3, 0.0)


def test_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="one of arc, cos"):
        build_header("elasticface", 4, 3, variant="sphere")


def test_eval_uses_the_mean_margin():
    x, label = at_angles(30.0, 5.0), torch.tensor([0])
    arc = planar_header("elasticface").eval()(x, label)
    cos = planar_header("elasticface", variant="cos").eval()(x, label)
    assert arc[0, 0].item() == pytest.approx(64 * math.cos(30 * DEG + 0.5), abs=1e-4)
    assert cos[0, 0].item() == pytest.approx(64 * (math.cos(30 * DEG) - 0.35), abs=1e-4)


def test_arc_training_margins_by_hand():
    angles = [20.0, 50.0, 70.0]
    header = planar_header("elasticface").train()
    margins = drawn(11, 3, 0.5, 0.05)
    torch.manual_seed(11)
    logits = header(at_angles(angles, 4.0), torch.zeros(3, dtype=torch.long))
    for row, (angle, margin) in enumerate(zip(angles, margins, strict=True)):
        assert logits[row, 0].item() == pytest.approx(64 * math.cos(angle * DEG + margin), abs=1e-4)
        assert logits[row, 1].item() == pytest.approx(64 * math.cos((90 - angle) * DEG), abs=1e-4)


def margins_given(header, angles, labels) -> list[float]:
    """The cos variant's margin per row, read back from its target logit: cosθ_y − logit/s."""
    logits = header(at_angles(angles, 3.0), labels)
    return [math.cos(angle * DEG) - logits[row, 0].item() / header.s for row, angle in enumerate(angles)]


def test_plus_gives_the_largest_margin_to_the_hardest_row():
    # cosθ_y ranks the rows (easiest first): 20° (row 1), 40° (row 3), 60° (row 2), 80° (row 0).
    # Row 4 is unlabelled: it is never ranked, and its draw is not handed to anyone.
    angles, labels = [80.0, 20.0, 60.0, 40.0, 10.0], torch.tensor([0, 0, 0, 0, -1])
    header = planar_header("elasticface", variant="cos", plus=True).train()
    a, b, c, d = sorted(drawn(5, 5, 0.35, 0.02)[:4])
    torch.manual_seed(5)
    given = margins_given(header, angles, labels)
    assert given[:4] == pytest.approx([d, a, c, b], abs=1e-5)
    assert given[4] == pytest.approx(0.0, abs=1e-5)  # unlabelled: no margin
    # The official code's `margin[order]` would have given row 0 (the hardest) the draw b, not d.
    assert given[0] != pytest.approx(b, abs=1e-5)


def test_without_plus_each_row_keeps_its_own_draw():
    angles, labels = [80.0, 20.0, 60.0, 40.0], torch.zeros(4, dtype=torch.long)
    header = planar_header("elasticface", variant="cos").train()
    expected = drawn(5, 4, 0.35, 0.05)
    torch.manual_seed(5)
    assert margins_given(header, angles, labels) == pytest.approx(expected, abs=1e-5)


def test_drawn_margins_follow_the_normal():
    header = planar_header("elasticface", variant="cos", m=0.3, std=0.1).train()
    n = 20_000
    angles = torch.full((n,), 30.0)
    with torch.no_grad():
        logits = header(at_angles(angles, 2.0), torch.zeros(n, dtype=torch.long))
    margins = math.cos(30 * DEG) - logits[:, 0] / 64.0
    assert margins.mean().item() == pytest.approx(0.3, abs=0.003)
    assert margins.std().item() == pytest.approx(0.1, rel=0.03)


def test_draws_come_from_the_seeded_global_rng_so_resume_is_exact():
    header = build_header("elasticface", 8, 5, plus=True).train()
    x, labels = 10.0 * torch.randn(6, 8), torch.tensor([0, 1, 2, 3, 4, -1])
    torch.manual_seed(123)  # what the training loop does at every (seed, step)
    first = header(x, labels)
    resumed = resumed_copy(header)
    torch.manual_seed(123)
    assert torch.equal(resumed(x, labels), first)
    torch.manual_seed(124)
    assert not torch.equal(resumed(x, labels), first)
