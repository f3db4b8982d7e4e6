"""A seeded, balanced verification protocol over any labelled dataset (an image folder, a
RecordIO set, synthetic faces): same-identity and different-identity pairs, alternating so that
every contiguous fold of the k-fold protocol is balanced."""

from __future__ import annotations

import warnings

import numpy as np
from torch.utils.data import Dataset

from femb.data.pairs import PairsDataset, SubsetImages


def _same_pairs(labels: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    order = np.argsort(labels, kind="stable")
    _, starts, sizes = np.unique(labels[order], return_index=True, return_counts=True)
    per_class = sizes * (sizes - 1) // 2
    total = int(per_class.sum())
    count = min(count, total)
    if total <= 4 * count or total <= 2_000_000:
        # Few enough to list them all and choose without replacement.
        chunks = []
        for start, size in zip(starts, sizes, strict=True):
            if size > 1:
                i, j = np.triu_indices(size, k=1)
                chunks.append(np.stack([order[start + i], order[start + j]], axis=1))
        everything = np.concatenate(chunks)
        return everything[np.sort(rng.choice(total, size=count, replace=False))]
    # Large sets: sample classes by their number of pairs, then two distinct members; drop repeats.
    weights = per_class / total
    found: dict[tuple[int, int], None] = {}
    while len(found) < count:
        need = count - len(found)
        classes = rng.choice(len(sizes), size=2 * need, p=weights)
        a = rng.integers(0, sizes[classes])
        b = rng.integers(0, sizes[classes] - 1)
        b = b + (b >= a)
        i, j = order[starts[classes] + a], order[starts[classes] + b]
        for pair in zip(np.minimum(i, j).tolist(), np.maximum(i, j).tolist(), strict=True):
            found.setdefault(pair, None)
            if len(found) == count:
                break
    return np.array(list(found), dtype=np.int64)


def _different_pairs(labels: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    n = len(labels)
    sizes = np.bincount(np.unique(labels, return_inverse=True)[1])
    total = (n * (n - 1) - int((sizes * (sizes - 1)).sum())) // 2
    count = min(count, total)
    if total <= 4 * count:
        i, j = np.triu_indices(n, k=1)
        keep = labels[i] != labels[j]
        everything = np.stack([i[keep], j[keep]], axis=1)
        return everything[np.sort(rng.choice(total, size=count, replace=False))]
    found: dict[tuple[int, int], None] = {}
    while len(found) < count:
        need = count - len(found)
        a = rng.integers(0, n, size=2 * need + 16)
        b = rng.integers(0, n, size=2 * need + 16)
        keep = labels[a] != labels[b]
        for pair in zip(np.minimum(a, b)[keep].tolist(), np.maximum(a, b)[keep].tolist(), strict=True):
            found.setdefault(pair, None)
            if len(found) == count:
                break
    return np.array(list(found), dtype=np.int64)


def pairs_from_labelled(dataset: Dataset, num_pairs: int = 3000, seed: int = 0) -> PairsDataset:
    """A balanced verification protocol over any dataset with ``labels``: ``num_pairs // 2``
    same-identity pairs and as many different-identity pairs, distinct and chosen by ``seed``
    alone; pairs alternate same/different so every contiguous fold is balanced.

    When the dataset has fewer distinct same (or different) pairs than asked, both halves shrink
    to the smaller number (with a warning). Images come from ``dataset[i][0]``; a dataset with
    ``train=True`` flips at random, which the flip-summed protocol does not see.
    """
    labels = getattr(dataset, "labels", None)
    if labels is None:
        raise ValueError(f"{type(dataset).__name__} has no 'labels'; cannot build verification pairs")
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if int(num_pairs) < 2:
        raise ValueError(f"num_pairs must be at least 2, got {num_pairs}")
    # Unreadable images leave before any pair is drawn: a stand-in image (of whatever identity)
    # under the bad file's label would turn a "same" pair into two people.
    readable = _readable_indices(dataset, len(labels))
    labels = labels[readable]
    rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0x9A125]))
    half = int(num_pairs) // 2
    same = readable[_same_pairs(labels, half, rng)] if len(labels) else np.empty((0, 2), np.int64)
    different = readable[_different_pairs(labels, half, rng)] if len(labels) else np.empty((0, 2), np.int64)
    if len(same) == 0 or len(different) == 0:
        raise ValueError(
            f"{type(dataset).__name__} with {len(labels)} images and {len(np.unique(labels))} identities "
            "cannot give both same-identity and different-identity pairs"
        )
    count = min(len(same), len(different))
    if count < half:
        warnings.warn(
            f"only {count} same and {count} different pairs are available (asked for {half} of each)",
            stacklevel=2,
        )
    same = same[rng.permutation(len(same))[:count]]
    different = different[rng.permutation(len(different))[:count]]
    pairs = np.empty((2 * count, 2), dtype=np.int64)
    pairs[0::2], pairs[1::2] = same, different
    issame = np.zeros(2 * count, dtype=bool)
    issame[0::2] = True
    used, compact = np.unique(pairs, return_inverse=True)
    return PairsDataset(
        SubsetImages(dataset, used.tolist()),
        compact.reshape(-1, 2),
        issame,
        name=f"{type(dataset).__name__}-pairs",
    )


def _readable_indices(dataset: Dataset, count: int) -> np.ndarray:
    """Indices ``0..count-1`` less those ``dataset.find_unreadable()`` names (with a warning that
    counts them); all of them for a dataset that cannot tell (synthetic faces always decode)."""
    find_unreadable = getattr(dataset, "find_unreadable", None)
    bad = sorted(set(find_unreadable())) if callable(find_unreadable) else []
    if bad:
        first = getattr(dataset, "first_bad_reason", None) or getattr(dataset, "first_bad_path", None)
        where = getattr(dataset, "root", None)
        warnings.warn(
            f"skipped {len(bad)} unreadable image{'s' if len(bad) != 1 else ''} of {count}"
            f"{f' in {where}' if where is not None else ''} before drawing pairs"
            f"{f' (first: {first})' if first else ''}",
            stacklevel=3,
        )
    return np.setdiff1d(np.arange(count, dtype=np.int64), np.asarray(bad, dtype=np.int64))
