"""Verification pairs: a set of unique images and ``(i, j, same?)`` pairs of indices into it.

``PairsDataset.images[k]`` returns ONE float32 ``3×112×112`` tensor (no label): the evaluator
embeds each unique image once, then scores pairs by index. Builders:

- :func:`load_lfw_pairs`: LFW ``pairs.txt`` + an image root (``name/name_0001.jpg``);
- :func:`load_pairs_csv`: ``path1,path2,same`` rows;
- :func:`femb.data.labelled_pairs.pairs_from_labelled`: a seeded, balanced protocol over any
  dataset with ``labels``;
- :func:`femb.data.verification_bin.load_verification_bin`: InsightFace ``.bin`` files.

Pair order matters for k-fold accuracy (folds are contiguous, as in LFW): the builders emit
orders in which every contiguous fold is balanced.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from femb.data.imagefolder import IMAGE_EXTENSIONS
from femb.data.transforms import image_files, load_image, to_face_tensor


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

    Image ``i`` of ``name`` is ``root/name``'s image number ``i`` as :func:`numbered_images` counts
    them: LFW's own names, whatever their extension, or for other file names the i-th image in
    sorted order (the numbering ``femb data pairs`` writes, so what femb writes, femb reads back).
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

    listed: dict[str, dict[int, Path]] = {}  # per identity: its images by number

    def image(name: str, number: str, line_no: int) -> Path:
        try:
            index = int(number)
        except ValueError:
            raise ValueError(f"{pairs_txt}:{line_no}: image number {number!r} is not an integer") from None
        if name not in listed:
            listed[name] = numbered_images(root / name, name)
        # Not there: LFW's name, which the missing-images error then reports.
        return listed[name].get(index, root / name / f"{name}_{index:04d}.{ext}")

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


def numbered_images(folder: Path, name: str) -> dict[int, Path]:
    """Image number → file of one identity's folder, as a pairs.txt numbers them: by the number in
    LFW's ``name_0001.jpg`` names when every image there carries one (each number once), else
    1, 2, ... in the order an image folder lists them (sorted paths). Empty for no such folder."""
    files = image_files(folder, IMAGE_EXTENSIONS) if folder.is_dir() else []
    pattern = re.compile(re.escape(name) + r"_(\d{4,})")
    found = [pattern.fullmatch(f.stem) if f.parent == folder else None for f in files]
    numbers = [int(match.group(1)) for match in found if match]
    if len(numbers) == len(files) and len(set(numbers)) == len(files):
        return dict(zip(numbers, files, strict=True))
    return dict(enumerate(files, start=1))


def lfw_image_names(root: str | os.PathLike, paths: Sequence[str | os.PathLike]) -> list[tuple[str, int]]:
    """``(identity, number)`` of each image under ``root/identity/``, numbered as
    :func:`numbered_images` numbers them, so that :func:`load_lfw_pairs` finds the same files."""
    root, numbers = Path(root), {}
    names = []
    for path in map(Path, paths):
        identity = path.relative_to(root).parts[0]
        if identity not in numbers:
            numbers[identity] = {file: n for n, file in numbered_images(root / identity, identity).items()}
        names.append((identity, numbers[identity][path]))
    return names


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
    spaced = next((name for name, _ in image_names if not name or len(name.split()) != 1), None)
    if spaced is not None:
        raise ValueError(
            f"identity name {spaced!r} is empty or holds whitespace, which a pairs.txt cannot carry"
        )
    lines = [f"{same // per_fold}\t{per_fold}"]
    for (a, b), issame in zip(pairs.pairs.tolist(), pairs.issame.tolist(), strict=True):
        (name_a, number_a), (name_b, number_b) = image_names[a], image_names[b]
        lines.append(
            f"{name_a}\t{number_a}\t{number_b}" if issame else f"{name_a}\t{number_a}\t{name_b}\t{number_b}"
        )
    from femb.fileio import atomic_write_bytes

    return atomic_write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8"), "pairs file")
