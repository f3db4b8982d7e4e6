"""`femb embed MODEL IMAGES`: folders, list files and globs → .npy / .parquet, read back and checked."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from femb import FaceEmbeddingModel
from femb.backbones import build_backbone
from femb.data import SyntheticFaces
from femb.export import export_onnx
from femb.inference import OnnxEmbedder
from femb_cli.main import app

runner = CliRunner()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    model = FaceEmbeddingModel(build_backbone("iresnet_tiny", embed_dim=16))
    model.save(folder / "model.pt")
    export_onnx(model.backbone, folder / "tiny.onnx", parity_batches=(2,))
    return folder / "tiny.onnx", folder / "model.pt"


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    """Five faces in two sub-folders, one corrupt .jpg and a text file (not an image)."""
    root = tmp_path_factory.mktemp("faces")
    data = SyntheticFaces(num_identities=3, images_per_identity=2, seed=1, cache=False)
    for index in range(5):
        face = data.load_uint8(index)[0].permute(1, 2, 0).numpy()
        (root / f"id{index % 2}").mkdir(exist_ok=True)
        Image.fromarray(face).save(root / f"id{index % 2}" / f"face{index}.png")
    (root / "id0" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (root / "notes.txt").write_text("not an image")
    return root


def good_images(root):
    return sorted(root.rglob("face*.png"))


def invoke(*args):
    return runner.invoke(app, ["embed", *map(str, args), "--provider", "cpu"])


def test_folder_to_npy_reads_back(models, image_dir, tmp_path):
    out = tmp_path / "emb.npy"
    result = invoke(models[0], image_dir, "-o", out, "--batch-size", "2")
    assert result.exit_code == 0, result.output
    assert "embedded 5 images (16-d" in result.stdout and "skipped 1 unreadable" in result.stdout
    assert "broken.jpg" in result.stderr

    table = np.load(out, allow_pickle=False)
    assert table.dtype.names == ("path", "norm", "embedding")
    expected_paths = good_images(image_dir)
    assert list(table["path"]) == [str(p) for p in expected_paths]
    raw = OnnxEmbedder(models[0], provider="cpu").embed(expected_paths)
    np.testing.assert_allclose(table["norm"], np.linalg.norm(raw, axis=1), rtol=1e-5)
    np.testing.assert_allclose(
        table["embedding"], raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-6
    )


def test_list_file_to_parquet_keeps_the_list_order(models, image_dir, tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    chosen = list(reversed(good_images(image_dir)))[:3]
    listing = image_dir / "list.txt"
    listing.write_text(
        "# faces to embed\n" + "\n".join(str(p.relative_to(image_dir)) for p in chosen) + "\n\n"
    )
    out = tmp_path / "emb.parquet"
    result = invoke(models[1], listing, "-o", out, "--raw")  # a femb checkpoint, through PyTorch
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out)
    assert list(frame.columns) == ["path", "norm", "embedding"]
    assert list(frame["path"]) == [str(p) for p in chosen]
    vectors = np.stack(frame["embedding"].to_numpy())
    assert vectors.shape == (3, 16)
    np.testing.assert_allclose(frame["norm"].to_numpy(), np.linalg.norm(vectors, axis=1), rtol=1e-5)


def test_glob_with_flip(models, image_dir, tmp_path):
    out = tmp_path / "flip.npy"
    result = invoke(models[0], f"{image_dir}/**/face*.png", "-o", out, "--flip", "--raw")
    assert result.exit_code == 0, result.output
    table = np.load(out, allow_pickle=False)
    paths = good_images(image_dir)
    expected = OnnxEmbedder(models[0], provider="cpu").embed(paths, flip=True)
    np.testing.assert_allclose(table["embedding"], expected, rtol=1e-5, atol=1e-6)


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_errors_are_one_line(models, image_dir, tmp_path):
    assert "must end in .npy or .parquet" in one_line_error(
        invoke(models[0], image_dir, "-o", tmp_path / "x.csv")
    )
    assert "no such folder" in one_line_error(
        invoke(models[0], tmp_path / "missing", "-o", tmp_path / "x.npy")
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no images found" in one_line_error(invoke(models[0], empty, "-o", tmp_path / "x.npy"))
    only_broken = tmp_path / "broken"
    only_broken.mkdir()
    (only_broken / "a.jpg").write_bytes(b"junk")
    assert "none of the 1 images could be read" in one_line_error(
        invoke(models[0], only_broken, "-o", tmp_path / "x.npy")
    )
    assert not (tmp_path / "x.npy").exists()
