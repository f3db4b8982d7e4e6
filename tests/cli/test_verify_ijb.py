"""`femb verify ijb` end to end on the synthetic IJB-style set, checked against an independent
computation of the protocol written plainly here (one face at a time, explicit pooling)."""

from __future__ import annotations

import json
import shutil
from collections import defaultdict

import numpy as np
import pytest
import torch
from cli_helpers import assert_one_line_error
from sklearn.metrics import roc_curve
from typer.testing import CliRunner

from femb import FaceEmbeddingModel
from femb.backbones import build_backbone
from femb.data import load_image
from femb.data.align import align_face
from femb.data.ijb_synthetic import write_ijb_synthetic
from femb.export import export_onnx
from femb.inference import open_embedder
from femb_cli.main import app

runner = CliRunner()


@pytest.fixture(scope="module")
def ijb_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("ijb") / "IJBC"
    summary = write_ijb_synthetic(root, "IJBC", num_subjects=8, templates_per_subject=2, media_per_template=2)
    assert (summary.faces, summary.templates, summary.pairs, summary.genuine) == (64, 16, 120, 8)
    return root


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """An untrained iresnet_tiny exported to ONNX (its scores are arbitrary but deterministic)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.onnx"
    export_onnx(
        FaceEmbeddingModel(build_backbone("iresnet_tiny", embed_dim=16)).backbone, path, parity_batches=(2,)
    )
    return path


def independent_scores(root, model_path, flip=True, detector=True, normalize=False) -> np.ndarray:
    """The protocol as a reader of InsightFace's description would write it, face by face."""
    embedder = open_embedder(model_path, provider="cpu")
    landmarks = {}
    for line in (root / "meta" / "ijbc_name_5pts_score.txt").read_text().splitlines():
        name, *numbers = line.split()
        landmarks[name] = (np.array(numbers[:10], dtype=float).reshape(5, 2), float(numbers[10]))
    media_faces = defaultdict(lambda: defaultdict(list))
    for line in (root / "meta" / "ijbc_face_tid_mid.txt").read_text().splitlines():
        name, template, media = line.split()
        points, score = landmarks[name]
        face = np.array(align_face(load_image(root / "loose_crop" / name), points))
        feature = embedder.embed(face[None]).astype(np.float64)[0]
        if flip:
            feature = feature + embedder.embed(np.ascontiguousarray(face[:, ::-1])[None])[0]
        if normalize:
            feature = feature / np.linalg.norm(feature)
        if detector:
            feature = feature * score
        media_faces[int(template)][int(media)].append(feature)
    templates = {}
    for template, medias in media_faces.items():
        total = sum(np.mean(faces, axis=0) for faces in medias.values())
        templates[template] = total / np.linalg.norm(total)
    scores = []
    for line in (root / "meta" / "ijbc_template_pair_label.txt").read_text().splitlines():
        first, second, _ = map(int, line.split())
        scores.append(float(templates[first] @ templates[second]))
    return np.array(scores)


def _nearest_tar(labels, scores, far):
    fpr, tpr, _ = roc_curve(labels, scores)
    gaps = np.abs(fpr - far)
    return max(t for f, t, g in zip(fpr, tpr, gaps, strict=True) if g == gaps.min())


@pytest.mark.parametrize("switches", [[], ["--no-flip", "--no-detector-score", "--normalize-faces"]])
def test_scores_match_an_independent_computation(ijb_set, model, tmp_path, switches):
    out_json, out_scores = tmp_path / "r.json", tmp_path / "s.npy"
    result = runner.invoke(
        app,
        ["verify", "ijb", str(model), "--root", str(ijb_set), "--provider", "cpu", "--batch-size", "7"]
        + ["--json", str(out_json), "--scores", str(out_scores), "--roc", *switches],
    )
    assert result.exit_code == 0, result.output
    plain = not switches
    expected = independent_scores(ijb_set, model, flip=plain, detector=plain, normalize=not plain)
    scores = np.load(out_scores)
    assert scores.shape == (120,) and scores.dtype == np.float32
    np.testing.assert_allclose(scores, expected, atol=1e-6)
    summary = json.loads(out_json.read_text())
    labels = np.loadtxt(ijb_set / "meta" / "ijbc_template_pair_label.txt", dtype=int)[:, 2]
    assert list(summary["tar_at_far"]) == ["1e-06", "1e-05", "1e-04", "1e-03", "1e-02", "1e-01"]
    for key, value in summary["tar_at_far"].items():
        assert value == pytest.approx(_nearest_tar(labels, expected, float(key)), abs=1e-12)
    assert (summary["num_pairs"], summary["num_genuine"], summary["num_impostor"]) == (120, 8, 112)
    assert summary["protocol"] == {"flip": plain, "detector_score": plain, "normalize_faces": not plain}
    assert set(summary["identification"]) == {"G1", "G2"}
    assert summary["identification"]["G1"]["num_mated"] == 4
    for text in ("TAR", "1e-04", "AUC", "ROC", "rank-1", "TPIR@FPIR=0.01"):
        assert text in result.output


