"""SyntheticFaces: deterministic, disjoint identities, and not solvable by colour alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from femb.data import SyntheticFaces, is_synthetic_spec, render_face, synthetic_from_spec


def test_api_matches_imagefolder():
    ds = SyntheticFaces(num_identities=3, images_per_identity=4)
    assert len(ds) == 12 and ds.num_classes == 3 and len(ds.classes) == 3
    assert ds.labels == [0] * 4 + [1] * 4 + [2] * 4
    image, label = ds[5]
    assert image.shape == (3, 112, 112) and image.dtype == torch.float32 and label == 1
    assert -1.0 <= image.min() and image.max() <= 1.0
    assert image.std() > 0.1  # a picture, not a flat field
    with pytest.raises(IndexError):
        ds[12]


def test_image_depends_only_on_seed_identity_index():
    a = SyntheticFaces(num_identities=5, images_per_identity=3, seed=7)
    b = SyntheticFaces(num_identities=5, images_per_identity=3, seed=7, cache=False)
    c = SyntheticFaces(num_identities=2, images_per_identity=8, seed=7, identity_offset=3)
    assert torch.equal(a[4][0], b[4][0])  # identity 1, image 1, cached or not
    # identity 4 image 2: a's index 14, c's label 1 (global 3 + 1) index 8 + 2
    assert torch.equal(a[14][0], c[10][0])
    assert np.array_equal(render_face(7, 4, 2), render_face(7, 4, 2))
    assert not np.array_equal(render_face(7, 4, 2), render_face(8, 4, 2))
    assert not np.array_equal(render_face(7, 4, 2), render_face(7, 4, 3))


def test_identity_offset_gives_disjoint_identities():
    train = SyntheticFaces(num_identities=10, images_per_identity=2)
    val = SyntheticFaces(num_identities=5, images_per_identity=2, identity_offset=10)
    train_ids = {train.identity_of(i) for i in range(len(train))}
    val_ids = {val.identity_of(i) for i in range(len(val))}
    assert train_ids == set(range(10)) and val_ids == set(range(10, 15))
    assert not set(train.classes) & set(val.classes)
    assert val.labels[0] == 0  # labels stay 0-based


def test_train_mode_flips_some_images():
    ds = SyntheticFaces(num_identities=1, images_per_identity=1, train=True)
    plain = SyntheticFaces(num_identities=1, images_per_identity=1)[0][0]
    torch.manual_seed(0)
    outcomes = {torch.equal(ds[0][0], plain) for _ in range(16)}
    assert outcomes == {True, False}


def test_spec_parsing():
    assert is_synthetic_spec("synthetic") and is_synthetic_spec("synthetic:30")
    assert not is_synthetic_spec("/data/faces") and not is_synthetic_spec(None)
    default = synthetic_from_spec("synthetic")
    assert default.num_identities == 100 and default.images_per_identity == 20
    ds = synthetic_from_spec("synthetic:30", seed=3, identity_offset=100)
    assert (ds.num_identities, ds.seed, ds.identity_offset) == (30, 3, 100)
    assert SyntheticFaces.parse("synthetic:7:4").images_per_identity == 4
    for bad in ("synthetic:", "synthetic:x", "synth:10", "synthetic:10:"):
        with pytest.raises(ValueError, match="synthetic"):
            synthetic_from_spec(bad)


def _nearest_centroid_accuracy(features: np.ndarray, labels: np.ndarray, is_train: np.ndarray) -> float:
    classes = np.unique(labels)
    centroids = np.stack([features[is_train & (labels == c)].mean(0) for c in classes])
    test = features[~is_train]
    distances = ((test[:, None, :] - centroids[None]) ** 2).sum(-1)
    return float((classes[distances.argmin(1)] == labels[~is_train]).mean())


def test_mean_colour_is_a_poor_cue_but_geometry_is_learnable():
    identities, per_identity = 50, 10
    ds = SyntheticFaces(num_identities=identities, images_per_identity=per_identity, seed=0, cache=False)
    images = np.stack([ds.load_uint8(i)[0].numpy() for i in range(len(ds))]).astype(np.float32)
    labels = np.asarray(ds.labels)
    is_train = np.tile(np.arange(per_identity) < per_identity // 2, identities)

    mean_colour = images.mean(axis=(2, 3))  # per-channel mean: the trivial statistic
    colour_accuracy = _nearest_centroid_accuracy(mean_colour, labels, is_train)

    # A still-simple geometric cue: edges of the contrast-normalised 28×28 grey image.
    grey = F.avg_pool2d(torch.from_numpy(images).mean(1, keepdim=True), 4)[:, 0].numpy()
    edges = np.abs(np.diff(grey, axis=2))[:, :-1, :] + np.abs(np.diff(grey, axis=1))[:, :, :-1]
    edges = edges.reshape(len(edges), -1)
    edges = (edges - edges.mean(1, keepdims=True)) / edges.std(1, keepdims=True)
    edge_accuracy = _nearest_centroid_accuracy(edges, labels, is_train)

    chance = 1 / identities
    print(f"chance {chance:.3f}  mean-colour NC {colour_accuracy:.3f}  edge NC {edge_accuracy:.3f}")
    assert colour_accuracy < 0.1  # near chance (0.02), far below the 0.5 ceiling of the contract
    assert edge_accuracy > 0.2 and edge_accuracy > 4 * colour_accuracy
