"""The pairs sets of `femb verify pairs`: every --bin, --pairs, --csv and --folder, each a named set.

A set's name is its file's stem (the folder's name for --folder), or NAME in ``NAME=PATH``.
All sets are read before the model loads, so that a wrong path does not wait for it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

from femb.data.set_names import split_name
from femb.errors import one_line
from femb_cli.errors import fail

SOURCE_OPTIONS = {"bin": "--bin", "pairs": "--pairs", "csv": "--csv", "folder": "--folder"}


@dataclass
class PairsSet:
    """One pairs set: its name, the option and path it came from, the pairs, and what to say."""

    name: str
    kind: str  # a key of SOURCE_OPTIONS
    path: Path
    pairs: object = None  # femb.data.PairsDataset once loaded
    description: str = ""
    notes: list[str] = field(default_factory=list)


def requested_sets(sources: dict[str, list[Path] | None], root: Path | None) -> list[PairsSet]:
    """The sets named on the command line, in option order, checked before any is read."""
    sets = []
    for kind, values in sources.items():
        for value in values or ():
            name, path = split_name(value)
            sets.append(PairsSet(name=name, kind=kind, path=path))
    if not sets:
        raise fail("give at least one pairs source: --bin, --pairs with --root, --csv or --folder")
    kinds = {s.kind for s in sets}
    if "pairs" in kinds and root is None:
        raise fail("--pairs needs --root, the folder holding name/name_0001.jpg")
    if root is not None and not kinds & {"pairs", "csv"}:
        raise fail("--root applies to --pairs and --csv only")
    seen: dict[str, PairsSet] = {}
    for pairs_set in sets:
        if pairs_set.name in seen:
            raise fail(
                f"two pairs sets are named {pairs_set.name!r} ({seen[pairs_set.name].path} and "
                f"{pairs_set.path}); name them apart with NAME=PATH"
            )
        seen[pairs_set.name] = pairs_set
    return sets


def load_sets(
    sources: dict[str, list[Path] | None], root: Path | None, num_pairs: int, seed: int
) -> list[PairsSet]:
    """Every requested set, read; one `error:` line naming the file for the first that cannot be."""
    sets = requested_sets(sources, root)
    if root is not None:
        _require_folder(root, "--root")
    for pairs_set in sets:
        try:
            _load(pairs_set, root, num_pairs, seed)
        except (ValueError, OSError) as error:  # UnsafePickleError included: its message says why
            raise fail(one_line(error)) from None
    return sets


def _load(pairs_set: PairsSet, root: Path | None, num_pairs: int, seed: int) -> None:
    from femb.data import (
        ImageFolderDataset,
        load_lfw_pairs,
        load_pairs_csv,
        load_verification_bin,
        pairs_from_labelled,
    )

    path = pairs_set.path
    if pairs_set.kind == "bin":
        pairs_set.pairs, pairs_set.description = load_verification_bin(path), str(path)
    elif pairs_set.kind == "pairs":
        pairs_set.pairs, pairs_set.description = load_lfw_pairs(path, root), f"{path} (root {root})"
    elif pairs_set.kind == "csv":
        pairs_set.pairs, pairs_set.description = load_pairs_csv(path, root), str(path)
    else:
        _require_folder(path, "--folder")
        images = ImageFolderDataset(path)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pairs_set.pairs = pairs_from_labelled(images, num_pairs=num_pairs, seed=seed)
        pairs_set.notes.extend(str(w.message) for w in caught)
        pairs_set.description = (
            f"{path} ({len(images.classes)} identities, {len(images)} images, seed {seed})"
        )


def _require_folder(path: Path, option: str) -> None:
    if not path.exists():
        raise fail(f"{option} {path}: no such directory")
    if not path.is_dir():
        raise fail(f"{option} {path}: not a directory")
