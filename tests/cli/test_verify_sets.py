"""`femb verify pairs` on several pairs sets at once (one row per set in the table, --json and
--csv-out), the model's precision and throughput in its summary, and the refusal of models whose
embeddings are NaN or all the same."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pandas as pd
import pytest
import torch
from cli_helpers import assert_one_line_error
from hypothesis import given
from hypothesis import strategies as st
from onnx import numpy_helper
from typer.testing import CliRunner

from femb import FaceEmbeddingModel
from femb.backbones import build_backbone
from femb.data import SyntheticFaces, write_verification_bin
from femb.export import export_onnx
from femb_cli.main import app

runner = CliRunner()


def verify(*args):
    return runner.invoke(app, ["verify", "pairs", *map(str, args), "--provider", "cpu", "--no-roc"])


def faces_bin(path, identities: int, seed: int):
    """Alternating same / different pairs of ``identities`` synthetic people (two images each)."""
    data = SyntheticFaces(num_identities=identities, images_per_identity=2, seed=seed, cache=False)
    face = [
        [data.load_uint8(2 * i + j)[0].permute(1, 2, 0).numpy() for j in range(2)] for i in range(identities)
    ]
    images, issame = [], []
    for i in range(identities):
        images += [face[i][0], face[i][1], face[i][0], face[(i + 1) % identities][1]]
        issame += [True, False]
    return write_verification_bin(path, images, issame)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sets")
    torch.manual_seed(0)
    model = FaceEmbeddingModel(build_backbone("iresnet_tiny", embed_dim=16))
    model.save(folder / "model.pt")
    export_onnx(model.backbone, folder / "tiny.onnx", parity_batches=(2,))
    return {
        "folder": folder,
        "onnx": folder / "tiny.onnx",
        "checkpoint": folder / "model.pt",
        "model": model,
        "a": faces_bin(folder / "alpha.bin", 10, seed=1),
        "b": faces_bin(folder / "beta.bin", 8, seed=2),
    }


def test_several_sets_one_row_each_in_table_json_and_csv(setup, tmp_path):
    result = verify(
        setup["onnx"],
        "--bin",
        setup["a"],
        "--bin",
        f"second={setup['b']}",
        "--folds",
        "2",
        "--far",
        "0.25",
        "--json",
        tmp_path / "r.json",
        "--csv-out",
        tmp_path / "r.csv",
    )
    assert result.exit_code == 0, result.output
    header = next(line for line in result.stdout.splitlines() if "accuracy" in line)
    for column in ("set", "pairs", "accuracy", "EER", "AUC", "TAR@FAR=2.5e-1"):
        assert column in header
    rows = [line for line in result.stdout.splitlines() if line.strip("│ ").startswith(("alpha", "second"))]
    assert len(rows) == 2 and "20" in rows[0] and "16" in rows[1] and "±" in rows[0]
    document = json.loads((tmp_path / "r.json").read_text())
    assert [s["set"] for s in document["sets"]] == ["alpha", "second"]
    assert [s["num_pairs"] for s in document["sets"]] == [20, 16]
    assert "accuracy" not in document  # several sets: the figures live under "sets" only
    assert document["forward_images"] == sum(s["forward_images"] for s in document["sets"])
    for entry in document["sets"]:
        assert (
            0.0 <= entry["accuracy"] <= 1.0
            and "tar_at_far_2.5e-1" in entry
            and entry["images_per_second"] > 0
        )
    table = pd.read_csv(tmp_path / "r.csv")
    assert list(table["set"]) == ["alpha", "second"]
    assert table["accuracy"].tolist() == pytest.approx([s["accuracy"] for s in document["sets"]])


def test_one_set_keeps_the_flat_json_keys(setup, tmp_path):
    result = verify(setup["onnx"], "--bin", setup["a"], "--folds", "2", "--json", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "r.json").read_text())
    assert document["num_pairs"] == 20 and document["pairs_source"] == str(setup["a"])
    assert document["sets"][0]["accuracy"] == document["accuracy"]


def test_set_names_must_differ_and_calibration_takes_one_set(setup):
    copy = setup["folder"] / "other"
    copy.mkdir(exist_ok=True)
    twin = copy / "alpha.bin"
    twin.write_bytes(setup["a"].read_bytes())
    line = assert_one_line_error(verify(setup["onnx"], "--bin", setup["a"], "--bin", twin))
    assert "two pairs sets are named 'alpha'" in line and "NAME=PATH" in line
    line = assert_one_line_error(
        verify(setup["onnx"], "--bin", setup["a"], "--bin", setup["b"], "--calibrate", "--far", "0.25")
    )
    assert "--calibrate writes one threshold" in line


def test_precision_and_throughput_in_summary_and_json(setup, tmp_path):
    fp16 = tmp_path / "half.onnx"
    export_onnx(setup["model"].backbone, fp16, fp16=True, parity_batches=(2,))
    for model, precision in ((setup["checkpoint"], "fp32"), (setup["onnx"], "fp32"), (fp16, "fp16")):
        result = verify(model, "--bin", setup["b"], "--folds", "2", "--json", tmp_path / "r.json")
        assert result.exit_code == 0, result.output
        document = json.loads((tmp_path / "r.json").read_text())
        assert document["precision"] == precision and document["images_per_second"] > 0
        assert "images/s" in result.stdout and precision in result.stdout


def test_refuses_models_whose_embeddings_are_nan_or_identical(setup, tmp_path):
    zeroed = FaceEmbeddingModel(build_backbone("iresnet_tiny", embed_dim=16))
    with torch.no_grad():
        for parameter in zeroed.parameters():
            parameter.zero_()
    zeroed.save(tmp_path / "zero.pt")
    line = assert_one_line_error(verify(tmp_path / "zero.pt", "--bin", setup["a"], "--folds", "2"))
    assert "same embedding for all 20 images" in line and "alpha.bin" in line

    graph = onnx.load(str(setup["onnx"]))
    weight = next(t for t in graph.graph.initializer if len(t.dims) > 1)
    weight.CopyFrom(numpy_helper.from_array(np.full_like(numpy_helper.to_array(weight), np.nan), weight.name))
    onnx.save(graph, str(tmp_path / "nan.onnx"))
    line = assert_one_line_error(verify(tmp_path / "nan.onnx", "--bin", setup["a"], "--folds", "2"))
    assert "NaN or infinite embeddings for 20 of the 20 images" in line


def test_results_are_not_written_over_a_fifo(setup, tmp_path):
    import os
    import stat

    fifo = tmp_path / "results.json"
    os.mkfifo(fifo)
    line = assert_one_line_error(verify(setup["onnx"], "--bin", setup["b"], "--folds", "2", "--json", fifo))
    assert "cannot write results" in line and str(fifo) in line
    assert stat.S_ISFIFO(fifo.stat().st_mode)


@given(
    name=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,11}", fullmatch=True),
    path=st.text("abc/._-=0", min_size=1, max_size=20).filter(lambda p: p.strip("/") and "\x00" not in p),
)
def test_set_names_split_from_name_equals_path(name, path):
    """NAME=PATH names a set; a path alone is named after its stem, '=' in the path kept."""
    from pathlib import Path

    from femb_cli.verify_sources import split_name

    assert split_name(Path(f"{name}=/nonexistent/{path}")) == (name, Path(f"/nonexistent/{path}"))
    plain = Path("/nonexistent") / path
    if "=" not in str(plain):
        assert split_name(plain) == (plain.stem or plain.name, plain)
