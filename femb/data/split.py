"""Split an identity dataset by identity: the first people to train on, the others unseen."""

from __future__ import annotations

import torch

from femb.data.faces import LabelledFaces


class IdentitySubset(LabelledFaces):
    """The images of some identities of a :class:`LabelledFaces` set, relabelled ``0..k-1`` in order.

    Reads the source's ``load_uint8`` (so a ``cache=True`` source is decoded only once); ``train``
    and ``augment`` are this view's own, as on any identity dataset.
    """

    def __init__(self, source: LabelledFaces, identities: range, train: bool = False):
        self.source, self.train = source, bool(train)
        self.indices = [i for i, label in enumerate(source.labels) if label in identities]
        self.labels = [source.labels[i] - identities.start for i in self.indices]
        self.classes = [source.classes[label] for label in identities]

    def __len__(self) -> int:
        return len(self.indices)

    def load_uint8(self, index: int) -> tuple[torch.Tensor, int]:
        image, _ = self.source.load_uint8(self.indices[index])
        return image, self.labels[index]


def split_by_identity(dataset: LabelledFaces, first_n: int) -> tuple[IdentitySubset, IdentitySubset]:
    """``(train, held_out)``: identities ``0..first_n-1`` as a training view (``train=True``: a random
    flip, or its ``augment``) and the others as an evaluation view, relabelled from 0. No image
    is shared; set ``train.augment`` (e.g. ``FaceAugment()``) for more than the flip."""
    classes = dataset.num_classes
    if not 0 < first_n < classes:
        raise ValueError(f"first_n={first_n}: expected 1..{classes - 1} of {classes} identities")
    return (
        IdentitySubset(dataset, range(first_n), train=True),
        IdentitySubset(dataset, range(first_n, classes)),
    )
