"""FaceAugment: aligned-face training augmentation, replayable from the global torch seed."""

from __future__ import annotations

import pytest
import torch

from femb.data import SyntheticFaces
from femb.data.transforms import FaceAugment, hflip, normalize


def face() -> torch.Tensor:
    image, _ = SyntheticFaces(1, 1, seed=0).load_uint8(0)
    return image


def test_off_is_plain_normalisation():
    image = face()
    torch.testing.assert_close(FaceAugment.off()(image), normalize(image), rtol=0, atol=1e-6)


def test_flip_alone_mirrors_or_keeps():
    image = face()
    only_flip = FaceAugment(**{**FaceAugment.off().options(), "flip": 1.0})
    torch.testing.assert_close(only_flip(image), hflip(normalize(image)), rtol=0, atol=1e-6)


def test_output_is_a_normalised_face_and_changes_the_image():
    image = face()
    torch.manual_seed(0)
    out = FaceAugment(erase=1.0, blur=1.0)(image)
    assert out.shape == (3, 112, 112) and out.dtype == torch.float32
    assert out.min() >= -1.0 and out.max() <= 1.0
    assert (out - normalize(image)).abs().mean() > 0.01


def test_same_global_seed_same_augmentation_whatever_came_before():
    image = face()
    augment = FaceAugment(erase=0.5, blur=0.5)
    torch.manual_seed(3)
    first = [augment(image) for _ in range(4)]
    torch.manual_seed(3)
    again = [augment(image) for _ in range(4)]
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a, b)
    # A fixed number of draws per image, whatever happens to it: the generator ends in the same
    # state whether every image was erased or none, so later draws do not depend on outcomes.
    ends = []
    for erase in (0.0, 1.0):
        torch.manual_seed(3)
        for _ in range(3):
            FaceAugment(erase=erase, blur=erase)(image)
        ends.append(torch.rand(()))
    assert ends[0] == ends[1]


def test_dataset_hook_uses_the_augmentation_in_training_only():
    data = SyntheticFaces(2, 2, seed=0, train=True)
    data.augment = FaceAugment.off()
    image, _ = data[0]
    torch.testing.assert_close(image, normalize(data.load_uint8(0)[0]), rtol=0, atol=1e-6)
    evaluation = SyntheticFaces(2, 2, seed=0)
    evaluation.augment = FaceAugment(flip=1.0)
    torch.testing.assert_close(evaluation[0][0], normalize(evaluation.load_uint8(0)[0]))


@pytest.mark.parametrize("bad", [{"shift": -1}, {"flip": 1.5}, {"zoom": 0.9}, {"blur": True}])
def test_out_of_range_options_are_refused(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        FaceAugment(**bad)


def test_grayscale_gives_equal_channels_and_keeps_the_draw_count():
    image = face()
    grey = FaceAugment(**{**FaceAugment.off().options(), "grayscale": 1.0})
    out = grey(image)
    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])
    luma = (normalize(image) * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0)
    torch.testing.assert_close(out[0], luma, rtol=0, atol=1e-5)
    assert not torch.equal(image[0], image[1])  # the synthetic face really is in colour
    ends = []
    for grayscale in (0.0, 1.0):
        torch.manual_seed(5)
        FaceAugment(grayscale=grayscale)(image)
        ends.append(torch.rand(()))
    assert ends[0] == ends[1]
