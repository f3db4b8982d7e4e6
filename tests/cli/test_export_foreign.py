"""`femb export onnx PATH --backbone NAME`: plain state dicts (arcface_torch, MagFace) exported, checked."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cli_helpers import assert_one_line_error
from typer.testing import CliRunner

from femb.backbones import build_backbone
from femb.export import read_metadata
from femb.inference import OnnxEmbedder
from femb_cli.main import app

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """An iresnet_tiny (D=16) with non-trivial BatchNorm statistics, saved as arcface_torch does."""
    torch.manual_seed(0)
    model = build_backbone("iresnet_tiny", embed_dim=16)
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 3, 112, 112).clamp(-1, 1))
    model.eval()
    folder = tmp_path_factory.mktemp("foreign")
    torch.save(dict(model.state_dict()), folder / "backbone.pth")
    magface = {f"module.features.{k}": v for k, v in model.state_dict().items()}
    magface["module.fc.weight"] = torch.randn(50, 16)
    torch.save({"epoch": 1, "state_dict": magface}, folder / "magface.pth")
    return model, folder


@pytest.mark.parametrize("file", ["backbone.pth", "magface.pth"])
def test_state_dict_exports_with_inferred_embed_dim(trained, tmp_path, file):
    model, folder = trained
    out = tmp_path / "foreign.onnx"
    result = runner.invoke(
        app, ["export", "onnx", str(folder / file), "--backbone", "iresnet_tiny", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "into iresnet_tiny (16-d)" in result.stdout and "parity ok" in result.stdout
    meta = read_metadata(out)
    assert (meta["backbone"], meta["embed_dim"]) == ("iresnet_tiny", "16")
    assert str(folder / file) in meta["weights_source"]
    images = torch.randn(4, 3, 112, 112).clamp(-1, 1)
    with torch.no_grad():
        expected = model(images).numpy()
    got = OnnxEmbedder(out, provider="cpu").embed(images)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_default_output_is_named_after_the_file(trained, tmp_path, monkeypatch):
    _, folder = trained
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(
        app,
        ["export", "onnx", str(folder / "backbone.pth"), "--backbone", "iresnet_tiny", "--embed-dim", "16"],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "exports" / "backbone.onnx").is_file()


def test_wrong_embed_dim_or_architecture_is_one_clear_error(trained, tmp_path):
    _, folder = trained
    args = ["export", "onnx", str(folder / "backbone.pth"), "-o", str(tmp_path / "x.onnx")]
    line = assert_one_line_error(
        runner.invoke(app, [*args, "--backbone", "iresnet_tiny", "--embed-dim", "32"])
    )
    assert (
        "first mismatch at key 'fc.weight': the file has shape (16, 3136), the model expects (32, 3136)"
        in line
    )
    line = assert_one_line_error(runner.invoke(app, [*args, "--backbone", "mbf", "--embed-dim", "16"]))
    assert "does not fit mobilefacenet" in line and "'body.0.0.weight': missing from the file" in line
    line = assert_one_line_error(runner.invoke(app, [*args, "--backbone", "resnet9"]))
    assert "unknown backbone 'resnet9'" in line
    assert not (tmp_path / "x.onnx").exists()


def test_state_dict_without_backbone_option_gets_a_hint(trained):
    _, folder = trained
    line = assert_one_line_error(runner.invoke(app, ["export", "onnx", str(folder / "backbone.pth")]))
    assert "not a femb checkpoint" in line and "--backbone" in line


def test_unsafe_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "backbone.pth"
    torch.save({"x": Payload()}, path)
    line = assert_one_line_error(
        runner.invoke(app, ["export", "onnx", str(path), "--backbone", "iresnet_tiny"])
    )
    assert "refused to load" in line
    assert not marker.exists()
