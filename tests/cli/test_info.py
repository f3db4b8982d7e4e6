"""`femb info`: versions, CUDA, onnxruntime providers (listed and working), registries."""

from __future__ import annotations

import json

import numpy
import onnxruntime
import torch
from typer.testing import CliRunner

import femb
from femb.backbones import list_backbones
from femb.headers import list_headers
from femb_cli.main import app

runner = CliRunner()


def test_info_text():
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    for version in (femb.__version__, torch.__version__, numpy.__version__, onnxruntime.__version__):
        assert version in out
    assert "CUDA " in out
    assert "onnxruntime providers listed:" in out and "onnxruntime providers working:" in out
    assert "CPUExecutionProvider" in out.split("providers working:")[1].splitlines()[0]
    for name in list_backbones() + list_headers():
        assert name in out
    assert result.stderr == ""  # the provider probe's native messages stay hidden


def test_info_json_agrees_with_the_libraries():
    result = runner.invoke(app, ["info", "--json"])
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)
    assert facts["versions"]["femb"] == femb.__version__
    assert facts["cuda"]["available"] == torch.cuda.is_available()
    assert facts["onnxruntime"]["listed"] == onnxruntime.get_available_providers()
    assert "CPUExecutionProvider" in facts["onnxruntime"]["working"]
    assert set(facts["onnxruntime"]["unavailable"]) == set(facts["onnxruntime"]["listed"]) - set(
        facts["onnxruntime"]["working"]
    )
    assert facts["backbones"] == list_backbones() and facts["headers"] == list_headers()
