"""`femb export onnx`: default path, header stripping message, parity lines, one-line errors."""

from __future__ import annotations

import onnx
import pytest
import torch
from cli_helpers import assert_one_line_error
from typer.testing import CliRunner

from femb import FaceEmbeddingModel
from femb.backbones import build_backbone
from femb.checkpoint import save_checkpoint
from femb.export import ParityResult, read_metadata
from femb.headers import build_header
from femb_cli.main import app

runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory with a checkpoint holding an ArcFace header (10 classes × 16)."""
    torch.manual_seed(0)
    model = FaceEmbeddingModel(build_backbone("iresnet_tiny", embed_dim=16), build_header("arcface", 16, 10))
    run = tmp_path_factory.mktemp("runs") / "tiny-arcface"
    payload = model.checkpoint_payload(
        training={"step": 7, "epoch": 1, "best_accuracy": 0.6}, run_name="tiny-arcface"
    )
    save_checkpoint(payload, run / "checkpoints" / "best.pt")
    return run


def test_export_run_directory_to_default_path(run_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["export", "onnx", str(run_dir)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "stripped header arcface: 160 parameters removed" in out
    assert "exports/tiny-arcface.onnx" in out and "opset 17" in out
    assert "onnx.checker: ok" in out
    assert "parity batch   1:" in out and "parity batch  32:" in out and "parity ok" in out
    path = tmp_path / "exports" / "tiny-arcface.onnx"
    onnx.checker.check_model(str(path))
    meta = read_metadata(path)
    assert meta["run_name"] == "tiny-arcface" and meta["training_step"] == "7" and meta["head"] == "arcface"


def test_fp16_normalize_in_graph_and_extra_metadata(run_dir, tmp_path):
    out = tmp_path / "sub" / "m.onnx"
    result = runner.invoke(
        app,
        [
            "export",
            "onnx",
            str(run_dir / "checkpoints" / "best.pt"),
            "-o",
            str(out),
            "--fp16",
            "--normalize-in-graph",
            "--meta",
            "owner=lab",
            "--min-cosine",
            "0.995",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (
        "float32 N×3×112×112 (RGB pixels 0-255" in result.stdout
        and "fp16 weights, float32 interface" in result.stdout
    )
    assert "≥ 0.995" in result.stdout
    meta = read_metadata(out)
    assert (meta["precision"], meta["normalize_in_graph"], meta["owner"]) == ("fp16", "true", "lab")


def test_parity_failure_exits_1_and_writes_nothing(run_dir, tmp_path, monkeypatch):
    monkeypatch.setattr("femb.export.parity.compare_embeddings", lambda a, b: ParityResult(len(a), 0.25, 0.9))
    out = tmp_path / "bad.onnx"
    result = runner.invoke(app, ["export", "onnx", str(run_dir), "-o", str(out)])
    line = assert_one_line_error(result, code=1)
    assert "parity check failed: min cosine 0.9000000" in line and "was not written" in line
    assert "min cosine 0.9000000" in result.stdout  # the figures are printed before the error
    assert not out.exists()


def test_missing_source(tmp_path):
    line = assert_one_line_error(runner.invoke(app, ["export", "onnx", str(tmp_path / "nope")]))
    assert "no such file or directory" in line


def test_onnx_and_junk_sources_are_refused(run_dir, tmp_path):
    out = tmp_path / "m.onnx"
    assert runner.invoke(app, ["export", "onnx", str(run_dir), "-o", str(out)]).exit_code == 0
    line = assert_one_line_error(runner.invoke(app, ["export", "onnx", str(out)]))
    assert "already an ONNX model" in line
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    line = assert_one_line_error(runner.invoke(app, ["export", "onnx", str(junk)]))
    assert "not a femb checkpoint" in line
    empty = tmp_path / "empty-run"
    empty.mkdir()
    line = assert_one_line_error(runner.invoke(app, ["export", "onnx", str(empty)]))
    assert "no checkpoints/best.pt" in line


def test_bad_meta_option(run_dir, tmp_path):
    line = assert_one_line_error(
        runner.invoke(
            app, ["export", "onnx", str(run_dir), "-o", str(tmp_path / "x.onnx"), "--meta", "novalue"]
        )
    )
    assert "KEY=VALUE" in line
