"""Sub-center ArcFace: the max over a class's centres, ArcFace on it, and dominant-centre outliers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from header_helpers import PAPER_SCALE, at_angles

from femb.headers import build_header
from femb.headers.base import adacos_scale
from femb.headers.subcenter_arcface import find_dominant_centre_outliers

DEG = math.pi / 180.0


def header_with_centres(degrees_per_class: list[list[float]], **kwargs) -> torch.nn.Module:
    """A 2-D head whose class c has its centres at the given angles (rows class-major)."""
    k = len(degrees_per_class[0])
    kwargs.setdefault("s", PAPER_SCALE)
    header = build_header("subcenter_arcface", 2, len(degrees_per_class), k=k, **kwargs)
    with torch.no_grad():
        header.weight.copy_(at_angles([a for centres in degrees_per_class for a in centres]))
    return header


def test_defaults_and_weight_rows():
    header = build_header("subcenter_arcface", 16, 10)
    assert (header.k, header.s, header.m, header.easy_margin) == (3, adacos_scale(10), 0.5, False)
    assert header.weight.shape == (30, 16)


def test_logits_by_hand_max_over_centres_then_arcface():
    # Class 0: centres at 0°, 60°, 120°; class 1: 180°, 240°, 270°. The embedding is at 50°:
    # class 0's nearest centre is 60° (10° away), class 1's is 180° (130° away).
    header = header_with_centres([[0.0, 60.0, 120.0], [180.0, 240.0, 270.0]]).eval()
    logits = header(at_angles(50.0, 3.0), torch.tensor([0]))
    expected = torch.tensor([[64 * math.cos(10 * DEG + 0.5), 64 * math.cos(130 * DEG)]])
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-4)
    # Labelled 1: the margin goes on class 1's best centre (130° < π − 0.5 rad: no fallback).
    logits = header(at_angles(50.0, 3.0), torch.tensor([1]))
    expected = torch.tensor([[64 * math.cos(10 * DEG), 64 * math.cos(130 * DEG + 0.5)]])
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-4)


def test_label_minus_one_gets_no_margin():
    header = header_with_centres([[0.0, 60.0, 120.0], [180.0, 240.0, 270.0]]).eval()
    logits = header(at_angles(50.0), torch.tensor([-1]))
    expected = torch.tensor([[64 * math.cos(10 * DEG), 64 * math.cos(130 * DEG)]])
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-4)


def test_one_centre_per_class_is_arcface():
    arc = build_header("arcface", 8, 5, s=30.0, m=0.4)
    sub = build_header("subcenter_arcface", 8, 5, s=30.0, m=0.4, k=1)
    sub.load_state_dict(arc.state_dict())
    x, labels = 10 * torch.randn(6, 8), torch.tensor([0, 1, 2, 3, 4, -1])
    torch.testing.assert_close(sub.eval()(x, labels), arc.eval()(x, labels))


def test_gradient_reaches_only_the_winning_centre():
    # s = 2: with s = 64 the other class's softmax probability underflows to an exact 0.
    header = header_with_centres([[0.0, 60.0, 120.0], [180.0, 240.0, 270.0]], s=2.0).train()
    x = at_angles(50.0, 3.0)
    F.cross_entropy(header(x, torch.tensor([0])), torch.tensor([0])).backward()
    row_grads = header.weight.grad.abs().sum(dim=1)
    # Rows: 0°, 60°, 120° (class 0), 180°, 240°, 270° (class 1): only the maxima, 60° and 180°.
    assert row_grads[1] > 0 and row_grads[3] > 0
    assert torch.equal(row_grads[[0, 2, 4, 5]], torch.zeros(4))


def test_two_forwards_then_backward_through_the_max():
    header = build_header("subcenter_arcface", 8, 5).train()
    x, labels = (10 * torch.randn(4, 8)).requires_grad_(), torch.tensor([0, 1, 2, 3])
    loss = sum(F.cross_entropy(header(x, labels), labels) for _ in range(2))
    loss.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_dominant_centre_outliers_by_hand():
    # Class 0: centres at 0°, 90°, 180°. Four samples near 0° make it dominant; a sample at 85°
    # sits by the 90° centre but is 85° from the dominant one (outlier); 40° is not (40° < 75°).
    # Class 1: centres at 200°, 270°, 330°; its samples are near 270°, and one at 150° is 120°
    # from it. The unlabelled sample at 90° is never reported.
    header = header_with_centres([[0.0, 90.0, 180.0], [200.0, 270.0, 330.0]])
    angles = [2.0, -3.0, 5.0, 1.0, 85.0, 40.0, 268.0, 275.0, 150.0, 90.0]
    labels = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 1, -1])
    embeddings = at_angles(angles, 7.0)
    outliers = find_dominant_centre_outliers(header, embeddings, labels)
    assert outliers.tolist() == [4, 8]
    # A tighter threshold (35°) also drops the sample at 40°; chunking changes nothing.
    tight = find_dominant_centre_outliers(header, embeddings, labels, threshold_deg=35.0, chunk_size=3)
    assert tight.tolist() == [4, 5, 8]


def test_outlier_search_refuses_bad_labels():
    header = build_header("subcenter_arcface", 4, 3)
    with pytest.raises(ValueError, match="labels"):
        find_dominant_centre_outliers(header, torch.randn(2, 4), torch.tensor([0, 3]))