def test_a_checkpoint_scores_as_its_onnx_export(ijb_set, tmp_path):
    torch.manual_seed(2)
    model = FaceEmbeddingModel(build_backbone("iresnet_tiny", embed_dim=16))
    model.save(tmp_path / "model.pt")
    export_onnx(model.backbone, tmp_path / "model.onnx", parity_batches=(2,))
    for name in ("model.pt", "model.onnx"):
        result = runner.invoke(
            app,
            ["verify", "ijb", str(tmp_path / name), "--root", str(ijb_set), "--provider", "cpu", "--no-roc"]
            + ["--scores", str(tmp_path / f"{name}.npy")],
        )
        assert result.exit_code == 0, result.output
    np.testing.assert_allclose(
        np.load(tmp_path / "model.pt.npy"), np.load(tmp_path / "model.onnx.npy"), atol=1e-4
    )


def test_the_feature_cache_is_reused_only_when_the_digests_match(ijb_set, model, tmp_path):
    cache = tmp_path / "features.npy"
    base = [
        "verify",
        "ijb",
        str(model),
        "--root",
        str(ijb_set),
        "--provider",
        "cpu",
        "--features",
        str(cache),
    ]
    first = runner.invoke(app, [*base, "--scores", str(tmp_path / "a.npy")])
    assert first.exit_code == 0 and "written to" in first.stderr
    assert np.load(cache).shape == (64, 32)  # faces and their mirrors, 16 floats each
    again = runner.invoke(app, [*base, "--no-detector-score", "--scores", str(tmp_path / "b.npy")])
    assert again.exit_code == 0 and "read from" in again.stderr
    expected = independent_scores(ijb_set, model, detector=False)
    np.testing.assert_allclose(np.load(tmp_path / "b.npy"), expected, atol=1e-6)
    # another model (other weights) must not reuse the cache
    torch.manual_seed(1)
    other = tmp_path / "other.onnx"
    export_onnx(
        FaceEmbeddingModel(build_backbone("iresnet_tiny", embed_dim=16)).backbone, other, parity_batches=(2,)
    )
    third = runner.invoke(app, ["verify", "ijb", str(other), *base[3:]])
    assert third.exit_code == 0 and "computed with another model_sha256" in third.stderr


@pytest.fixture
def broken_set(ijb_set, tmp_path):
    root = tmp_path / "IJBC"
    shutil.copytree(ijb_set, root)
    return root


def _run_bad(root, model, *extra, code=2):
    result = runner.invoke(
        app, ["verify", "ijb", str(model), "--root", str(root), "--provider", "cpu", *extra]
    )
    return assert_one_line_error(result, code)


def test_a_missing_meta_file(broken_set, model):
    (broken_set / "meta" / "ijbc_template_pair_label.txt").unlink()
    assert "ijbc_template_pair_label.txt: no such meta file" in _run_bad(broken_set, model)


def test_a_template_without_faces(broken_set, model):
    pairs = broken_set / "meta" / "ijbc_template_pair_label.txt"
    pairs.write_text(pairs.read_text() + "1 999 0\n")
    assert "ijbc_template_pair_label.txt:121: template 999 has no faces" in _run_bad(broken_set, model)


def test_bad_landmarks(broken_set, model):
    points = broken_set / "meta" / "ijbc_name_5pts_score.txt"
    lines = points.read_text().splitlines()
    lines[4] = " ".join(lines[4].split()[:9])
    points.write_text("\n".join(lines) + "\n")
    line = _run_bad(broken_set, model)
    assert "ijbc_name_5pts_score.txt:5: expected an image path and 11 numbers" in line


def test_an_absent_image_errors_or_is_skipped(broken_set, model, tmp_path):
    (broken_set / "loose_crop" / "3.jpg").unlink()
    line = _run_bad(broken_set, model)
    assert "3.jpg: no such image" in line and "ijbc_face_tid_mid.txt:3" in line
    result = runner.invoke(
        app,
        [
            "verify",
            "ijb",
            str(model),
            "--root",
            str(broken_set),
            "--provider",
            "cpu",
            "--on-bad-image",
            "skip",
        ]
        + ["--json", str(tmp_path / "r.json")],
    )
    assert result.exit_code == 0, result.output
    assert "skipped 1 unreadable images" in result.stderr
    assert json.loads((tmp_path / "r.json").read_text())["skipped_images"] == 1


def test_an_unknown_set_needs_a_meta_prefix(ijb_set, model, tmp_path):
    assert "--set LFW is neither IJBB nor IJBC; give --meta-prefix" in _run_bad(
        ijb_set, model, "--set", "LFW"
    )
    result = runner.invoke(
        app,
        ["verify", "ijb", str(model), "--root", str(ijb_set), "--provider", "cpu", "--set", "mine"]
        + ["--meta-prefix", "ijbc", "--no-roc"],
    )
    assert result.exit_code == 0, result.output


def test_a_missing_model_or_root(ijb_set, model, tmp_path):
    assert "no such file or directory" in _run_bad(ijb_set, tmp_path / "absent.onnx")
    assert "--root" in _run_bad(tmp_path / "nowhere", model)


def test_a_broken_1n_list_costs_only_the_1n_table(broken_set, model, tmp_path):
    gallery = broken_set / "meta" / "ijbc_1N_gallery_G1.csv"
    gallery.write_text(gallery.read_text() + "777,3,loose_crop/1.jpg,1,0,0,0,0\n")
    out = tmp_path / "r.json"
    result = runner.invoke(
        app, ["verify", "ijb", str(model), "--root", str(broken_set), "--provider", "cpu", "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert (
        "warning: 1:N identification skipped: " in result.stderr
        and "template 777 has no faces" in result.stderr
    )
    summary = json.loads(out.read_text())
    assert summary["identification"] == {} and summary["num_pairs"] == 120
