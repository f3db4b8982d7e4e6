"""OnnxEmbedder: every input kind gives the PyTorch backbone's embedding; errors are one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from femb import FaceEmbeddingModel
from femb.backbones import build_backbone
from femb.data.transforms import to_face_tensor
from femb.export import export_onnx
from femb.export.parity import face_batch
from femb.inference import (
    ModelLoadError,
    OnnxEmbedder,
    TorchEmbedder,
    open_embedder,
)


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    return build_backbone("iresnet_tiny", embed_dim=16).eval()


@pytest.fixture(scope="module")
def onnx_path(backbone, tmp_path_factory):
    return export_onnx(backbone, tmp_path_factory.mktemp("m") / "tiny.onnx", parity_batches=(2,)).path


@pytest.fixture(scope="module")
def in_graph_onnx_path(backbone, tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "tiny_in_graph.onnx"
    return export_onnx(backbone, path, normalize_in_graph=True, parity_batches=(2,)).path


@pytest.fixture(scope="module")
def uint8_onnx_path(backbone, tmp_path_factory, legacy_uint8_export):
    """A model with a uint8 NHWC input (a format femb never released)."""
    return legacy_uint8_export(backbone, tmp_path_factory.mktemp("m") / "tiny_u8.onnx")


@pytest.fixture(scope="module")
def images():
    """Five faces: uint8 N×3×112×112 and the normalised float batch."""
    uint8 = face_batch(5)
    return uint8, (uint8.float() - 127.5) / 127.5


def reference(backbone, floats) -> np.ndarray:
    with torch.no_grad():
        return backbone(floats).numpy()


def test_float_tensor_and_array_inputs(backbone, onnx_path, images):
    _, floats = images
    embedder = OnnxEmbedder(onnx_path, provider="cpu", batch_size=2)
    assert embedder.provider == "cpu" and embedder.embed_dim == 16
    expected = reference(backbone, floats)
    np.testing.assert_allclose(embedder.embed(floats), expected, atol=1e-4)
    np.testing.assert_allclose(embedder.embed(floats.numpy()), expected, atol=1e-4)
    np.testing.assert_allclose(embedder(floats), expected, atol=1e-4)  # as an evaluator embed_fn
    np.testing.assert_allclose(embedder.embed(floats[0]), expected[:1], atol=1e-4)


def test_uint8_pil_and_path_inputs(onnx_path, images, tmp_path):
    uint8, floats = images
    embedder = OnnxEmbedder(onnx_path, provider="cpu")
    expected = embedder.embed(floats)
    hwc = uint8.permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(embedder.embed(hwc), expected, atol=1e-5)  # N×H×W×3 batch
    np.testing.assert_allclose(embedder.embed(list(hwc)), expected, atol=1e-5)  # list of H×W×3
    pil = [Image.fromarray(image) for image in hwc]
    np.testing.assert_allclose(embedder.embed(pil), expected, atol=1e-5)
    paths = []
    for index, image in enumerate(pil):
        paths.append(tmp_path / f"face{index}.png")
        image.save(paths[-1])
    np.testing.assert_allclose(embedder.embed([str(p) for p in paths]), expected, atol=1e-5)
    np.testing.assert_allclose(embedder.embed(paths[0]), expected[:1], atol=1e-5)
    mixed = [paths[0], pil[1], hwc[2], floats[3]]
    np.testing.assert_allclose(embedder.embed(mixed), expected[:4], atol=1e-5)


def test_dataset_input(onnx_path):
    from femb.data import SyntheticFaces

    data = SyntheticFaces(num_identities=2, images_per_identity=2, seed=1)
    embedder = OnnxEmbedder(onnx_path, provider="cpu", batch_size=3)
    stacked = torch.stack([data[i][0] for i in range(len(data))])
    np.testing.assert_allclose(embedder.embed(data), embedder.embed(stacked), atol=1e-6)


def test_other_image_sizes_are_letterboxed(onnx_path):
    embedder = OnnxEmbedder(onnx_path, provider="cpu")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(112, 92, 3), dtype=np.uint8)  # ORL's 92×112
    np.testing.assert_allclose(embedder.embed(image), embedder.embed(to_face_tensor(image)), atol=1e-6)


def test_normalize_in_graph_model_takes_raw_float_pixels(onnx_path, in_graph_onnx_path, images):
    uint8, floats = images
    float_model = OnnxEmbedder(onnx_path, provider="cpu")
    in_graph = OnnxEmbedder(in_graph_onnx_path, provider="cpu")
    prep = in_graph.preprocessing
    assert (prep.dtype, prep.layout, prep.mean, prep.std) == ("float32", "NCHW", 0.0, 1.0)
    assert in_graph.metadata["normalize_in_graph"] == "true" and in_graph.assumption == ""
    assert "raw pixels 0-255" in in_graph.describe()
    expected = float_model.embed(floats)
    np.testing.assert_allclose(in_graph.embed(floats), expected, atol=1e-4)
    np.testing.assert_allclose(in_graph.embed(uint8.permute(0, 2, 3, 1).numpy()), expected, atol=1e-4)
    # What it is fed: raw float RGB pixels.
    raw = in_graph.session.run(None, {"input": uint8.float().numpy()})[0]
    np.testing.assert_allclose(raw, expected, atol=1e-4)


def test_uint8_input_model_is_refused_in_one_line(uint8_onnx_path):
    """The uint8 NHWC input was never released: femb feeds float NCHW only and says so."""
    with pytest.raises(ModelLoadError, match=r"input 'input' is tensor\(uint8\); femb feeds float32"):
        OnnxEmbedder(uint8_onnx_path, provider="cpu")


def test_flip_and_normalize(backbone, onnx_path, images):
    _, floats = images
    embedder = OnnxEmbedder(onnx_path, provider="cpu")
    flipped = embedder.embed(floats, flip=True, normalize=True)
    expected = reference(backbone, floats) + reference(backbone, torch.flip(floats, dims=[3]))
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(flipped, expected, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(flipped, axis=1), 1.0, atol=1e-5)


def test_empty_input_gives_empty_array(onnx_path):
    assert OnnxEmbedder(onnx_path, provider="cpu").embed([]).shape == (0, 16)


def test_wrong_shapes_are_clear_errors(onnx_path):
    embedder = OnnxEmbedder(onnx_path, provider="cpu")
    with pytest.raises(ValueError, match="expects 112×112 images"):
        embedder.embed(torch.zeros(2, 3, 64, 64))
    with pytest.raises(ValueError, match="normalised float tensor"):
        embedder.embed(torch.zeros(2, 5))


def test_missing_and_invalid_model_files(tmp_path):
    with pytest.raises(ModelLoadError, match="no such file"):
        OnnxEmbedder(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"definitely not a protobuf \x00\xff" * 10)
    with pytest.raises(ModelLoadError, match="not a readable ONNX model") as caught:
        OnnxEmbedder(junk, provider="cpu")
    assert "\n" not in str(caught.value)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ModelLoadError, match="neither an ONNX model nor a femb checkpoint"):
        open_embedder(text, provider="cpu")


def test_open_embedder_picks_the_runtime(backbone, onnx_path, tmp_path, images):
    _, floats = images
    FaceEmbeddingModel(backbone).save(tmp_path / "model.pt")
    torch_embedder = open_embedder(tmp_path / "model.pt", provider="cpu")
    onnx_embedder = open_embedder(onnx_path, provider="cpu")
    assert isinstance(torch_embedder, TorchEmbedder) and torch_embedder.provider == "pytorch-cpu"
    assert isinstance(onnx_embedder, OnnxEmbedder)
    np.testing.assert_allclose(torch_embedder.embed(floats), onnx_embedder.embed(floats), atol=1e-4)
