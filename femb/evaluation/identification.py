"""1:N identification on IJB-B / IJB-C templates: rank-k accuracy and TPIR at FPIR (open set).

Gallery and probe lists are IJB's protocol CSVs (``<set>_1N_gallery_G1.csv``, ``_G2.csv`` —
IJB-B's ``_S1``/``_S2`` — and ``<set>_1N_probe_mixed.csv``; columns
``TEMPLATE_ID,SUBJECT_ID,FILENAME,...``, one row per face).
A probe is *mated* when its subject is in the gallery. For a gallery subject the probe's score is
the best over that subject's gallery templates.

- rank-k: the share of mated probes whose own subject is among the k best-scoring subjects
  (a subject scoring the same as the true one does not push it down).
- TPIR at FPIR = f: the threshold t leaves at most a share f of the non-mated probes with a top
  score above t (t is the non-mated top score at rank ⌊f·n⌋); TPIR is the share of mated probes
  whose own subject is ranked first with a score above t.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from femb.data.errors import DataFormatError
from femb.evaluation.ijb_meta import IjbMeta

RANKS = (1, 5)
FPIR_TARGETS = (0.01, 0.1)
GALLERIES = ("G1", "G2", "S1", "S2")  # IJB-C names its galleries G1/G2, IJB-B S1/S2
# Probes scored against the gallery at once (keeps the probe × gallery block small).
_PROBE_CHUNK = 4096


@dataclass(frozen=True)
class TemplateList:
    """A 1:N list: each template once, with its subject, and the file it came from."""

    path: Path
    templates: np.ndarray
    subjects: np.ndarray
    lines: np.ndarray  # the file line of each template's first row


def read_template_list(path: str | os.PathLike) -> TemplateList:
    """A ``TEMPLATE_ID,SUBJECT_ID,...`` CSV; each template keeps its first row's subject (a template
    listed under two subjects is an error naming the line)."""
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except FileNotFoundError:
        raise DataFormatError(f"{path}: no such 1:N list") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as error:
        reason = " ".join(str(error).split())[:200]
        raise DataFormatError(f"{path}: not a readable CSV ({reason})") from None
    table.columns = [str(name).strip().upper() for name in table.columns]
    for column in ("TEMPLATE_ID", "SUBJECT_ID"):
        if column not in table.columns:
            raise DataFormatError(f"{path}: no {column} column (columns: {', '.join(table.columns)})")
    if len(table) == 0:
        raise DataFormatError(f"{path}: no rows")
    templates = _integers(table["TEMPLATE_ID"], path)
    subjects = _integers(table["SUBJECT_ID"], path)
    unique, first = np.unique(templates, return_index=True)
    owner = dict(zip(unique.tolist(), subjects[first].tolist(), strict=True))
    clash = np.flatnonzero(subjects != np.array([owner[t] for t in templates.tolist()], dtype=np.int64))
    if clash.size:
        row = int(clash[0])
        raise DataFormatError(
            f"{path}:{row + 2}: template {templates[row]} listed under subject {subjects[row]} "
            f"and earlier under {owner[int(templates[row])]}"
        )
    first.sort()
    return TemplateList(path, templates[first], subjects[first], first + 2)


def _integers(column: pd.Series, path: Path) -> np.ndarray:
    values = pd.to_numeric(column.str.strip(), errors="coerce")
    bad = values.isna() | (values != values.round())
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataFormatError(f"{path}:{row + 2}: {column.name} {column.iloc[row]!r} is not an integer")
    return values.to_numpy(dtype=np.int64)


def template_rows(listed: TemplateList, template_ids: np.ndarray) -> np.ndarray:
    """Row of each listed template in ``template_ids`` (sorted); an error names one that is absent."""
    rows = np.searchsorted(template_ids, listed.templates).clip(max=len(template_ids) - 1)
    absent = np.flatnonzero(template_ids[rows] != listed.templates)
    if absent.size:
        index = int(absent[0])
        raise DataFormatError(
            f"{listed.path}:{listed.lines[index]}: template {listed.templates[index]} has no faces "
            "(not in the face list, or every image of it was skipped)"
        )
    return rows


def identification_metrics(
    gallery: np.ndarray,
    gallery_subjects: np.ndarray,
    probes: np.ndarray,
    probe_subjects: np.ndarray,
    ranks: tuple[int, ...] = RANKS,
    fpirs: tuple[float, ...] = FPIR_TARGETS,
) -> dict:
    """Rank-k accuracy and TPIR at FPIR of L2-normalised ``probes`` against a ``gallery``."""
    subjects, owner = np.unique(gallery_subjects, return_inverse=True)
    mated = np.isin(probe_subjects, subjects)
    true_column = np.searchsorted(subjects, probe_subjects).clip(max=len(subjects) - 1)
    top = np.empty(len(probes))
    true_score = np.full(len(probes), -np.inf)
    rank = np.full(len(probes), len(subjects) + 1)
    for start in range(0, len(probes), _PROBE_CHUNK):
        part = slice(start, start + _PROBE_CHUNK)
        by_template = probes[part].astype(np.float64) @ gallery.astype(np.float64).T
        by_subject = np.full((by_template.shape[0], len(subjects)), -np.inf)
        np.maximum.at(by_subject.T, owner.ravel(), by_template.T)
        top[part] = by_subject.max(axis=1)
        rows = np.flatnonzero(mated[part])
        own = by_subject[rows, true_column[part][rows]]
        true_score[part][rows] = own
        rank[part][rows] = 1 + (by_subject[rows] > own[:, None]).sum(axis=1)
    result: dict = {
        "num_probes": int(len(probes)),
        "num_mated": int(mated.sum()),
        "num_nonmated": int((~mated).sum()),
        "num_gallery_subjects": int(len(subjects)),
    }
    for k in ranks:
        result[f"rank_{k}"] = float((rank[mated] <= k).mean()) if mated.any() else None
    nonmated_top = np.sort(top[~mated])[::-1]
    tpir = {}
    for fpir in fpirs:
        if nonmated_top.size == 0 or not mated.any():
            tpir[f"{fpir:g}"] = None
            continue
        allowed = int(np.floor(fpir * nonmated_top.size))
        threshold = nonmated_top[allowed] if allowed < nonmated_top.size else -np.inf
        hit = (rank[mated] == 1) & (true_score[mated] > threshold)
        tpir[f"{fpir:g}"] = float(hit.mean())
    result["tpir_at_fpir"] = tpir
    return result


def identify_from_lists(meta: IjbMeta, template_ids: np.ndarray, matrix: np.ndarray) -> dict:
    """Each gallery's 1:N metrics against the mixed probes, where the set has those lists (else {})."""
    probe_file = meta.meta_file("1N_probe_mixed")
    galleries = {name: meta.meta_file(f"1N_gallery_{name}") for name in GALLERIES}
    galleries = {name: path for name, path in galleries.items() if path.is_file()}
    if not probe_file.is_file() or not galleries:
        return {}
    probes = read_template_list(probe_file)
    probe_matrix = matrix[template_rows(probes, template_ids)]
    results = {}
    for name, path in galleries.items():
        gallery = read_template_list(path)
        gallery_matrix = matrix[template_rows(gallery, template_ids)]
        results[name] = identification_metrics(
            gallery_matrix, gallery.subjects, probe_matrix, probes.subjects
        )
    return results


__all__ = [
    "FPIR_TARGETS",
    "GALLERIES",
    "RANKS",
    "TemplateList",
    "identification_metrics",
    "identify_from_lists",
    "read_template_list",
    "template_rows",
]
