"""split_by_identity: the first people to train on, the others held out, relabelled from 0."""

import pytest
import torch

from femb.data import SyntheticFaces, split_by_identity
from femb.data.transforms import FaceAugment


def test_split_by_identity_keeps_people_apart_and_relabels():
    source = SyntheticFaces(num_identities=5, images_per_identity=2, seed=0)
    train, held_out = split_by_identity(source, 3)
    assert (len(train), len(held_out)) == (6, 4)
    assert (train.num_classes, held_out.num_classes) == (3, 2)
    assert train.labels == [0, 0, 1, 1, 2, 2] and held_out.labels == [0, 0, 1, 1]
    assert held_out.classes == source.classes[3:]
    assert train.train and not held_out.train
    image, label = held_out[2]  # source index 8: identity 4, relabelled 1
    assert label == 1 and torch.equal(image, source[8][0])
    train.augment = FaceAugment.off()  # the view's own augmentation: normalised, unflipped
    assert torch.allclose(train[5][0], source[5][0], atol=1e-6)
    with pytest.raises(ValueError, match="first_n=5"):
        split_by_identity(source, 5)
