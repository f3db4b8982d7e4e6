"""Verification pairs: a set of unique images and ``(i, j, same?)`` pairs of indices into it.

``PairsDataset.images[k]`` returns ONE float32 ``3×112×112`` tensor (no label): the evaluator
embeds each unique image once, then scores pairs by index. Builders:

- :func:`load_lfw_pairs`: LFW ``pairs.txt`` + an image root (``name/name_0001.jpg``);
- :func:`load_pairs_csv`: ``path1,path2,same`` rows;
- :func:`pairs_from_labelled`: a seeded, balanced protocol over any dataset with ``labels``;
- :func:`femb.data.verification_bin.load_verification_bin`: InsightFace ``.bin`` files.

Pair order matters for k-fold accuracy (folds are contiguous, as in LFW): the builders emit
orders in which every contiguous fold is balanced.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from femb.data.transforms import load_image, to_face_tensor


class PathImages(Dataset):
    """Unique image files, decoded on access into face tensors."""

    def __init__(self, paths: Sequence[str | os.PathLike]):
        self.paths = [Path(p) for p in paths]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return to_face_tensor(load_image(self.paths[index]))


class SubsetImages(Dataset):
    """Selected samples of a labelled dataset, images only (its ``(image, label)`` → ``image``)."""

    def __init__(self, dataset: Dataset, indices: Sequence[int]):
        self.dataset = dataset
        self.indices = [int(i) for i in indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> torch.Tensor:
        item = self.dataset[self.indices[index]]
        return item[0] if isinstance(item, (tuple, list)) else item


class PairsDataset(Dataset):
    """``images`` (a Dataset of unique image tensors), ``pairs`` int64 ``(N, 2)``, ``issame`` bool ``(N,)``.

    Indexing the PairsDataset itself gives ``(image_a, image_b, same)`` for one pair, which is
    handy for looking at pairs; evaluation goes through ``images`` so that no image is embedded
    twice.
    """

    def __init__(self, images: Dataset, pairs: np.ndarray, issame: np.ndarray, name: str = "pairs"):
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        issame = np.asarray(issame, dtype=bool).reshape(-1)
        if len(pairs) != len(issame):
            raise ValueError(f"{name}: {len(pairs)} pairs but {len(issame)} same/different flags")
        if len(pairs) and (pairs.min() < 0 or pairs.max() >= len(images)):
            raise ValueError(f"{name}: pair indices must lie in [0, {len(images)})")
        self.images = images
        self.pairs = pairs
        self.issame = issame
        self.name = name

    @property
    def num_same(self) -> int:
        return int(self.issame.sum())

    @property
    def num_different(self) -> int:
        return int(len(self.issame) - self.issame.sum())

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
        a, b = self.pairs[index]
        return self.images[int(a)], self.images[int(b)], bool(self.issame[index])

    def __repr__(self) -> str:
        return (
            f"PairsDataset({self.name!r}, images={len(self.images)}, pairs={len(self)}, "
            f"same={self.num_same}, different={self.num_different})"
        )


def pairs_from_paths(
    path_pairs: Sequence[tuple[str | os.PathLike, str | os.PathLike]],
    issame: Sequence[bool] | np.ndarray,
    name: str,
    source: str | os.PathLike,
) -> PairsDataset:
    """Deduplicate the files of ``path_pairs`` and check they exist (one error for all missing)."""
    index_of: dict[Path, int] = {}
    pairs = np.empty((len(path_pairs), 2), dtype=np.int64)
    for row, pair in enumerate(path_pairs):
        for col, path in enumerate(pair):
            key = Path(os.path.normpath(path))
            pairs[row, col] = index_of.setdefault(key, len(index_of))
    unique = list(index_of)
    missing = [p for p in unique if not p.is_file()]
    if missing:
        raise ValueError(
            f"{len(missing)} of the {len(unique)} images listed in {source} are missing; first: {missing[0]}"
        )
    return PairsDataset(PathImages(unique), pairs, np.asarray(issame, dtype=bool), name=name)


def load_lfw_pairs(
    pairs_txt: str | os.PathLike, image_root: str | os.PathLike, ext: str = "jpg"
) -> PairsDataset:
    """LFW's ``pairs.txt``: a header ``folds n`` (or ``n``: one fold), then ``folds × 2n`` lines,
    ``name i j`` (same person) or ``name1 i name2 j``; images at ``root/name/name_0001.jpg``.

    The file's order is kept, so femb's contiguous 10-fold split is exactly LFW's 10 folds.
    """
    pairs_txt, root, ext = Path(pairs_txt), Path(image_root), ext.lstrip(".")
    if not pairs_txt.is_file():
        raise ValueError(f"pairs file {pairs_txt} does not exist")
    # Undecodable bytes become U+FFFD, so a binary file fails below with a message naming the line.
    text = pairs_txt.read_bytes().decode("utf-8", errors="replace")
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"pairs file {pairs_txt} is empty")
    header, body = lines[0], lines[1:]
    try:
        folds, per_fold = (1, int(header[0])) if len(header) == 1 else (int(header[0]), int(header[1]))
    except (ValueError, IndexError):
        raise ValueError(
            f"{pairs_txt}:1: expected a header 'folds n' or 'n', got {' '.join(header)!r}"
        ) from None
    if len(header) > 2:
        raise ValueError(f"{pairs_txt}:1: expected a header 'folds n' or 'n', got {' '.join(header)!r}")

    def image(name: str, number: str, line_no: int) -> Path:
        try:
            return root / name / f"{name}_{int(number):04d}.{ext}"
        except ValueError:
            raise ValueError(f"{pairs_txt}:{line_no}: image number {number!r} is not an integer") from None

    path_pairs, issame = [], []
    for line_no, tokens in enumerate(body, start=2):
        if len(tokens) == 3:
            path_pairs.append((image(tokens[0], tokens[1], line_no), image(tokens[0], tokens[2], line_no)))
            issame.append(True)
        elif len(tokens) == 4:
            path_pairs.append((image(tokens[0], tokens[1], line_no), image(tokens[2], tokens[3], line_no)))
            issame.append(False)
        else:
            raise ValueError(
                f"{pairs_txt}:{line_no}: expected 'name i j' or 'name1 i name2 j', got {' '.join(tokens)!r}"
            )
    expected = 2 * folds * per_fold
    if len(path_pairs) != expected:
        raise ValueError(
            f"{pairs_txt}: the header '{' '.join(header)}' announces {expected} pairs but the file has "
            f"{len(path_pairs)}"
        )
    return pairs_from_paths(path_pairs, issame, name=pairs_txt.stem, source=pairs_txt)


_TRUE = {"1", "true", "yes", "t", "y"}
_FALSE = {"0", "false", "no", "f", "n"}


def _parse_same(value: object, csv_path: Path, row: int) -> bool:
    text = str(value).strip().lower()
    if text.endswith(".0"):  # pandas may read a numeric column as float
        text = text[:-2]
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{csv_path}: row {row}: 'same' must be 1/0/true/false/yes/no, got {value!r}")


def load_pairs_csv(csv_path: str | os.PathLike, root: str | os.PathLike | None = None) -> PairsDataset:
    """Rows ``path1,path2,same`` (a header row is optional); relative paths are taken relative to
    ``root`` or, without it, to the CSV's folder. Rows keep the file's order."""
    import pandas as pd  # here, not at the top: importing femb.data should not pay for pandas

    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise ValueError(f"pairs file {csv_path} does not exist")
    base = Path(root) if root is not None else csv_path.parent
    try:
        frame = pd.read_csv(csv_path, header=None, dtype=str, skipinitialspace=True, comment="#")
    except (ValueError, pd.errors.ParserError) as error:  # EmptyDataError, UnicodeDecodeError, ...
        message = " ".join(str(error).split()) or type(error).__name__
        raise ValueError(f"cannot read pairs file {csv_path}: {message}") from None
    if frame.shape[1] != 3:
        raise ValueError(f"{csv_path}: expected 3 columns (path1,path2,same), found {frame.shape[1]}")
    first_row = 1
    if len(frame):
        head_same = str(frame.iloc[0, 2]).strip().lower()
        head_path = base / str(frame.iloc[0, 0]).strip()
        if head_same not in _TRUE | _FALSE and not head_path.is_file():
            frame, first_row = frame.iloc[1:], 2  # a header row such as path1,path2,same
    if frame.empty:
        raise ValueError(f"pairs file {csv_path} holds no pairs")
    path_pairs, issame = [], []
    for row, (a, b, same) in enumerate(frame.itertuples(index=False, name=None), start=first_row):
        path_pairs.append((base / str(a).strip(), base / str(b).strip()))
        issame.append(_parse_same(same, csv_path, row))
    return pairs_from_paths(path_pairs, issame, name=csv_path.stem, source=csv_path)


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


def lfw_order(pairs: PairsDataset, folds: int = 10) -> PairsDataset:
    """The same pairs in LFW's order: ``folds`` contiguous folds of ``n`` same-identity pairs then
    ``n`` different ones (``n`` = the smaller half // folds; the rest is dropped)."""
    same, different = np.flatnonzero(pairs.issame), np.flatnonzero(~pairs.issame)
    per_fold = min(len(same), len(different)) // folds
    if per_fold < 1:
        raise ValueError(
            f"{pairs.name}: {len(same)} same and {len(different)} different pairs cannot fill {folds} folds"
        )
    order = np.concatenate(
        [
            np.concatenate(
                [same[f * per_fold : (f + 1) * per_fold], different[f * per_fold : (f + 1) * per_fold]]
            )
            for f in range(folds)
        ]
    )
    return PairsDataset(pairs.images, pairs.pairs[order], pairs.issame[order], name=pairs.name)


def write_lfw_pairs(
    path: str | os.PathLike, pairs: PairsDataset, image_names: Sequence[tuple[str, int]]
) -> Path:
    """Write pairs in :func:`lfw_order` as LFW's ``pairs.txt`` (header ``folds n``, then ``name i j``
    and ``name1 i name2 j`` lines); ``image_names[k]`` is ``(identity, number)`` of ``pairs.images[k]``.
    Written atomically."""
    same = int(pairs.issame.sum())
    # Infer the fold size from the layout lfw_order produces: the first run of same pairs.
    per_fold = int(np.argmin(pairs.issame)) if not pairs.issame.all() else same
    if per_fold == 0 or same % per_fold or len(pairs) != 2 * same:
        raise ValueError(f"{pairs.name}: pairs are not in LFW order (use lfw_order first)")
    lines = [f"{same // per_fold}\t{per_fold}"]
    for (a, b), issame in zip(pairs.pairs.tolist(), pairs.issame.tolist(), strict=True):
        (name_a, number_a), (name_b, number_b) = image_names[a], image_names[b]
        lines.append(
            f"{name_a}\t{number_a}\t{number_b}" if issame else f"{name_a}\t{number_a}\t{name_b}\t{number_b}"
        )
    from femb.fileio import atomic_write_bytes

    return atomic_write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8"), "pairs file")
