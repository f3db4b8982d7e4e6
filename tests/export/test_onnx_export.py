"""ONNX export: checker, parity on every backbone, dynamic batch, metadata, fp16, in-graph normalisation."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from export_helpers import calibrated_backbone, faces

import femb
from femb import FaceEmbeddingModel
from femb.backbones import build_backbone, list_backbones
from femb.checkpoint import save_checkpoint
from femb.export import (
    ExportError,
    ParityError,
    Preprocessing,
    compare_embeddings,
    default_output_path,
    export_onnx,
    read_metadata,
)
from femb.export.parity import ParityResult
from femb.headers import build_header
from femb.inference.runtime import create_session

# Full-size networks whose export and parity take minutes on two CPU cores: not in unit tests.
TOO_SLOW = {"iresnet34", "iresnet50", "iresnet100", "iresnet200"}
# name -> (embed_dim, parity batches); iresnet18 keeps its full size but checks smaller batches.
FAST = {
    "iresnet_tiny": (32, (1, 32)),
    "mobilefacenet_small": (32, (1, 8)),
    "mobilefacenet_fast": (32, (1, 8)),
    "mobilefacenet": (64, (1, 2)),
    "iresnet18": (128, (1, 2)),
}


def session(path) -> ort.InferenceSession:
    return create_session(path)


def torch_embed(backbone, images) -> np.ndarray:
    with torch.no_grad():
        return backbone(images).numpy()


@pytest.fixture(scope="module")
def tiny():
    return calibrated_backbone("iresnet_tiny", embed_dim=32)


@pytest.fixture(scope="module")
def tiny_export(tiny, tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "tiny.onnx"
    return export_onnx(tiny, path), tiny


def test_every_registered_backbone_is_covered_or_named_too_slow():
    assert set(list_backbones()) <= set(FAST) | TOO_SLOW, "a new backbone needs an export test entry"


@pytest.mark.parametrize("name", sorted(FAST))
def test_export_checker_and_parity(name, tmp_path):
    embed_dim, batches = FAST[name]
    torch.manual_seed(0)
    backbone = build_backbone(name, embed_dim=embed_dim).eval()
    report = export_onnx(backbone, tmp_path / f"{name}.onnx", parity_batches=batches)
    model = onnx.load(str(report.path))
    onnx.checker.check_model(model, full_check=True)
    assert report.opset >= 17
    assert report.parity_ok and report.min_cosine >= 0.9999
    assert [p.batch_size for p in report.parity] == list(batches)
    (inp,), (out,) = model.graph.input, model.graph.output
    assert (inp.name, out.name) == ("input", "embedding")
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert isinstance(dims[0], str) and dims[1:] == [3, 112, 112]
    assert out.type.tensor_type.shape.dim[1].dim_value == embed_dim
    # One self-contained file: no external data next to it.
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{name}.onnx"]
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in model.graph.initializer)


def test_dynamic_batch_axis(tiny_export):
    report, backbone = tiny_export
    sess = session(report.path)
    for batch in (1, 3, 32):
        images = faces(batch)
        got = sess.run(None, {"input": images.numpy()})[0]
        assert got.shape == (batch, 32)
        parity = compare_embeddings(torch_embed(backbone, images), got)
        assert parity.min_cosine > 0.99999 and parity.max_abs_diff < 1e-3


def test_metadata_round_trip(tmp_path):
    backbone = build_backbone("iresnet_tiny", embed_dim=16)
    header = build_header("arcface", 16, 7)
    model = FaceEmbeddingModel(backbone, header)
    payload = model.checkpoint_payload(
        training={"step": 420, "epoch": 3, "best_accuracy": 0.8125}, run_name="orl-arcface"
    )
    save_checkpoint(payload, tmp_path / "run" / "checkpoints" / "best.pt")
    report = export_onnx(tmp_path / "run", tmp_path / "m.onnx", metadata={"dataset": "orl", "folds": 10})
    meta = read_metadata(report.path)
    assert meta["femb_version"] == femb.__version__
    assert meta["backbone"] == "iresnet_tiny" and meta["embed_dim"] == "16"
    assert json.loads(meta["backbone_kwargs"]) == {"embed_dim": 16}
    assert meta["head"] == "arcface"
    head_kwargs = json.loads(meta["head_kwargs"])
    assert head_kwargs["in_features"] == 16 and head_kwargs["out_features"] == 7
    assert head_kwargs["s"] == pytest.approx(header.hparams()["s"])
    assert (meta["input_size"], meta["color_order"], meta["mean"], meta["std"]) == (
        "112,112",
        "RGB",
        "127.5",
        "127.5",
    )
    assert (meta["input_layout"], meta["input_dtype"], meta["normalize_in_graph"]) == (
        "NCHW",
        "float32",
        "false",
    )
    assert meta["run_name"] == "orl-arcface" and meta["training_step"] == "420"
    assert float(meta["best_accuracy"]) == 0.8125
    assert meta["dataset"] == "orl" and json.loads(meta["folds"]) == 10
    assert Preprocessing.from_metadata(meta) == Preprocessing()
    # The header is gone: its parameters are counted and no initializer has its shape.
    assert report.header == "arcface" and report.header_parameters_removed == 7 * 16
    shapes = [tuple(t.dims) for t in onnx.load(str(report.path)).graph.initializer]
    assert (7, 16) not in shapes


def test_fp16_keeps_float32_interface(tmp_path):
    backbone = calibrated_backbone("mobilefacenet_small", embed_dim=32)
    report = export_onnx(backbone, tmp_path / "fp16.onnx", fp16=True, parity_batches=(1, 8))
    assert report.min_cosine_bound == 0.999 and report.parity_ok
    model = onnx.load(str(report.path))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    assert report.file_size < 0.6 * 4 * report.num_parameters  # about 2 bytes per weight
    assert read_metadata(report.path)["precision"] == "fp16"
    # The source model is untouched (the export works on a copy).
    assert next(backbone.parameters()).dtype == torch.float32


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_normalize_in_graph_takes_raw_float_pixels(tiny, tmp_path, exporter):
    if exporter == "dynamo":
        pytest.importorskip("onnxscript")
    report = export_onnx(tiny, tmp_path / "raw.onnx", normalize_in_graph=True, exporter=exporter)
    assert report.parity_ok and report.min_cosine > 0.99999
    assert report.input_spec.startswith("float32 N×3×112×112")
    sess = session(report.path)
    inp = sess.get_inputs()[0]
    assert inp.type == "tensor(float)" and inp.shape[1:] == [3, 112, 112]
    meta = read_metadata(report.path)
    assert (meta["input_layout"], meta["input_dtype"], meta["normalize_in_graph"]) == (
        "NCHW",
        "float32",
        "true",
    )
    assert (float(meta["mean"]), float(meta["std"])) == (0.0, 1.0)
    prep = Preprocessing.from_metadata(meta)
    assert (prep.dtype, prep.layout, prep.mean, prep.std, prep.normalized_in_graph) == (
        "float32",
        "NCHW",
        0.0,
        1.0,
        True,
    )
    # insightface's ArcFaceONNX looks for nodes named Sub…/Mul… among the first 8.
    nodes = onnx.load(str(report.path)).graph.node[:8]
    names = {node.name: node.op_type for node in nodes}
    assert names.get("Sub_input_mean") == "Sub" and names.get("Mul_input_scale") == "Mul"
    from femb.export.parity import face_batch

    uint8 = face_batch(3)
    got = sess.run(None, {"input": uint8.float().numpy()})[0]
    expected = torch_embed(tiny, (uint8.float() - 127.5) / 127.5)
    assert compare_embeddings(expected, got).max_abs_diff < 1e-4


def test_failed_parity_writes_nothing(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(
        "femb.export.parity.compare_embeddings",
        lambda a, b: ParityResult(len(a), 0.5, 0.97),
    )
    with pytest.raises(ParityError, match=r"min cosine 0\.97.* < 0\.9999") as caught:
        export_onnx(tiny, tmp_path / "bad.onnx", parity_batches=(1,))
    assert not (tmp_path / "bad.onnx").exists()
    assert caught.value.report.parity[0].min_cosine == 0.97
    assert not list(tmp_path.iterdir())  # no temporary file left behind either


def test_nan_embeddings_fail_parity():
    result = compare_embeddings(np.ones((2, 4)), np.array([[1, 1, 1, np.nan], [1, 1, 1, 1]]))
    assert np.isnan(result.min_cosine)
    assert not result.min_cosine >= 0.9


def test_bad_arguments(tiny, tmp_path):
    with pytest.raises(ValueError, match="opset must be 17"):
        export_onnx(tiny, tmp_path / "x.onnx", opset=13)
    with pytest.raises(ValueError, match="unknown exporter"):
        export_onnx(tiny, tmp_path / "x.onnx", exporter="magic")


def test_header_of_a_model_object_is_stripped(tmp_path):
    model = FaceEmbeddingModel(build_backbone("iresnet_tiny", embed_dim=8), build_header("cosface", 8, 5))
    report = export_onnx(model, tmp_path / "m.onnx", parity_batches=(2,))
    assert report.header == "cosface" and report.header_parameters_removed == 40
    assert report.num_parameters == sum(p.numel() for p in model.backbone.parameters())
    assert model.training  # the caller's module keeps its mode


def test_dynamo_exporter(tiny, tmp_path):
    pytest.importorskip("onnxscript")
    report = export_onnx(tiny, tmp_path / "d.onnx", exporter="dynamo", parity_batches=(3,))
    assert report.exporter == "dynamo" and report.opset >= 18 and report.parity_ok
    onnx.checker.check_model(str(report.path))
    assert session(report.path).run(None, {"input": faces(5).numpy()})[0].shape == (5, 32)


def test_default_output_path(tmp_path):
    run = tmp_path / "my-run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "best.pt").touch()
    assert default_output_path(run).as_posix() == "exports/my-run.onnx"
    assert default_output_path(run / "checkpoints" / "best.pt").as_posix() == "exports/my-run.onnx"
    assert default_output_path(tmp_path / "model.pt").as_posix() == "exports/model.onnx"
    assert default_output_path(run, run_name="named run").as_posix() == "exports/named_run.onnx"


def test_unreadable_exporter_failure_is_one_line(tmp_path):
    class Bad(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("boom\nsecond line")

    with pytest.raises(ExportError, match="torchscript exporter.*boom second line"):
        export_onnx(Bad(), tmp_path / "bad.onnx")


def test_export_and_inference_modules_name_fields_not_cli_flags():
    """Library messages name arguments (``calibration_images``); only cli/ words them as flags."""
    import re
    from pathlib import Path

    root = Path(femb.__file__).parent
    found = {
        path.name: re.findall(r"--[a-z][a-z-]+|`femb [a-z]+", path.read_text())
        for folder in ("export", "inference")
        for path in sorted((root / folder).glob("*.py"))
    }
    assert {name: hits for name, hits in found.items() if hits} == {}
