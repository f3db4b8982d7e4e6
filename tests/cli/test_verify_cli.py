"""`femb verify pairs`: every pairs source, outputs, exit codes, and one-line errors (never a traceback)."""

from __future__ import annotations

import importlib.util
import json
import os
import pickle

import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from femb import FaceEmbeddingModel
from femb.backbones import build_backbone
from femb.data import SyntheticFaces, write_verification_bin
from femb.export import export_onnx
from femb.inference import probe_provider
from femb_cli.main import app

runner = CliRunner()
NUM_IDENTITIES = 12


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """An untrained iresnet_tiny as ONNX and as a saved model."""
    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    model = FaceEmbeddingModel(build_backbone("iresnet_tiny", embed_dim=16))
    model.save(folder / "model.pt")
    export_onnx(model.backbone, folder / "tiny.onnx", parity_batches=(2,))
    return folder / "tiny.onnx", folder / "model.pt"


@pytest.fixture(scope="module")
def faces():
    """uint8 H×W×3 faces: faces[i][j] is image j of identity i."""
    data = SyntheticFaces(num_identities=NUM_IDENTITIES, images_per_identity=2, seed=3, cache=False)
    return [
        [data.load_uint8(2 * i + j)[0].permute(1, 2, 0).numpy() for j in range(2)]
        for i in range(NUM_IDENTITIES)
    ]


@pytest.fixture(scope="module")
def bin_file(faces, tmp_path_factory):
    """Alternating same / different pairs: 2 × NUM_IDENTITIES pairs."""
    images, issame = [], []
    for i in range(NUM_IDENTITIES):
        images += [faces[i][0], faces[i][1]]
        issame.append(True)
        images += [faces[i][0], faces[(i + 1) % NUM_IDENTITIES][1]]
        issame.append(False)
    return write_verification_bin(tmp_path_factory.mktemp("bin") / "synthetic.bin", images, issame)


@pytest.fixture(scope="module")
def image_root(faces, tmp_path_factory):
    """LFW layout: root/name/name_0001.jpg."""
    root = tmp_path_factory.mktemp("lfw")
    for i in range(NUM_IDENTITIES):
        (root / f"person{i}").mkdir()
        for j in range(2):
            Image.fromarray(faces[i][j]).save(root / f"person{i}" / f"person{i}_{j + 1:04d}.jpg", quality=95)
    return root


def verify(*args: str):
    return runner.invoke(app, ["verify", "pairs", *map(str, args)])


def assert_one_line_error(result, code: int = 2) -> str:
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def check_metrics(summary: dict, num_pairs: int) -> None:
    assert summary["num_pairs"] == num_pairs
    assert summary["num_same"] + summary["num_different"] == num_pairs
    assert 0.0 <= summary["accuracy"] <= 1.0 and summary["accuracy_std"] >= 0.0
    assert 0.0 <= summary["eer"] <= 1.0 and 0.0 <= summary["auc"] <= 1.0
    assert summary["images_per_second"] > 0


