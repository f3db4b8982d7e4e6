"""IJB library pieces against plain computations: pooling, pair scoring, TAR@FAR, the meta readers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from femb.data import DataFormatError
from femb.evaluation.ijb import (
    FaceEmbeddings,
    face_features,
    pool_templates,
    score_pairs,
    verification_at_far,
)
from femb.evaluation.ijb_meta import (
    load_ijb_meta,
    meta_prefix,
    read_face_tid_mid,
    read_name_5pts_score,
    read_template_pair_label,
)


def test_pooling_averages_each_media_and_sums_the_media():
    features = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [5.0, 5.0], [0.0, 7.0]], dtype=np.float32)
    templates = np.array([10, 10, 10, 4, 4])
    medias = np.array([1, 1, 2, 3, 3])
    ids, matrix = pool_templates(features, templates, medias)
    assert ids.tolist() == [4, 10]
    # template 10: media 1 mean (2, 0) + media 2 (0, 2) = (2, 2); template 4: mean (2.5, 6)
    np.testing.assert_allclose(matrix[1], np.array([2.0, 2.0]) / np.sqrt(8.0), atol=1e-7)
    np.testing.assert_allclose(matrix[0], np.array([2.5, 6.0]) / 6.5, atol=1e-7)
    # leaving a face out changes its media's mean only
    _, without = pool_templates(features, templates, medias, present=np.array([1, 0, 1, 1, 1], dtype=bool))
    np.testing.assert_allclose(without[1], np.array([1.0, 2.0]) / np.sqrt(5.0), atol=1e-7)


def test_face_features_follow_the_switches():
    plain = np.array([[3.0, 4.0]], dtype=np.float32)
    mirrored = np.array([[3.0, 4.0]], dtype=np.float32)
    faces = FaceEmbeddings(plain, mirrored)
    scores = np.array([0.5], dtype=np.float32)
    np.testing.assert_allclose(face_features(faces, scores), [[3.0, 4.0]])  # (6, 8) × 0.5
    np.testing.assert_allclose(face_features(faces, scores, flip=False, detector_score=False), [[3.0, 4.0]])
    np.testing.assert_allclose(face_features(faces, scores, normalize=True), [[0.3, 0.4]], atol=1e-7)
    with pytest.raises(ValueError, match="mirrored"):
        face_features(FaceEmbeddings(plain, None), scores, flip=True)


@pytest.mark.parametrize("block_floats", [10**9, 40 * 7, 40])
def test_block_scoring_equals_plain_dot_products(block_floats):
    rng = np.random.default_rng(1)
    matrix = rng.standard_normal((40, 8)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    ids = np.arange(40) * 5 + 3
    picks = rng.integers(0, 40, (500, 2))
    scores = score_pairs(ids, matrix, ids[picks], block_floats=block_floats)
    expected = [float(matrix[a].astype(np.float64) @ matrix[b]) for a, b in picks]
    np.testing.assert_allclose(scores, expected, atol=1e-6)


def test_tar_is_the_tpr_at_the_nearest_fpr():
    # 4 genuine, 10 impostor pairs; impostor scores 0.0 … 0.9, genuine 0.95, 0.85, 0.55, 0.05
    labels = np.array([1, 1, 1, 1] + [0] * 10)
    scores = np.array([0.95, 0.85, 0.55, 0.05] + [i / 10 for i in range(10)])
    result = verification_at_far(labels, scores, fars=(1e-6, 0.1, 0.5))
    assert result.tar_at_far[1e-6] == pytest.approx(0.25)  # FPR 0: only 0.95 above every impostor
    assert result.tar_at_far[0.1] == pytest.approx(0.5)  # FPR 0.1 (impostor 0.9 accepted): 0.95, 0.85
    assert result.tar_at_far[0.5] == pytest.approx(0.75)  # FPR 0.5: 0.95, 0.85, 0.55
    assert result.num_genuine == 4 and result.num_impostor == 10
    assert not result.measurable(1e-6) and result.measurable(0.1)
    assert result.to_dict()["tar_at_far"]["1e-01"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="both genuine"):
        verification_at_far(np.ones(3), np.zeros(3))


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_meta_readers_name_the_file_and_line(tmp_path):
    faces = _write(tmp_path / "f.txt", "1.jpg 1 7\n2.jpg 1 x\n")
    with pytest.raises(DataFormatError, match=r"f\.txt:2: 'x' is not an integer"):
        read_face_tid_mid(faces)
    pairs = _write(tmp_path / "p.txt", "1 2 1\n1 3 0\n2 3 2\n")
    with pytest.raises(DataFormatError, match=r"p\.txt:3: label '2' is neither 0 nor 1"):
        read_template_pair_label(pairs)
    pairs = _write(tmp_path / "p2.txt", "1 2 1\n1 3 0 5\n")
    with pytest.raises(DataFormatError, match=r"p2\.txt:2: expected 'template1 template2 label', got 4"):
        read_template_pair_label(pairs)
    points = _write(tmp_path / "s.txt", "1.jpg 1 2 3 4 5 6 7 8 9 10 0.9\n2.jpg 1 2 3 4 5 6 7 8 0.9\n")
    with pytest.raises(DataFormatError, match=r"s\.txt:2: expected an image path and 11 numbers"):
        read_name_5pts_score(points)
    with pytest.raises(DataFormatError, match="empty meta file"):
        read_template_pair_label(_write(tmp_path / "e.txt", ""))


def test_load_checks_the_files_against_each_other(tmp_path):
    meta = tmp_path / "meta"
    _write(meta / "ijbb_face_tid_mid.txt", "1.jpg 1 7\n2.jpg 2 8\n")
    points = "2.jpg 1 2 3 4 5 6 7 8 9 10 0.5\n1.jpg 0 0 0 0 0 0 0 0 0 0 0.9\n"
    _write(meta / "ijbb_name_5pts_score.txt", points)
    _write(meta / "ijbb_template_pair_label.txt", "1 2 0\n2 1 0\n1 1 1\n")
    loaded = load_ijb_meta(tmp_path, "IJBB")
    assert loaded.scores.tolist() == pytest.approx([0.9, 0.5])  # joined by name, not by line
    assert loaded.pairs.tolist() == [[1, 2], [2, 1], [1, 1]] and loaded.labels.tolist() == [0, 0, 1]
    _write(meta / "ijbb_template_pair_label.txt", "1 2 0\n\n2 9 1\n")
    with pytest.raises(DataFormatError, match=r"ijbb_template_pair_label\.txt:3: template 9 has no faces"):
        load_ijb_meta(tmp_path, "IJBB")
    _write(meta / "ijbb_name_5pts_score.txt", "1.jpg 0 0 0 0 0 0 0 0 0 0 0.9\n")
    with pytest.raises(DataFormatError, match=r"ijbb_face_tid_mid\.txt:2: image 2\.jpg has no landmarks"):
        load_ijb_meta(tmp_path, "IJBB")
    (meta / "ijbb_face_tid_mid.txt").unlink()
    with pytest.raises(DataFormatError, match=r"ijbb_face_tid_mid\.txt: no such meta file"):
        load_ijb_meta(tmp_path, "IJBB")
    with pytest.raises(ValueError, match="neither IJBB nor IJBC; give meta_prefix"):
        meta_prefix("LFW")
    assert meta_prefix("LFW", "lfw_ijb") == "lfw_ijb" and meta_prefix("IJBC") == "ijbc"


_field = st.one_of(
    st.integers(-5, 5).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.text(alphabet="ab1.-_ \t/jpg", max_size=6),
)
_lines = st.lists(st.lists(_field, max_size=13).map(" ".join), max_size=6).map("\n".join)


@settings(max_examples=80, deadline=None)
@given(_lines)
def test_any_meta_file_reads_or_raises_a_named_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("fuzz") / "m.txt"
    path.write_text(text)
    for reader in (read_face_tid_mid, read_template_pair_label, read_name_5pts_score):
        try:
            out = reader(path)
        except DataFormatError as error:
            assert str(error).startswith(str(path))
        else:
            assert all(len(part) == len(out[0]) for part in out)
            if reader is read_template_pair_label:
                assert set(out[1].tolist()) <= {0, 1}
            if reader is read_name_5pts_score:
                assert np.isfinite(out[1]).all() and np.isfinite(out[2]).all()


def test_the_feature_cache_round_trips_and_refuses_what_does_not_match(tmp_path):
    from femb.evaluation.ijb_cache import load_features, save_features

    plain = np.arange(12, dtype=np.float32).reshape(3, 4)
    plain[1] = np.nan
    faces = FaceEmbeddings(plain, plain + 1, skipped=["loose_crop/2.jpg"])
    identity = {"model_sha256": "aa", "face_list_sha256": "bb", "landmarks_sha256": "cc"}
    path = tmp_path / "features.npy"
    save_features(path, faces, identity)
    loaded, why = load_features(path, identity, flip=True)
    assert why == "" and loaded.skipped == ["loose_crop/2.jpg"]
    np.testing.assert_array_equal(loaded.mirrored, plain + 1)
    assert loaded.present.tolist() == [True, False, True]
    assert load_features(path, {**identity, "model_sha256": "zz"}, True)[1].endswith("another model_sha256")
    save_features(path, FaceEmbeddings(plain, None), identity)
    assert "no mirrored" in load_features(path, identity, flip=True)[1]
    assert load_features(path, identity, flip=False)[0] is not None


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=300), st.binary(max_size=300))
def test_a_damaged_cache_is_recomputed_never_trusted(tmp_path_factory, array_bytes, record_bytes):
    from femb.evaluation.ijb_cache import load_features, sidecar

    path = tmp_path_factory.mktemp("cache") / "f.npy"
    path.write_bytes(array_bytes)
    sidecar(path).write_bytes(record_bytes)
    loaded, why = load_features(path, {"model_sha256": "aa"}, flip=False)
    assert loaded is None and why
