"""Issue 11, item 6: an unreadable image never shifts a label.

Real ORL faces (from /work/shared, never copied into the repository; copied into a temporary
folder here so that a garbage file can sit among them) with one file of garbage in one identity.
"""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from femb import FaceEmbeddingModel
from femb.backbones import build_backbone
from femb.data import ImageFolderDataset, pairs_from_labelled
from femb.data.transforms import load_image, to_face_uint8
from femb.export import export_onnx
from femb_cli.main import app

IDENTITIES = [f"s{i}" for i in range(1, 11)]


@pytest.fixture(scope="module")
def orl(orl_root):
    return orl_root


@pytest.fixture(scope="module")
def folder_with_garbage(orl, tmp_path_factory):
    """ten ORL identities; ``s3/99.pgm`` is garbage and sorts last in s3, just before s4's images."""
    root = tmp_path_factory.mktemp("orl_garbage")
    for name in IDENTITIES:
        shutil.copytree(orl / name, root / name)
    bad = root / "s3" / "99.pgm"
    bad.write_bytes(b"P5\n92 112\n255\n" + b"\x00" * 17)  # a PGM header, then far too few pixels
    return root, bad


def identity_of(dataset: ImageFolderDataset, index: int) -> str:
    return dataset.samples[index][0].parent.name


def test_pairs_leave_unreadable_images_out_before_drawing(folder_with_garbage):
    root, bad = folder_with_garbage
    dataset = ImageFolderDataset(root)
    bad_index = [path for path, _ in dataset.samples].index(bad)
    with pytest.warns(
        UserWarning, match=r"skipped 1 unreadable image of 101 .* before drawing pairs"
    ) as caught:
        pairs = pairs_from_labelled(dataset, num_pairs=4000, seed=0)  # asks for every same pair there is
    assert str(bad) in str(caught[0].message)
    used = pairs.images.indices
    assert bad_index not in used
    # Every pair's flag is the truth about the two files' folders.
    for (a, b), same in zip(pairs.pairs.tolist(), pairs.issame.tolist(), strict=True):
        assert (identity_of(dataset, used[a]) == identity_of(dataset, used[b])) == same
    # s3 keeps its 10 real images: 45 same pairs, as every other identity.
    s3 = [i for i in used if identity_of(dataset, i) == "s3"]
    assert len(s3) == 10
    # And each image given to the evaluator is the decoded file itself, not a stand-in.
    for k in (0, len(used) // 2, len(used) - 1):
        expected = to_face_uint8(load_image(dataset.samples[used[k]][0]))
        assert torch.equal(dataset.load_uint8(used[k])[0], expected)


def test_a_folder_without_bad_files_keeps_its_protocol(orl, tmp_path):
    for name in IDENTITIES[:4]:
        shutil.copytree(orl / name, tmp_path / name)
    dataset = ImageFolderDataset(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "skipped" warning
        first = pairs_from_labelled(dataset, num_pairs=40, seed=3)
    again = pairs_from_labelled(ImageFolderDataset(tmp_path), num_pairs=40, seed=3)
    assert np.array_equal(first.pairs, again.pairs) and first.images.indices == again.images.indices


def test_training_replaces_a_bad_file_within_its_identity(folder_with_garbage):
    root, bad = folder_with_garbage
    dataset = ImageFolderDataset(root, train=False)
    bad_index = [path for path, _ in dataset.samples].index(bad)
    image, label = dataset.load_uint8(bad_index)
    assert label == dataset.labels[bad_index] == dataset.classes.index("s3")
    s3_images = [
        to_face_uint8(load_image(p)) for p, _ in dataset.samples if p.parent.name == "s3" and p != bad
    ]
    assert any(torch.equal(image, other) for other in s3_images)
    assert dataset.skipped == 1 and dataset.first_bad_path == bad


def test_an_identity_with_no_readable_image_falls_back_with_the_true_label(tmp_path, orl):
    shutil.copytree(orl / "s1", tmp_path / "s1")
    (tmp_path / "s0").mkdir()
    (tmp_path / "s0" / "1.pgm").write_bytes(b"garbage")
    dataset = ImageFolderDataset(tmp_path)
    image, label = dataset.load_uint8(0)  # s0's only file
    assert label == dataset.classes.index("s1")  # the stand-in's own label, never s0's
    assert torch.equal(image, to_face_uint8(load_image(dataset.samples[1][0])))


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    torch.manual_seed(0)
    model = FaceEmbeddingModel(build_backbone("iresnet_tiny", embed_dim=16))
    path = tmp_path_factory.mktemp("model") / "tiny.onnx"
    export_onnx(model.backbone, path, parity_batches=(2,))
    return path


def test_verify_folder_reports_the_skipped_file_and_true_pairs(folder_with_garbage, tiny_onnx, tmp_path):
    root, bad = folder_with_garbage
    result = CliRunner().invoke(
        app,
        ["verify", "pairs", str(tiny_onnx), "--folder", str(root), "--num-pairs", "200", "--provider", "cpu"]
        + ["--json", str(tmp_path / "r.json"), "--no-roc"],
    )
    assert result.exit_code == 0, result.output
    assert "note: skipped 1 unreadable image of 101" in result.stderr and str(bad) in result.stderr
    summary = json.loads((tmp_path / "r.json").read_text())
    assert summary["num_same"] == summary["num_different"] == 100
