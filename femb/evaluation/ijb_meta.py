"""Readers of the IJB-B / IJB-C meta files in InsightFace's layout (see :mod:`femb.evaluation.ijb`).

``DIR/meta/<prefix>_face_tid_mid.txt``: ``image template media`` per face;
``DIR/meta/<prefix>_name_5pts_score.txt``: ``image x1 y1 … x5 y5 score`` per face;
``DIR/meta/<prefix>_template_pair_label.txt``: ``template1 template2 label`` per pair;
images under ``DIR/loose_crop/``. ``<prefix>`` is the set name in lower case (``ijbc``).

Each reader parses with pandas' C parser (IJB-C's pair list has 15.6 million lines) and, when
that fails, scans the file line by line for the first bad line, so that every error names the
file and the line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from femb.data.align import parse_landmark_line
from femb.data.errors import DataFormatError

KNOWN_SETS = ("IJBB", "IJBC")


@dataclass(frozen=True)
class IjbMeta:
    """One IJB set's faces (aligned by index) and its template pairs."""

    root: Path
    prefix: str
    names: np.ndarray  # image name per face (object array of str)
    templates: np.ndarray  # int64 template id per face
    medias: np.ndarray  # int64 media id per face
    landmarks: np.ndarray  # float64 N×5×2
    scores: np.ndarray  # float32 detector score per face
    pairs: np.ndarray  # int64 P×2 template ids, in the pair list's order
    labels: np.ndarray  # int8 per pair: 1 genuine, 0 impostor

    @property
    def meta_dir(self) -> Path:
        return self.root / "meta"

    def meta_file(self, kind: str) -> Path:
        """``kind``: ``face_tid_mid``, ``name_5pts_score``, ``template_pair_label``, ``1N_gallery_G1``..."""
        suffix = ".csv" if kind.startswith("1N_") else ".txt"
        return self.meta_dir / f"{self.prefix}_{kind}{suffix}"

    def image_path(self, index: int) -> Path:
        return self.root / "loose_crop" / str(self.names[index])


def meta_prefix(set_name: str, prefix: str | None = None) -> str:
    """The meta files' prefix: ``prefix`` as given, else the known set's name in lower case."""
    if prefix:
        return prefix
    if set_name.upper() not in KNOWN_SETS:
        raise ValueError(
            f"set {set_name!r} is neither IJBB nor IJBC; give meta_prefix, the name its meta files start with"
        )
    return set_name.lower()


def load_ijb_meta(root: str | os.PathLike, set_name: str = "IJBC", prefix: str | None = None) -> IjbMeta:
    """Read and cross-check a set's three meta files (images are not opened)."""
    root = Path(root)
    prefix = meta_prefix(set_name, prefix)
    meta = root / "meta"
    faces_file = meta / f"{prefix}_face_tid_mid.txt"
    points_file = meta / f"{prefix}_name_5pts_score.txt"
    pairs_file = meta / f"{prefix}_template_pair_label.txt"
    for path in (faces_file, points_file, pairs_file):
        if not path.is_file():
            raise DataFormatError(f"{path}: no such meta file (expected {prefix}_* files in {meta})")
    names, templates, medias = read_face_tid_mid(faces_file)
    landmarks, scores = _landmarks_for(names, faces_file, *read_name_5pts_score(points_file), points_file)
    pairs, labels = read_template_pair_label(pairs_file)
    _require_templates_with_faces(pairs, templates, pairs_file, faces_file)
    return IjbMeta(root, prefix, names, templates, medias, landmarks, scores, pairs, labels)


