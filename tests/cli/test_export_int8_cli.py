"""`femb export onnx --int8`, and the outputs export refuses: the source, its run, a non-.onnx name.

The int8 model of a tiny run trained a few steps is gated on the run's own validation set (the
default) and written with --force whatever its verdict (a few-step model verifies near chance, so
the verdict itself is the library tests' business); embed and verify then load it as fp32.
"""

from __future__ import annotations

import json
import sys

import pytest
from cli_helpers import TINY_TRAIN, assert_one_line_error
from typer.testing import CliRunner

from femb.export import read_metadata
from femb_cli.main import app

runner = CliRunner()


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "tiny"
    result = runner.invoke(app, ["train", *TINY_TRAIN, "--steps", "4", "--run-dir", str(run)])
    assert result.exit_code == 0, result.output
    return run


@pytest.fixture(scope="module")
def int8_model(trained_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("int8") / "tiny_int8.onnx"
    args = ["export", "onnx", str(trained_run), "-o", str(out), "--int8", "--calibration", "synthetic"]
    result = runner.invoke(app, [*args, "--calibration-images", "16", "--force"])
    assert result.exit_code == 0, result.output
    return out, result


def export(*args):
    return runner.invoke(app, ["export", "onnx", *map(str, args)])


def test_int8_export_gates_on_the_runs_validation_set_and_prints_throughput(int8_model):
    out, result = int8_model
    text = result.stdout
    assert "gate on the run's validation set (synthetic:6)" in text
    assert "accuracy       fp32" in text and "mean cosine int8 vs fp32" in text
    assert "throughput on this machine (batch 32, CPU): fp32" in text and "images/s" in text
    assert "int8 weights and activations (QDQ)" in text
    assert "histogram" not in result.output  # onnxruntime's calibrators print progress: kept out
    meta = read_metadata(out)
    assert meta["precision"] == "int8" and meta["int8_calibration_set"] == "synthetic"
    assert meta["int8_calibration_images"] == "16" and len(meta["int8_calibration_sha256"]) == 64
    gate = json.loads(meta["int8_gate"])
    assert ("passed" in text) == gate["passed"] and (meta.get("int8_gate_forced") == "true") != gate["passed"]


def test_embed_reports_precision_and_throughput_of_an_int8_model(int8_model, tmp_path):
    from femb.data import SyntheticFaces

    folder = tmp_path / "faces"
    folder.mkdir()
    faces = SyntheticFaces(num_identities=2, images_per_identity=2, seed=1, cache=False)
    from PIL import Image

    for index in range(4):
        Image.fromarray(faces.load_uint8(index)[0].permute(1, 2, 0).numpy()).save(folder / f"{index}.png")
    summary = tmp_path / "summary.json"
    result = runner.invoke(
        app, ["embed", str(int8_model[0]), str(folder), "-o", str(tmp_path / "e.npy"), "--json", str(summary)]
    )
    assert result.exit_code == 0, result.output
    assert "model: int8, " in result.stdout and " images/s" in result.stdout
    figures = json.loads(summary.read_text())
    assert figures["precision"] == "int8" and figures["images"] == 4 and figures["images_per_second"] > 0


def test_verify_pairs_loads_an_int8_model(int8_model, orl_root):
    result = runner.invoke(
        app,
        ["verify", "pairs", str(int8_model[0]), "--folder", str(orl_root), "--provider", "cpu", "--no-roc"],
    )
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.stdout.lower()


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ([], "--int8 needs --calibration"),
        (["--calibration", "synthetic", "--fp16"], "--int8 and --fp16 exclude each other"),
        (["--calibration", "no/such/folder"], "calibration no/such/folder: no such file or folder"),
        (["--calibration", "synthetic", "--calibration-method", "median"], "--calibration-method must be"),
    ],
)
def test_int8_bad_input_is_one_line(trained_run, tmp_path, extra, expected):
    line = assert_one_line_error(export(trained_run, "-o", tmp_path / "m.onnx", "--int8", *extra))
    assert expected in line
    assert not (tmp_path / "m.onnx").exists()


def test_int8_without_quantization_tools_names_the_package(trained_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime.quantization", None)  # an onnxruntime without them
    line = assert_one_line_error(
        export(trained_run, "-o", tmp_path / "m.onnx", "--int8", "--calibration", "synthetic")
    )
    assert "onnxruntime.quantization" in line and "pip install onnxruntime" in line


def test_export_refuses_to_write_over_its_source_or_into_its_run(trained_run, tmp_path):
    checkpoint = trained_run / "checkpoints" / "last.pt"
    before = checkpoint.read_bytes()
    line = assert_one_line_error(export(trained_run, "-o", checkpoint, "--force"))
    assert "inside the source run" in line
    line = assert_one_line_error(export(checkpoint, "-o", checkpoint, "--force"))
    assert "is the source itself" in line
    line = assert_one_line_error(export(trained_run, "-o", trained_run / "model.onnx"))
    assert "inside the source run" in line
    assert checkpoint.read_bytes() == before and not (trained_run / "model.onnx").exists()


def test_export_output_not_ending_in_onnx_needs_force(trained_run, tmp_path):
    line = assert_one_line_error(export(trained_run, "-o", tmp_path / "model.bin"))
    assert "does not end in .onnx; pass --force" in line and not (tmp_path / "model.bin").exists()
    result = export(trained_run, "-o", tmp_path / "model.bin", "--force")
    assert result.exit_code == 0, result.output
    assert read_metadata(tmp_path / "model.bin")["precision"] == "fp32"


@pytest.mark.parametrize("opset", ["99", "13"])
def test_unsupported_opset_is_one_line_without_an_ir_dump(trained_run, tmp_path, opset):
    result = export(trained_run, "-o", tmp_path / "m.onnx", "--opset", opset)
    line = assert_one_line_error(result)
    assert "--opset: opset must be 17 or later and at most" in line and line.endswith(f"got {opset}")
    assert len(result.output.splitlines()) == 1  # nothing printed by torch before the line
