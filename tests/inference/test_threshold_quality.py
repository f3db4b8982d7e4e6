"""A calibrated threshold carried by the model (write → metadata → OnnxEmbedder.same_person) and
MagFace's quality score (the raw embedding norm) from OnnxEmbedder."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from femb.backbones import build_backbone
from femb.evaluation import pair_scores
from femb.export import ModelThreshold, export_onnx, image_pairs_sha256, read_metadata, write_threshold
from femb.export.parity import face_batch
from femb.fileio import NotARegularFileError
from femb.inference import NoThresholdError, OnnxEmbedder, embedding_norms


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    backbone = build_backbone("iresnet_tiny", embed_dim=16).eval()
    return export_onnx(backbone, tmp_path_factory.mktemp("m") / "tiny.onnx", parity_batches=(2,)).path


@pytest.fixture
def model(exported, tmp_path):
    copy = tmp_path / "model.onnx"
    copy.write_bytes(exported.read_bytes())
    return copy


@pytest.fixture(scope="module")
def faces():
    return (face_batch(6).float() - 127.5) / 127.5


def test_threshold_round_trip_and_same_person(model, faces):
    before = OnnxEmbedder(model, provider="cpu")
    assert before.threshold is None
    with pytest.raises(NoThresholdError, match="carries no calibrated threshold"):
        before.same_person(faces[0], faces[1])
    reference = before.embed(faces, flip=True)

    # A threshold between the scores of pairs (0, 1) and (2, 3): one is accepted, one is not.
    normed = before.embed(faces, normalize=True, flip=True)
    pairs = np.array([[0, 1], [2, 3]])
    scores = pair_scores(normed, pairs, "cos")
    middle = float(scores.mean())
    chosen = ModelThreshold(
        threshold=middle,
        far=1e-3,
        similarity="cos",
        flip=True,
        calibration_set="lfw.bin",
        calibration_pairs=6000,
        calibration_sha256="ab" * 32,
    )
    parity = write_threshold(model, chosen)
    assert parity.max_abs_diff == 0.0

    meta = read_metadata(model)
    assert meta["threshold"] == repr(middle) and meta["threshold_far"] == "0.001"
    assert (meta["threshold_similarity"], meta["threshold_flip"]) == ("cos", "true")
    assert (meta["calibration_set"], meta["calibration_pairs"]) == ("lfw.bin", "6000")
    assert meta["backbone"] == "iresnet_tiny"  # the export's metadata is kept
    assert not [name for name in os.listdir(model.parent) if name.endswith(".tmp")]

    after = OnnxEmbedder(model, provider="cpu")
    assert after.threshold == chosen
    np.testing.assert_array_equal(after.embed(faces, flip=True), reference)  # parity holds
    expected = scores > middle
    assert expected.tolist() in ([True, False], [False, True])
    assert after.same_person(faces[0], faces[1]) is bool(expected[0])
    assert after.same_person(faces[[0, 2]], faces[[1, 3]]).tolist() == expected.tolist()
    with pytest.raises(ValueError, match="2 images against 1"):
        after.same_person(faces[[0, 2]], faces[1])


def test_euclidean_threshold_and_no_flip(model, faces):
    embedder = OnnxEmbedder(model, provider="cpu")
    normed = embedder.embed(faces[:2], normalize=True)
    distance = float(((normed[0] - normed[1]) ** 2).sum())
    write_threshold(
        model, ModelThreshold(threshold=distance + 1e-3, far=0.01, similarity="euclidean", flip=False)
    )
    embedder = OnnxEmbedder(model, provider="cpu")
    assert embedder.same_person(faces[0], faces[1]) is True  # closer than the threshold
    write_threshold(
        model, ModelThreshold(threshold=distance - 1e-3, far=0.01, similarity="euclidean", flip=False)
    )
    assert OnnxEmbedder(model, provider="cpu").same_person(faces[0], faces[1]) is False


def test_readers_ignore_unknown_keys_and_name_malformed_ones():
    meta = ModelThreshold(threshold=0.3, far=1e-3).to_metadata() | {"some_future_key": "x", "mean": "127.5"}
    assert ModelThreshold.from_metadata(meta) == ModelThreshold(threshold=0.3, far=1e-3)
    assert ModelThreshold.from_metadata({"backbone": "r50"}) is None
    with pytest.raises(ValueError, match="threshold_far"):
        ModelThreshold.from_metadata({"threshold": "0.3", "threshold_far": "often"})
    with pytest.raises(ValueError, match="similarity"):
        ModelThreshold(threshold=0.3, far=1e-3, similarity="dot")


def test_quality_is_the_raw_norm(model, faces):
    embedder = OnnxEmbedder(model, provider="cpu")
    raw = embedder.embed(faces)
    normalized, norms = embedder.embed(faces, normalize=True, return_norms=True)
    np.testing.assert_allclose(norms, np.linalg.norm(raw, axis=1), rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(normalized, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(embedder.quality(faces), norms, rtol=1e-6)
    np.testing.assert_allclose(embedding_norms(raw), norms, rtol=1e-6)  # femb embed's norm column
    assert not embedder.outputs_unit_vectors


def test_fifo_model_path_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "model.onnx"
    os.mkfifo(fifo)
    with pytest.raises(NotARegularFileError, match="FIFO"):
        OnnxEmbedder(fifo, provider="cpu")


def test_image_pairs_digest_follows_pairs_and_pixels_not_location(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        for name, data in (("x.png", b"1"), ("y.png", b"2")):
            (tmp_path / folder / name).write_bytes(data)
    root_a, root_b = tmp_path / "a", tmp_path / "b"
    digest = image_pairs_sha256([(root_a / "x.png", root_a / "y.png", False)], root_a)
    assert digest == image_pairs_sha256([(root_b / "x.png", root_b / "y.png", False)], root_b)
    assert digest != image_pairs_sha256([(root_a / "x.png", root_a / "y.png", True)], root_a)
    (root_b / "y.png").write_bytes(b"3")
    assert digest != image_pairs_sha256([(root_b / "x.png", root_b / "y.png", False)], root_b)