def read_face_tid_mid(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(names, templates, medias)`` of a ``*_face_tid_mid.txt`` file."""
    table = _read_table(path, {"name": str, "template": np.float64, "media": np.float64}, _check_face_line)
    templates, medias = _ints(table, ("template", "media"), path, _check_face_line)
    return table["name"].to_numpy(dtype=object), templates, medias


def read_name_5pts_score(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(names, landmarks N×5×2, scores)`` of a ``*_name_5pts_score.txt`` file."""
    columns: dict[str, type] = {"name": str} | {f"v{i}": np.float64 for i in range(11)}
    table = _read_table(path, columns, _check_points_line)
    values = table.iloc[:, 1:].to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        _scan(path, _check_points_line)
    landmarks = values[:, :10].reshape(-1, 5, 2)
    return table["name"].to_numpy(dtype=object), landmarks, values[:, 10].astype(np.float32)


def read_template_pair_label(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``(pairs P×2, labels)`` of a ``*_template_pair_label.txt`` file; labels are 0 or 1."""
    table = _read_table(path, {"t1": np.float64, "t2": np.float64, "label": np.float64}, _check_pair_line)
    first, second, labels = _ints(table, ("t1", "t2", "label"), path, _check_pair_line)
    if not np.isin(labels, (0, 1)).all():
        _scan(path, _check_pair_line)
    return np.stack([first, second], axis=1), labels.astype(np.int8)


# ---------------------------------------------------------------------------------------- checks
def _landmarks_for(names, faces_file, point_names, landmarks, scores, points_file):
    """Landmarks and scores in the face list's order (same order: as is; else joined by name)."""
    if len(point_names) == len(names) and np.array_equal(point_names, names):
        return landmarks, scores
    row = {name: index for index, name in enumerate(point_names)}
    missing = next((i for i, name in enumerate(names) if name not in row), None)
    if missing is not None:
        where = f"{faces_file}:{data_line(faces_file, missing)}"
        raise DataFormatError(f"{where}: image {names[missing]} has no landmarks in {points_file}")
    order = np.fromiter((row[name] for name in names), dtype=np.int64, count=len(names))
    return landmarks[order], scores[order]


def _require_templates_with_faces(pairs, templates, pairs_file, faces_file) -> None:
    known = np.isin(pairs, np.unique(templates))
    if not known.all():
        index = int(np.flatnonzero(~known.all(axis=1))[0])
        template = pairs[index][~known[index]][0]
        line = data_line(pairs_file, index)
        raise DataFormatError(f"{pairs_file}:{line}: template {template} has no faces in {faces_file}")


def _check_face_line(fields: list[str]) -> str | None:
    if len(fields) != 3:
        return f"expected 'image template media', got {len(fields)} fields"
    return _integer_problem(fields[1:])


def _check_pair_line(fields: list[str]) -> str | None:
    if len(fields) != 3:
        return f"expected 'template1 template2 label', got {len(fields)} fields"
    problem = _integer_problem(fields)
    if problem is None and fields[2] not in ("0", "1"):
        return f"label {fields[2]!r} is neither 0 nor 1"
    return problem


def _check_points_line(fields: list[str]) -> str | None:
    try:
        parse_landmark_line(" ".join(fields), "", 0, score=True)
    except DataFormatError as error:
        return str(error).removeprefix(":0: ")
    return None


def _integer_problem(fields: list[str]) -> str | None:
    for field in fields:
        try:
            int(field)
        except ValueError:
            return f"{field!r} is not an integer"
    return None


# ---------------------------------------------------------------------------------------- parsing
def _read_table(path, columns: dict[str, type], check) -> pd.DataFrame:
    """The whitespace-separated file as a table; any parse failure becomes the first bad line."""
    path = Path(path)
    try:
        table = pd.read_csv(
            path,
            sep=r"\s+",
            header=None,
            names=list(columns),
            dtype=columns,
            engine="c",
            keep_default_na=False,
            na_filter=False,
        )
    except FileNotFoundError:
        raise DataFormatError(f"{path}: no such meta file") from None
    except pd.errors.EmptyDataError:
        raise DataFormatError(f"{path}: empty meta file") from None
    except (ValueError, TypeError, pd.errors.ParserError, UnicodeDecodeError):
        _scan(path, check)
        raise DataFormatError(f"{path}: not a readable meta file") from None
    if len(table) == 0:
        raise DataFormatError(f"{path}: empty meta file")
    return table


def _scan(path, check) -> None:
    """Raise at the first line ``check`` finds fault with (a DataFormatError naming file:line)."""
    try:
        with open(path, encoding="utf-8") as handle:
            for number, text in enumerate(handle, start=1):
                fields = text.split()
                problem = check(fields) if fields else None  # blank lines are skipped, as pandas does
                if problem:
                    raise DataFormatError(f"{path}:{number}: {problem}")
    except UnicodeDecodeError:
        raise DataFormatError(f"{path}: not a UTF-8 text file") from None


def data_line(path, index: int) -> int:
    """The line number of data row ``index`` (files have no header; pandas skips blank lines)."""
    with open(path, encoding="utf-8") as handle:
        seen = -1
        for number, text in enumerate(handle, start=1):
            seen += bool(text.strip())
            if seen == index:
                return number
    return index + 1


def _ints(table: pd.DataFrame, columns: tuple[str, ...], path, check) -> list[np.ndarray]:
    """Integer columns (parsed as float: pandas would wrap 'inf' or 1e30 into an int64 silently)."""
    values = table[list(columns)].to_numpy(dtype=np.float64)
    exact = np.isfinite(values) & (values == np.round(values)) & (np.abs(values) < 2**53)
    if not exact.all():
        _scan(path, check)
        raise DataFormatError(f"{path}: a value that is not an integer")
    return [values[:, column].astype(np.int64) for column in range(len(columns))]


__all__ = [
    "KNOWN_SETS",
    "IjbMeta",
    "data_line",
    "load_ijb_meta",
    "meta_prefix",
    "read_face_tid_mid",
    "read_name_5pts_score",
    "read_template_pair_label",
]
