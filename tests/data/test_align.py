"""Five-point alignment: the similarity transform against hand-computed cases, the warp's pixel
convention against a plain bilinear sampler, degenerate points, and the landmarks file reader."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from femb.data import DataFormatError
from femb.data.align import (
    ARCFACE_DST,
    align_face,
    invert_affine,
    parse_landmark_line,
    read_landmarks,
    similarity_transform,
    warp_affine,
)


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def test_identity_points_give_the_identity_transform():
    matrix = similarity_transform(ARCFACE_DST, ARCFACE_DST)
    np.testing.assert_allclose(matrix, [[1, 0, 0], [0, 1, 0]], atol=1e-12)


@pytest.mark.parametrize(
    ("angle_deg", "scale", "shift"),
    [(30.0, 1.7, (12.5, -40.0)), (-75.0, 0.4, (3.0, 8.0)), (179.0, 2.0, (-100.0, 55.5))],
)
def test_a_known_rotation_scale_and_shift_is_recovered(angle_deg, scale, shift):
    # dst = s·R(θ)·src + t, built by hand; the fit from src to dst must give back s, θ and t.
    theta = math.radians(angle_deg)
    expected = np.array(
        [
            [scale * math.cos(theta), -scale * math.sin(theta), shift[0]],
            [scale * math.sin(theta), scale * math.cos(theta), shift[1]],
        ]
    )
    src = np.array([[10.0, 20.0], [50.0, 22.0], [30.0, 45.0], [15.0, 70.0], [48.0, 68.0]])
    dst = _apply(expected, src)
    matrix = similarity_transform(src, dst)
    np.testing.assert_allclose(matrix, expected, atol=1e-5)
    # and the inverse maps the destination back
    np.testing.assert_allclose(_apply(invert_affine(matrix), dst), src, atol=1e-5)


def test_least_squares_with_noise_keeps_a_rotation():
    # A mirrored point set has no exact similarity: the fit must stay a rotation (det > 0), never reflect.
    mirrored = ARCFACE_DST * np.array([-1.0, 1.0])
    matrix = similarity_transform(mirrored, ARCFACE_DST)
    assert np.linalg.det(matrix[:, :2]) > 0


@pytest.mark.parametrize(
    ("points", "reason"),
    [
        (np.full((5, 2), 40.0), "coincide"),
        (np.array([[0, 0], [1, 1], [2, 2], [3, 3], [4, 4]], dtype=float), "one line"),
        (np.array([[10, 5], [20, 5], [30, 5], [40, 5], [50, 5]], dtype=float), "one line"),
    ],
)
def test_degenerate_points_raise_a_clear_error(points, reason):
    with pytest.raises(ValueError, match=reason):
        similarity_transform(points)


def test_non_finite_and_wrong_shapes_are_refused():
    bad = ARCFACE_DST.copy()
    bad[2, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        similarity_transform(bad)
    with pytest.raises(ValueError, match="N×2"):
        similarity_transform(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="ten numbers"):
        align_face(np.zeros((50, 50, 3), dtype=np.uint8), np.zeros(8))


def _bilinear(image: np.ndarray, x: float, y: float) -> np.ndarray:
    """Plain bilinear sample at (x, y), pixel centres at integers (inside the image only)."""
    x0, y0 = math.floor(x), math.floor(y)
    fx, fy = x - x0, y - y0
    top = (1 - fx) * image[y0, x0] + fx * image[y0, x0 + 1]
    bottom = (1 - fx) * image[y0 + 1, x0] + fx * image[y0 + 1, x0 + 1]
    return (1 - fy) * top + fy * bottom


def test_the_warp_samples_where_the_inverse_map_points():
    rng = np.random.default_rng(0)
    # A smooth image, so that PIL's 8-bit rounding is the only difference from exact bilinear.
    yy, xx = np.mgrid[0:160, 0:200].astype(float)
    image = np.stack([xx, yy, 0.5 * (xx + yy)], axis=2).clip(0, 255).astype(np.uint8)
    image[..., 2] = (rng.random((160, 200)) * 255).astype(np.uint8)  # texture: a wrong offset shows
    matrix = similarity_transform(ARCFACE_DST * 1.2 + [30.0, 10.0])  # source points → ArcFace
    warped = warp_affine(image, matrix).astype(float)
    back = invert_affine(matrix)
    for v in range(5, 107, 7):
        for u in range(5, 107, 7):
            x, y = back @ np.array([u, v, 1.0])
            np.testing.assert_allclose(warped[v, u], _bilinear(image.astype(float), x, y), atol=1.01)


def test_outside_the_source_is_black():
    image = np.full((60, 60, 3), 200, dtype=np.uint8)
    # The face's points shifted 40 px up and left: the crop's corners map outside the 60×60 image.
    warped = align_face(image, ARCFACE_DST - 40.0)
    assert (warped[0, 0] == 0).all() and (warped[-1, -1] == 0).all()
    assert (warped[71, 56] == 200).all()  # the nose maps to (16, 31), inside


def test_aligning_a_moved_face_gives_the_face_back():
    from femb.data import render_face

    face = render_face(0, 3, 0)
    theta, scale, shift = math.radians(20), 1.4, np.array([40.0, 25.0])
    forward = np.array(
        [
            [scale * math.cos(theta), -scale * math.sin(theta), shift[0]],
            [scale * math.sin(theta), scale * math.cos(theta), shift[1]],
        ]
    )
    loose = warp_affine(face, forward, size=220)
    aligned = align_face(loose, _apply(forward, ARCFACE_DST))
    inner = (slice(10, 102), slice(10, 102))
    assert np.abs(aligned[inner].astype(float) - face[inner].astype(float)).mean() < 6.0
    # another crop size scales the destination points with it: the same face at twice the size
    large = align_face(loose, _apply(forward, ARCFACE_DST), size=224)
    assert large.shape == (224, 224, 3)
    halved = np.asarray(Image.fromarray(large).resize((112, 112), Image.Resampling.BILINEAR), dtype=float)
    assert np.abs(halved[inner] - face[inner].astype(float)).mean() < 8.0


def test_landmark_lines(tmp_path):
    entry = parse_landmark_line("a/b.jpg 1 2 3 4 5 6 7 8 9 10", "f.txt", 3)
    assert entry.path == "a/b.jpg" and entry.line == 3 and entry.score is None
    np.testing.assert_array_equal(entry.points, np.arange(1, 11).reshape(5, 2))
    assert parse_landmark_line("x.jpg 1 2 3 4 5 6 7 8 9 10 0.97", "f", 1).score == pytest.approx(0.97)
    assert parse_landmark_line("   ", "f", 1) is None
    assert parse_landmark_line("# comment", "f", 1) is None
    with pytest.raises(DataFormatError, match=r"^f\.txt:7: expected an image path and 10 or 11 numbers"):
        parse_landmark_line("a.jpg 1 2 3", "f.txt", 7)
    with pytest.raises(DataFormatError, match=r"f:2: 'x' is not a number"):
        parse_landmark_line("a.jpg 1 2 3 4 5 6 7 x 9 10", "f", 2)
    with pytest.raises(DataFormatError, match="11 numbers"):
        parse_landmark_line("a.jpg 1 2 3 4 5 6 7 8 9 10", "f", 2, score=True)
    path = tmp_path / "marks.txt"
    path.write_text("# header\na.jpg 1 2 3 4 5 6 7 8 9 10\n\nb.jpg 1 2 3 4 5 6 7 8 9 nan\n")
    with pytest.raises(DataFormatError, match=r"marks\.txt:4: .*finite"):
        read_landmarks(path)
    with pytest.raises(DataFormatError, match="no such landmarks file"):
        read_landmarks(tmp_path / "absent.txt")


_token = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)


@settings(max_examples=200, deadline=None)
@given(st.lists(_token, max_size=14))
def test_any_line_parses_or_raises_a_data_format_error(tokens):
    try:
        entry = parse_landmark_line(" ".join(tokens), "fuzz.txt", 1)
    except DataFormatError as error:
        assert str(error).startswith("fuzz.txt:1: ")
    else:
        assert entry is None or (entry.points.shape == (5, 2) and np.isfinite(entry.points).all())


@settings(max_examples=100, deadline=None)
@given(
    st.floats(-math.pi, math.pi),
    st.floats(0.05, 20.0),
    st.floats(-500, 500),
    st.floats(-500, 500),
)
def test_every_similarity_is_recovered(theta, scale, tx, ty):
    expected = np.array(
        [
            [scale * math.cos(theta), -scale * math.sin(theta), tx],
            [scale * math.sin(theta), scale * math.cos(theta), ty],
        ]
    )
    recovered = similarity_transform(ARCFACE_DST, _apply(expected, ARCFACE_DST))
    np.testing.assert_allclose(recovered, expected, atol=1e-5)
