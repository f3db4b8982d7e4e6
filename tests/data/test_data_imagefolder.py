"""ImageFolderDataset on the real ORL faces and on broken folders."""

from __future__ import annotations

import shutil

import pytest
import torch
from PIL import Image

from femb.data import ImageFolderDataset, ImageLoadError


def test_orl_labels_are_stable_and_sorted(orl_root, orl_dataset):
    ds = orl_dataset
    assert len(ds) == 400 and ds.num_classes == 40
    assert ds.classes == sorted(ds.classes) and set(ds.classes) == {f"s{i}" for i in range(1, 41)}
    assert ds.labels == [label for _, label in ds.samples]
    for path, label in ds.samples:
        assert path.parent.name == ds.classes[label]
    again = ImageFolderDataset(orl_root)  # a fresh scan gives the same order
    assert again.samples == ds.samples and again.labels == ds.labels


def test_orl_images_are_rgb_face_tensors(orl_root, orl_dataset):
    uncached = ImageFolderDataset(orl_root)
    for index in (0, 123, 399):
        image, label = orl_dataset[index]
        assert image.shape == (3, 112, 112) and image.dtype == torch.float32
        assert -1.0 <= image.min() and image.max() <= 1.0
        assert torch.equal(image[0], image[1])  # grayscale replicated to RGB
        assert label == orl_dataset.labels[index]
        assert torch.equal(image, uncached[index][0])  # the cache changes nothing


def test_train_flip_is_random_but_only_a_flip(orl_root):
    ds = ImageFolderDataset(orl_root, train=True)
    plain = ImageFolderDataset(orl_root)[5][0]
    torch.manual_seed(0)
    seen = {torch.equal(ds[5][0], plain) for _ in range(20)}
    assert seen == {True, False}
    torch.manual_seed(1)
    for _ in range(5):
        image = ds[5][0]
        assert torch.equal(image, plain) or torch.equal(image, plain.flip(-1))


@pytest.fixture
def folder_with_corrupt_image(tmp_path):
    for identity in ("alice", "bob"):
        (tmp_path / identity).mkdir()
        for k in range(2):
            Image.new("RGB", (50, 60), (40 * k, 100, 200)).save(tmp_path / identity / f"{k}.png")
    bad = tmp_path / "alice" / "1.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (tmp_path / "alice" / "notes.txt").write_text("not an image")
    return tmp_path, bad


def test_corrupt_image_is_skipped_and_counted(folder_with_corrupt_image):
    root, bad = folder_with_corrupt_image
    ds = ImageFolderDataset(root, on_error="skip")
    assert ds.classes == ["alice", "bob"] and len(ds) == 4  # notes.txt is not an image
    bad_index = [p for p, _ in ds.samples].index(bad)
    image, label = ds[bad_index]
    assert image.shape == (3, 112, 112)
    assert label == ds.labels[bad_index]  # the substitute comes from the same identity
    assert ds.skipped == 1 and ds.first_bad_path == bad
    ds[bad_index]
    assert ds.skipped == 1  # distinct bad files, not reads
    cached = ImageFolderDataset(root, cache=True)
    assert cached.skipped == 1 and cached[bad_index][0].shape == (3, 112, 112)


def test_corrupt_image_raises_naming_the_file(folder_with_corrupt_image):
    root, bad = folder_with_corrupt_image
    ds = ImageFolderDataset(root, on_error="raise")
    bad_index = [p for p, _ in ds.samples].index(bad)
    with pytest.raises(ImageLoadError) as info:
        ds[bad_index]
    assert str(bad) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ImageLoadError, match="1.png"):
        ImageFolderDataset(root, on_error="raise", cache=True)


def test_missing_or_empty_root_is_one_line_error(tmp_path):
    with pytest.raises(ValueError, match="does not exist") as info:
        ImageFolderDataset(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(info.value)
    (tmp_path / "empty_identity").mkdir()
    with pytest.raises(ValueError, match="no images found") as info:
        ImageFolderDataset(tmp_path)
    assert str(tmp_path) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ValueError, match="on_error"):
        ImageFolderDataset(tmp_path, on_error="ignore")


def test_identity_without_images_is_not_a_class(tmp_path, orl_root):
    for name in ("s1", "s2"):
        shutil.copytree(orl_root / name, tmp_path / name)
    (tmp_path / "s0_empty").mkdir()
    ds = ImageFolderDataset(tmp_path)
    assert ds.classes == ["s1", "s2"] and ds.num_classes == 2 and len(ds) == 20
