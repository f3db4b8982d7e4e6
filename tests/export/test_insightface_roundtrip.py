"""A `femb export onnx` model served through the `insightface` package (PyPI), on the CPU provider.

insightface's ``model_zoo.get_model`` routes a square ``N×3×S×S`` input to ``ArcFaceONNX``, which
feeds OpenCV BGR images swapped to RGB, with mean/std guessed from the graph. Its embeddings must
equal femb's ``OnnxEmbedder``'s on the same faces. Skipped where insightface is not installed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from femb import FaceEmbeddingModel
from femb.backbones import build_backbone
from femb.export.parity import face_batch
from femb.inference import OnnxEmbedder
from femb_cli.main import app

insightface = pytest.importorskip("insightface")


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    torch.manual_seed(0)
    backbone = build_backbone("iresnet_tiny", embed_dim=16)
    backbone.train()
    with torch.no_grad():  # realistic BatchNorm statistics: the embedding depends on the input scale
        backbone((face_batch(8).float() - 127.5) / 127.5)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    FaceEmbeddingModel(backbone.eval()).save(path)
    return path


def export(saved_model, out, *flags) -> None:
    result = CliRunner().invoke(app, ["export", "onnx", str(saved_model), "-o", str(out), *flags])
    assert result.exit_code == 0, result.output


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def insightface_embeddings(path, rgb_faces: torch.Tensor) -> np.ndarray:
    model = insightface.model_zoo.get_model(str(path), providers=["CPUExecutionProvider"])
    assert model is not None, "insightface.model_zoo.get_model did not recognise the file"
    assert model.taskname == "recognition"
    bgr = [np.ascontiguousarray(face.permute(1, 2, 0).numpy()[:, :, ::-1]) for face in rgb_faces]
    return np.asarray(model.get_feat(bgr), dtype=np.float32)


@pytest.mark.parametrize(
    ("flags", "mean_std"),
    [((), (127.5, 127.5)), (("--normalize-in-graph",), (0.0, 1.0))],
    ids=["plain", "normalize-in-graph"],
)
def test_export_gives_femb_embeddings_in_insightface(saved_model, tmp_path, flags, mean_std):
    path = tmp_path / "model.onnx"
    export(saved_model, path, *flags)
    model = insightface.model_zoo.get_model(str(path), providers=["CPUExecutionProvider"])
    # With --normalize-in-graph insightface sees the graph's Sub/Mul and feeds raw pixels.
    assert (model.input_mean, model.input_std) == mean_std
    faces = face_batch(6)  # uint8 RGB N×3×112×112
    theirs = insightface_embeddings(path, faces)
    ours = OnnxEmbedder(path, provider="cpu").embed(faces.permute(0, 2, 3, 1).numpy())
    assert cosines(theirs, ours).min() > 0.9999