def test_bin_with_json_csv_and_terminal_roc(models, bin_file, tmp_path):
    onnx_path, _ = models
    result = verify(
        onnx_path,
        "--bin",
        bin_file,
        "--provider",
        "cpu",
        "--batch-size",
        "8",
        "--roc",
        "--json",
        tmp_path / "r.json",
        "--csv-out",
        tmp_path / "r.csv",
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    for label in ("accuracy", "best threshold", "EER", "ROC AUC", "TAR@FAR=1e-3", "TAR@FAR=1e-4", "images/s"):
        assert label in out
    assert "onnxruntime (cpu)" in out and "ROC (AUC" in out and "false accept rate" in out
    summary = json.loads((tmp_path / "r.json").read_text())
    check_metrics(summary, 2 * NUM_IDENTITIES)
    assert (
        summary["provider"] == "cpu"
        and summary["flip"] is True
        and summary["num_images"] == 2 * NUM_IDENTITIES
    )
    # Too few different pairs to resolve FAR 1e-3: reported as unknown, not as a number.
    assert summary["tar_at_far_1e-3"] is None
    table = pd.read_csv(tmp_path / "r.csv")
    assert len(table) == 1 and table.loc[0, "accuracy"] == pytest.approx(summary["accuracy"])


def test_fail_under(models, bin_file, tmp_path):
    onnx_path, _ = models
    result = verify(
        onnx_path,
        "--bin",
        bin_file,
        "--provider",
        "cpu",
        "--json",
        tmp_path / "r.json",
        "--no-roc",
        "--fail-under",
        "0",
    )
    assert result.exit_code == 0, result.output
    accuracy = json.loads((tmp_path / "r.json").read_text())["accuracy"]
    if accuracy < 1.0:
        result = verify(onnx_path, "--bin", bin_file, "--provider", "cpu", "--no-roc", "--fail-under", "100")
        line = assert_one_line_error(result, code=1)
        assert f"accuracy {accuracy:.4f} is below --fail-under 1.0000" in line


def test_malicious_pickle_is_refused(models, tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    evil = tmp_path / "evil.bin"
    evil.write_bytes(pickle.dumps(([b"x", b"y"], [Exploit()])))
    line = assert_one_line_error(verify(models[0], "--bin", evil, "--provider", "cpu"))
    assert "refusing to unpickle" in line and "system" in line
    assert not marker.exists()


def test_lfw_pairs_txt_and_checkpoint_through_pytorch(models, image_root, tmp_path):
    _, checkpoint = models
    lines = ["1 4"]
    lines += [f"person{i} 1 2" for i in range(4)]
    lines += [f"person{i} 1 person{i + 4} 2" for i in range(4)]
    pairs_txt = tmp_path / "pairs.txt"
    pairs_txt.write_text("\n".join(lines) + "\n")
    result = verify(
        checkpoint,
        "--pairs",
        pairs_txt,
        "--root",
        image_root,
        "--provider",
        "cpu",
        "--folds",
        "2",
        "--similarity",
        "euclidean",
        "--no-flip",
        "--json",
        tmp_path / "r.json",
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "r.json").read_text())
    check_metrics(summary, 8)
    assert summary["provider"] == "pytorch-cpu" and summary["similarity"] == "euclidean"
    assert summary["forward_images"] == summary["num_images"]  # no flip


def test_csv_pairs_and_missing_images(models, image_root, tmp_path):
    onnx_path, _ = models
    rows = ["path1,path2,same"]
    rows += [f"person{i}/person{i}_0001.jpg,person{i}/person{i}_0002.jpg,1" for i in range(5)]
    rows += [f"person{i}/person{i}_0001.jpg,person{i + 5}/person{i + 5}_0002.jpg,0" for i in range(5)]
    csv_file = tmp_path / "pairs.csv"
    csv_file.write_text("\n".join(rows) + "\n")
    result = verify(
        onnx_path,
        "--csv",
        csv_file,
        "--root",
        image_root,
        "--provider",
        "cpu",
        "--folds",
        "5",
        "--json",
        tmp_path / "r.json",
    )
    assert result.exit_code == 0, result.output
    check_metrics(json.loads((tmp_path / "r.json").read_text()), 10)

    broken = tmp_path / "broken.csv"
    broken.write_text(
        "\n".join([*rows, "ghost/a.jpg,ghost/b.jpg,0", "person0/person0_0009.jpg,ghost/b.jpg,0"])
    )
    line = assert_one_line_error(
        verify(onnx_path, "--csv", broken, "--root", image_root, "--provider", "cpu")
    )
    assert "3 of the" in line and "missing" in line and "ghost/a.jpg" in line


def test_folder_protocol_on_orl(models, orl_root, tmp_path):
    onnx_path, _ = models
    args = [
        onnx_path,
        "--folder",
        orl_root,
        "--num-pairs",
        "60",
        "--seed",
        "1",
        "--provider",
        "cpu",
        "--batch-size",
        "32",
        "--json",
        tmp_path / "r.json",
    ]
    result = verify(*args)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "r.json").read_text())
    check_metrics(summary, 60)
    assert summary["num_same"] == summary["num_different"] == 30
    assert "40 identities, 400 images, seed 1" in summary["pairs_source"]
    # The protocol is deterministic: the same seed gives the same numbers.
    again = verify(*args[:-1], tmp_path / "again.json")
    assert again.exit_code == 0
    repeated = json.loads((tmp_path / "again.json").read_text())
    assert repeated["accuracy"] == summary["accuracy"] and repeated["auc"] == summary["auc"]


def test_model_errors(models, bin_file, tmp_path):
    line = assert_one_line_error(verify(tmp_path / "missing.onnx", "--bin", bin_file))
    assert "no such file" in line
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\x01 not onnx " * 20)
    line = assert_one_line_error(verify(junk, "--bin", bin_file, "--provider", "cpu"))
    assert "not a readable ONNX model" in line
    text = tmp_path / "model.txt"
    text.write_text("hello")
    line = assert_one_line_error(verify(text, "--bin", bin_file, "--provider", "cpu"))
    assert "neither an ONNX model nor a femb checkpoint" in line


def test_pairs_source_errors(models, bin_file, image_root, tmp_path):
    onnx_path, _ = models
    assert "exactly one pairs source" in assert_one_line_error(verify(onnx_path))
    assert "exactly one pairs source" in assert_one_line_error(
        verify(onnx_path, "--bin", bin_file, "--folder", image_root)
    )
    assert "--pairs needs --root" in assert_one_line_error(verify(onnx_path, "--pairs", tmp_path / "p.txt"))
    assert "does not exist" in assert_one_line_error(verify(onnx_path, "--bin", tmp_path / "none.bin"))
    assert "no such directory" in assert_one_line_error(verify(onnx_path, "--folder", tmp_path / "none"))
    assert "--similarity must be one of" in assert_one_line_error(
        verify(onnx_path, "--bin", bin_file, "--similarity", "manhattan")
    )


def test_cuda_requested_without_cuda(models, bin_file):
    if probe_provider("CUDAExecutionProvider").works:
        pytest.skip("CUDA works here")
    line = assert_one_line_error(verify(models[0], "--bin", bin_file, "--provider", "cuda"))
    assert "CUDA" in line and "unavailable" in line


def test_plot_needs_matplotlib(models, bin_file, tmp_path):
    png = tmp_path / "roc.png"
    result = verify(models[0], "--bin", bin_file, "--provider", "cpu", "--plot", png)
    if importlib.util.find_spec("matplotlib") is None:
        assert "pip install femb[plot]" in assert_one_line_error(result)
        assert not png.exists()
    else:
        assert result.exit_code == 0, result.output
        assert png.stat().st_size > 0
