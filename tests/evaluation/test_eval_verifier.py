"""VerificationEvaluator end to end: ORL with raw pixels, flip test, similarities, inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from femb.data import PairsDataset, SyntheticFaces, hflip, pairs_from_labelled
from femb.evaluation import VerificationEvaluator, VerificationResult


def raw_pixels(batch: torch.Tensor) -> torch.Tensor:
    """A trivial embedding: the 28×28 downsampled image, flattened."""
    return F.avg_pool2d(batch, 4).flatten(1)


def test_orl_raw_pixels_are_well_above_chance(orl_dataset):
    result = VerificationEvaluator().evaluate(raw_pixels, orl_dataset)
    print(f"\nORL raw-pixel cosine: {result.summary()}")
    assert isinstance(result, VerificationResult)
    assert result.num_pairs == 3000 and result.num_same == result.num_different == 1500
    assert 0.82 < result.accuracy < 0.95  # about 0.88
    assert result.auc > 0.9 and 0.0 < result.eer < 0.2
    euclidean = VerificationEvaluator(similarity="euclidean").evaluate(raw_pixels, orl_dataset)
    # On unit vectors d² = 2 − 2·cos: identical decisions, the threshold as a distance.
    assert euclidean.accuracy == pytest.approx(result.accuracy)
    assert euclidean.auc == pytest.approx(result.auc, abs=1e-4)  # float ties differ slightly
    assert euclidean.threshold == pytest.approx(2 - 2 * result.threshold, abs=1e-5)


def test_synthetic_raw_pixels_leave_room_to_learn():
    val = SyntheticFaces(num_identities=30, images_per_identity=6, identity_offset=1000)
    result = VerificationEvaluator(num_pairs=600).evaluate(raw_pixels, val)
    print(f"\nsynthetic raw-pixel cosine: {result.summary()}")
    assert 0.5 < result.accuracy < 0.9


def test_unknown_similarity_lists_choices():
    with pytest.raises(ValueError, match="cos, euclidean"):
        VerificationEvaluator(similarity="manhattan")


class _TupleImages(Dataset):
    """Images as (tensor, label) tuples, as some datasets return them."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.images[index], index


def _pairs_of(images: torch.Tensor, pairs, issame) -> PairsDataset:
    return PairsDataset(_TupleImages(images), np.asarray(pairs), np.asarray(issame))


def test_flip_sum_embeds_unique_images_once_in_batches():
    images = torch.rand(10, 3, 112, 112) * 2 - 1
    pairs = _pairs_of(images, [[0, 1], [2, 3], [0, 4], [5, 6], [7, 8], [9, 0]] * 2, [True, False] * 6)
    seen = []

    def embed(batch: torch.Tensor) -> np.ndarray:  # not flip-invariant, returns numpy
        seen.append(batch.clone())
        return batch[:, :, :, :56].mean(dim=(2, 3)).numpy()

    evaluator = VerificationEvaluator(batch_size=4, n_folds=2)
    result = evaluator.evaluate(embed, pairs)
    assert result.num_pairs == 12
    assert [len(b) for b in seen] == [4, 4, 4, 4, 2, 2]  # 10 images, each plain then flipped
    assert all(b.dtype == torch.float32 and b.shape[1:] == (3, 112, 112) for b in seen)
    assert torch.equal(seen[1], hflip(seen[0]))
    embeddings = evaluator.embed(embed, pairs.images)
    expected = images[:, :, :, :56].mean(dim=(2, 3)) + images.flip(-1)[:, :, :, :56].mean(dim=(2, 3))
    expected = F.normalize(expected, dim=1).numpy()
    np.testing.assert_allclose(embeddings, expected, rtol=1e-5, atol=1e-6)
    no_flip = VerificationEvaluator(flip=False).embed(embed, pairs.images)
    plain = F.normalize(torch.from_numpy(embed(images)), dim=1).numpy()
    np.testing.assert_allclose(no_flip, plain, rtol=1e-5, atol=1e-6)


def test_evaluate_embeddings_with_perfect_identity_codes():
    ds = SyntheticFaces(num_identities=8, images_per_identity=4)
    pairs = pairs_from_labelled(ds, num_pairs=40)
    labels = np.asarray(ds.labels)[pairs.images.indices]
    codes = np.eye(8)[labels] * 5.0 + 0.01  # unnormalised, one direction per identity
    for similarity in ("cos", "euclidean"):
        result = VerificationEvaluator(similarity=similarity, n_folds=4).evaluate_embeddings(
            torch.from_numpy(codes), pairs.pairs, pairs.issame
        )
        assert result.accuracy == 1.0 and result.auc == 1.0 and result.eer == 0.0


def test_labelled_dataset_pairs_follow_num_pairs_and_seed():
    ds = SyntheticFaces(num_identities=10, images_per_identity=4)
    evaluator = VerificationEvaluator(num_pairs=60, seed=5)
    pairs = evaluator.pairs_for(ds)
    assert len(pairs) == 60
    assert np.array_equal(pairs.pairs, pairs_from_labelled(ds, num_pairs=60, seed=5).pairs)
    with pytest.raises(TypeError, match="labels"):
        evaluator.pairs_for(_TupleImages(torch.zeros(2, 3, 112, 112)))


def test_embed_fn_with_wrong_shape_is_reported():
    pairs = _pairs_of(torch.zeros(4, 3, 112, 112), [[0, 1], [2, 3]], [True, False])
    with pytest.raises(ValueError, match=r"\[batch, dim\]"):
        VerificationEvaluator(n_folds=2).evaluate(lambda x: x.mean(dim=(1, 2, 3)), pairs)
