"""Pairs from LFW pairs.txt, CSV files and labelled datasets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from femb.data import (
    ImageFolderDataset,
    PairsDataset,
    SyntheticFaces,
    load_lfw_pairs,
    load_pairs_csv,
    pairs_from_labelled,
)


def _lfw_tree(root, people: dict[str, int]) -> None:
    for k, (name, count) in enumerate(people.items()):
        (root / name).mkdir(parents=True)
        for i in range(1, count + 1):
            Image.new("RGB", (250, 250), (20 * k, 10 * i, 100)).save(root / name / f"{name}_{i:04d}.jpg")


LFW_PAIRS = """2\t2
Aaron_Peirsol\t1\t2
Abel_Pacheco\t1\t3
Aaron_Peirsol\t1\tAbel_Pacheco\t2
Abdullah\t1\tAbel_Pacheco\t1
Abel_Pacheco\t2\t3
Aaron_Peirsol\t2\t3
Abdullah\t1\tAaron_Peirsol\t3
Abel_Pacheco\t2\tAaron_Peirsol\t1
"""


def test_lfw_pairs_parse_in_file_order(tmp_path):
    _lfw_tree(tmp_path / "lfw", {"Aaron_Peirsol": 3, "Abel_Pacheco": 3, "Abdullah": 1})
    (tmp_path / "pairs.txt").write_text(LFW_PAIRS)
    pairs = load_lfw_pairs(tmp_path / "pairs.txt", tmp_path / "lfw")
    assert isinstance(pairs, PairsDataset) and len(pairs) == 8
    assert pairs.issame.tolist() == [True, True, False, False, True, True, False, False]
    assert pairs.pairs.dtype == np.int64 and pairs.pairs.shape == (8, 2)
    paths = pairs.images.paths
    assert len(paths) == len(set(paths)) == 7  # every file once
    first, second = (paths[i] for i in pairs.pairs[0])
    assert (first.name, second.name) == ("Aaron_Peirsol_0001.jpg", "Aaron_Peirsol_0002.jpg")
    assert [paths[i].name for i in pairs.pairs[3]] == ["Abdullah_0001.jpg", "Abel_Pacheco_0001.jpg"]
    a, b, same = pairs[0]
    assert a.shape == b.shape == (3, 112, 112) and same is True


def test_lfw_single_number_header(tmp_path):
    _lfw_tree(tmp_path / "lfw", {"A": 2, "B": 1})
    (tmp_path / "dev.txt").write_text("1\nA 1 2\nA 1 B 1\n")
    assert load_lfw_pairs(tmp_path / "dev.txt", tmp_path / "lfw").issame.tolist() == [True, False]


def test_lfw_missing_images_reported_once(tmp_path):
    _lfw_tree(tmp_path / "lfw", {"Aaron_Peirsol": 3, "Abel_Pacheco": 1})
    (tmp_path / "pairs.txt").write_text(LFW_PAIRS)
    with pytest.raises(ValueError) as info:
        load_lfw_pairs(tmp_path / "pairs.txt", tmp_path / "lfw")
    message = str(info.value)
    assert "3 of the 7 images" in message and "missing" in message and "\n" not in message
    assert "Abel_Pacheco_0003.jpg" in message  # the first missing one, in file order


def test_lfw_malformed_files(tmp_path):
    bad_line = tmp_path / "bad.txt"
    bad_line.write_text("1 1\nA 1\nA 1 B 1\n")
    with pytest.raises(ValueError, match=r"bad.txt:2"):
        load_lfw_pairs(bad_line, tmp_path)
    short = tmp_path / "short.txt"
    short.write_text("10 300\nA 1 2\n")
    with pytest.raises(ValueError, match="announces 6000 pairs but the file has 1"):
        load_lfw_pairs(short, tmp_path)


def test_csv_pairs_with_and_without_header(tmp_path):
    (tmp_path / "img").mkdir()
    for name in ("a", "b", "c"):
        Image.new("L", (60, 80), 100).save(tmp_path / "img" / f"{name}.png")
    (tmp_path / "with_header.csv").write_text(
        "path1,path2,same\nimg/a.png,img/b.png,1\nimg/a.png,img/c.png,false\n"
    )
    (tmp_path / "plain.csv").write_text("a.png, b.png, yes\nc.png,b.png,0\n")
    with_header = load_pairs_csv(tmp_path / "with_header.csv")
    assert with_header.issame.tolist() == [True, False]
    assert with_header.pairs.tolist() == [[0, 1], [0, 2]]
    plain = load_pairs_csv(tmp_path / "plain.csv", root=tmp_path / "img")
    assert plain.issame.tolist() == [True, False] and len(plain.images) == 3
    assert plain.images[0].shape == (3, 112, 112)
    (tmp_path / "missing.csv").write_text("img/a.png,img/zzz.png,1\n")
    with pytest.raises(ValueError, match="1 of the 2 images.*zzz.png"):
        load_pairs_csv(tmp_path / "missing.csv")
    (tmp_path / "bad.csv").write_text("img/a.png,img/b.png,maybe\n")
    with pytest.raises(ValueError, match="row 1"):
        load_pairs_csv(tmp_path / "bad.csv")
    (tmp_path / "bad2.csv").write_text("a,b,label\nimg/a.png,img/b.png,1\nimg/a.png,img/b.png,2\n")
    with pytest.raises(ValueError, match="row 3: 'same' must be"):
        load_pairs_csv(tmp_path / "bad2.csv")


def test_pairs_from_labelled_balanced_distinct_deterministic():
    ds = SyntheticFaces(num_identities=20, images_per_identity=6)
    labels = np.asarray(ds.labels)
    pairs = pairs_from_labelled(ds, num_pairs=200, seed=3)
    again = pairs_from_labelled(ds, num_pairs=200, seed=3)
    other = pairs_from_labelled(ds, num_pairs=200, seed=4)
    assert np.array_equal(pairs.pairs, again.pairs) and np.array_equal(pairs.issame, again.issame)
    assert not np.array_equal(pairs.pairs, other.pairs)
    assert len(pairs) == 200 and pairs.num_same == pairs.num_different == 100
    # Every contiguous tenth is balanced, so k-fold thresholds see both kinds.
    assert all(fold.sum() == 10 for fold in np.array_split(pairs.issame, 10))
    original = np.asarray(pairs.images.indices)[pairs.pairs]  # back to dataset indices
    assert (original[:, 0] != original[:, 1]).all()
    assert np.array_equal(labels[original[:, 0]] == labels[original[:, 1]], pairs.issame)
    assert len({tuple(sorted(p)) for p in original.tolist()}) == 200
    image = pairs.images[0]
    assert isinstance(image, torch.Tensor) and image.shape == (3, 112, 112)


def test_pairs_from_labelled_shrinks_when_too_few_same_pairs():
    ds = SyntheticFaces(num_identities=3, images_per_identity=2)  # 3 same pairs exist
    with pytest.warns(UserWarning, match="only 3 same and 3 different"):
        pairs = pairs_from_labelled(ds, num_pairs=100)
    assert pairs.num_same == pairs.num_different == 3
    with pytest.raises(ValueError, match="labels"):
        pairs_from_labelled(pairs.images)
    with pytest.raises(ValueError, match="cannot give both"):
        pairs_from_labelled(SyntheticFaces(num_identities=1, images_per_identity=4))


def test_pairs_from_labelled_large_set_samples_without_listing():
    class Labels:  # 200k images: the sampling path, no pairs enumerated
        labels = np.repeat(np.arange(20_000), 10)

    pairs = pairs_from_labelled(Labels(), num_pairs=3000, seed=0)
    original = np.asarray(pairs.images.indices)[pairs.pairs]
    assert pairs.num_same == pairs.num_different == 1500
    same_label = Labels.labels[original[:, 0]] == Labels.labels[original[:, 1]]
    assert np.array_equal(same_label, pairs.issame)
    assert len({tuple(sorted(p)) for p in original.tolist()}) == 3000


def test_orl_pairs(orl_dataset):
    pairs = pairs_from_labelled(orl_dataset, num_pairs=3000)
    assert pairs.num_same == pairs.num_different == 1500
    assert isinstance(orl_dataset, ImageFolderDataset)
