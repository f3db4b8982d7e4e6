"""`femb verify pairs`: every pairs source, outputs, exit codes, and one-line errors (never a traceback)."""

from __future__ import annotations

import importlib.util
import json
import os
import pickle

import pandas as pd
import pytest
import torch
from cli_helpers import assert_one_line_error
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
    return alternating_pairs_bin(faces, tmp_path_factory.mktemp("bin") / "synthetic.bin", shifted=False)


def alternating_pairs_bin(faces, path, shifted: bool):
    """Pair 2i: identity i's two images; pair 2i+1, 'different': image 0 of i with image 1 of i+1,
    or (``shifted``) image 0 of i with itself, which any threshold accepts."""
    images, issame = [], []
    for i in range(NUM_IDENTITIES):
        images += [faces[i][0], faces[i][1]]
        issame.append(True)
        images += [faces[i][0], faces[i][0] if shifted else faces[(i + 1) % NUM_IDENTITIES][1]]
        issame.append(False)
    return write_verification_bin(path, images, issame)


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
    assert "at least one pairs source" in assert_one_line_error(verify(onnx_path))
    assert "--root applies to --pairs and --csv only" in assert_one_line_error(
        verify(onnx_path, "--bin", bin_file, "--root", image_root)
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


# ---------------------------------------------------------------------------------------- thresholds
def verify_bin(model, bin_path, *args):
    """`femb verify pairs MODEL --bin BIN` on the CPU, without the ROC plot."""
    return verify(model, "--bin", bin_path, "--provider", "cpu", "--no-roc", *args)


@pytest.fixture
def onnx_copy(models, tmp_path):
    """A private copy of the ONNX model: calibration rewrites it."""
    import shutil

    return shutil.copy(models[0], tmp_path / "model.onnx")


@pytest.fixture(scope="module")
def shifted_bin(faces, tmp_path_factory):
    """Drift on purpose: every 'different' pair is one image twice, so any threshold accepts it."""
    return alternating_pairs_bin(faces, tmp_path_factory.mktemp("shifted") / "shifted.bin", shifted=True)


def test_far_targets_report_threshold_and_fold_spread(models, bin_file, tmp_path):
    result = verify_bin(
        models[0], bin_file, "--far", "0.25", "--far", "0.5", "--folds", "2", "--json", tmp_path / "r.json"
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "r.json").read_text())
    for key in ("2.5e-1", "5e-1"):
        assert isinstance(summary[f"threshold_at_far_{key}"], float)
        assert 0.0 <= summary[f"tar_at_far_{key}_fold_mean"] <= 1.0 and summary[f"tar_at_far_{key}_std"] >= 0
    assert "TAR@FAR=2.5e-1" in result.stdout and "at threshold" in result.stdout
    assert "tar_at_far_1e-3" not in summary  # --far replaces the defaults
    assert_one_line_error(verify(models[0], "--bin", bin_file, "--far", "1.5"))


def test_calibrate_then_drift_on_shifted_pairs(onnx_copy, bin_file, shifted_bin, tmp_path):
    from femb.export import file_sha256, read_metadata
    from femb.inference import OnnxEmbedder

    result = verify_bin(onnx_copy, bin_file, "--far", "0.25", "--calibrate", "--json", tmp_path / "c.json")
    assert result.exit_code == 0, result.output
    assert "written to" in result.stdout and "embeddings unchanged" in result.stdout
    meta = read_metadata(onnx_copy)
    assert meta["threshold_far"] == "0.25" and meta["threshold_similarity"] == "cos"
    assert meta["threshold_flip"] == "true" and meta["calibration_set"] == "synthetic.bin"
    assert meta["calibration_pairs"] == str(2 * NUM_IDENTITIES)
    assert meta["calibration_sha256"] == file_sha256(bin_file)
    summary = json.loads((tmp_path / "c.json").read_text())
    assert float(meta["threshold"]) == summary["threshold_at_far_2.5e-1"]
    assert OnnxEmbedder(onnx_copy, provider="cpu").threshold.far == 0.25

    # The calibration set again: FAR at the stored threshold is within target, no warning.
    same_set = verify_bin(onnx_copy, bin_file, "--json", tmp_path / "s.json", "--fail-over-far", "0.25")
    assert same_set.exit_code == 0, same_set.output
    assert "model threshold" in same_set.stdout and "calibration drift" not in same_set.stderr
    assert json.loads((tmp_path / "s.json").read_text())["far_at_model_threshold"] <= 0.25

    # Shifted pairs: every different pair is accepted, FAR 1.0 = 4× the target → one warning line.
    shifted = verify_bin(onnx_copy, shifted_bin, "--json", tmp_path / "d.json", "--fail-over-far", "0.5")
    drift = [line for line in shifted.stderr.splitlines() if "calibration drift" in line]
    assert len(drift) == 1 and drift[0].startswith("warning: ") and "synthetic.bin" in drift[0]
    assert shifted.exit_code == 1 and "--fail-over-far" in shifted.stderr
    report = json.loads((tmp_path / "d.json").read_text())
    assert report["far_at_model_threshold"] == 1.0 and report["calibration_drift"]


