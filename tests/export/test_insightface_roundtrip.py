"""A `femb export onnx` model served through the `insightface` package (PyPI), on the CPU provider.

insightface's ``model_zoo.get_model`` routes a square ``N×3×S×S`` input to ``ArcFaceONNX``, which
feeds OpenCV BGR images swapped to RGB, with mean/std guessed from the graph. Its embeddings must
equal femb's ``OnnxEmbedder``'s on the same faces. Skipped where insightface is not installed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from export_helpers import write_identity_folder
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


@pytest.fixture(scope="module")
def gate_folder(tmp_path_factory):
    """Labelled synthetic faces (5 identities × 4) for the int8 gate's pairs."""
    return write_identity_folder(tmp_path_factory.mktemp("gate"), 5, 4, seed=2)


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


@pytest.mark.parametrize("flags", [(), ("--normalize-in-graph",)], ids=["plain", "normalize-in-graph"])
def test_int8_export_loads_in_insightface_as_fp32_does(saved_model, gate_folder, tmp_path, flags):
    """An int8 file keeps the float32 interface and, with --normalize-in-graph, the Sub/Mul that
    insightface reads at the front of the graph (the QDQ nodes go behind them)."""
    fp32, int8 = tmp_path / "fp32.onnx", tmp_path / "int8.onnx"
    export(saved_model, fp32, *flags)
    int8_flags = ("--int8", "--calibration", "synthetic", "--calibration-images", "16", "--force")
    export(saved_model, int8, *flags, *int8_flags, "--gate-pairs", str(gate_folder))
    zoo = [insightface.model_zoo.get_model(str(p), providers=["CPUExecutionProvider"]) for p in (fp32, int8)]
    assert (zoo[1].input_mean, zoo[1].input_std) == (zoo[0].input_mean, zoo[0].input_std)
    faces = face_batch(6)
    theirs = insightface_embeddings(int8, faces)
    ours = OnnxEmbedder(int8, provider="cpu").embed(faces.permute(0, 2, 3, 1).numpy())
    # Not 0.9999 as for fp32: OpenCV's and femb's float normalisation differ by an ulp, which moves
    # a few pixels across an int8 step of the quantized input; this untrained net amplifies that.
    agreement = cosines(theirs, ours)
    assert agreement.min() > 0.97 and agreement.mean() > 0.99