def test_calibrate_and_fail_over_far_errors(models, bin_file):
    onnx_path, checkpoint = models
    error = assert_one_line_error(verify(checkpoint, "--bin", bin_file, "--calibrate", "--far", "0.5"))
    assert "ONNX" in error
    error = assert_one_line_error(
        verify(onnx_path, "--bin", bin_file, "--fail-over-far", "0.1", "--provider", "cpu")
    )
    assert "no calibrated threshold" in error
    # 12 different pairs cannot resolve FAR 1e-3: nothing is written.
    error = assert_one_line_error(verify(onnx_path, "--bin", bin_file, "--calibrate", "--no-roc"))
    assert "cannot resolve FAR 0.001" in error


def test_quality_curve_table_plot_json_csv(models, bin_file, tmp_path):
    result = verify_bin(
        models[0],
        bin_file,
        "--far",
        "0.25",
        "--quality-curve",
        "--json",
        tmp_path / "q.json",
        "--csv-out",
        tmp_path / "q.csv",
    )
    assert result.exit_code == 0, result.output
    assert "error versus reject" in result.stdout and "FNMR as the lowest-quality" in result.stdout
    summary = json.loads((tmp_path / "q.json").read_text())
    curve = summary["quality_curve"]
    assert [point["rejected"] for point in curve] == pytest.approx([i / 20 for i in range(11)])
    assert curve[0]["kept_pairs"] == 2 * NUM_IDENTITIES and curve[-1]["kept_pairs"] == NUM_IDENTITIES
    assert summary["quality_curve_fmr"] == 0.25
    row = pd.read_csv(tmp_path / "q.csv").iloc[0]
    assert row["fnmr_at_reject_0%"] == pytest.approx(curve[0]["fnmr"])
    assert row["fnmr_at_reject_50%"] == pytest.approx(curve[-1]["fnmr"])


def test_quality_curve_skipped_for_unit_vector_models(models, bin_file, tmp_path):
    import onnx

    from femb.export.metadata import read_metadata, set_metadata

    model = onnx.load(str(models[0]))
    meta = read_metadata(model)
    meta["output_normalized"] = "true"
    set_metadata(model, meta)
    onnx.save(model, str(tmp_path / "unit.onnx"))
    result = verify_bin(tmp_path / "unit.onnx", bin_file, "--far", "0.25", "--quality-curve")
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if "quality curve skipped" in line]
    assert len(notes) == 1 and "unit vectors" in notes[0]


def test_calibrate_on_a_folder_fingerprints_pairs_and_images(onnx_copy, image_root, tmp_path):
    from femb.export import read_metadata

    def calibrate(seed: str) -> dict:
        args = ("--folder", image_root, "--num-pairs", "24", "--seed", seed, "--far", "0.25", "--folds", "2")
        result = verify(onnx_copy, *args, "--provider", "cpu", "--no-roc", "--calibrate")
        assert result.exit_code == 0, result.output
        return read_metadata(onnx_copy)

    first = calibrate("0")
    assert first["calibration_set"] == image_root.name and len(first["calibration_sha256"]) == 64
    assert calibrate("0")["calibration_sha256"] == first["calibration_sha256"]
    assert calibrate("1")["calibration_sha256"] != first["calibration_sha256"]  # other pairs drawn
