"""IJB-B / IJB-C template verification, the protocol of InsightFace's ``eval_ijbc.py``.

Each face is aligned to 112×112 from its five points and embedded, with its mirror; its feature
is the two embeddings summed (norm kept), optionally L2-normalised, optionally multiplied by the
detector score. A template's feature is the sum over its media of the mean over each media's
faces, L2-normalised; a pair's score is the dot product of its two templates' features. TAR at
FAR is the TPR at the ROC point whose FPR is nearest the target (ties: the highest TPR).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse
from sklearn.metrics import auc as area_under
from sklearn.metrics import roc_curve

from femb.data.align import align_face
from femb.data.errors import DataFormatError
from femb.data.transforms import ImageLoadError, load_image
from femb.evaluation.ijb_meta import IjbMeta, data_line

FAR_TARGETS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
BAD_IMAGE_CHOICES = ("error", "skip")
# Each block of template similarities computed at once holds at most this many floats (256 MB).
SCORE_BLOCK_FLOATS = 64 * 1024 * 1024
# A block whose pairs fill less than 1/this of its similarity matrix is scored pair by pair (a
# gathered pair costs about 170 GEMM outputs on a 2-core CPU; see bench_ijb_scoring.py).
_SPARSE_FACTOR = 64

Progress = Callable[[str, int, int], None]  # (stage, done, total)


def _quiet(stage: str, done: int, total: int) -> None:
    """No progress report."""


@dataclass
class FaceEmbeddings:
    """Raw embeddings of every face (rows of skipped faces are NaN) and of its mirror (or None)."""

    plain: np.ndarray
    mirrored: np.ndarray | None
    skipped: list[str] = field(default_factory=list)

    @property
    def present(self) -> np.ndarray:
        return ~np.isnan(self.plain).any(axis=1)


def embed_faces(
    meta: IjbMeta,
    embed: Callable[[np.ndarray], np.ndarray],
    batch_size: int = 64,
    flip: bool = True,
    on_bad_image: str = "error",
    progress: Progress = _quiet,
    workers: int = 1,
) -> FaceEmbeddings:
    """Align and embed every face of ``meta``; ``embed`` maps uint8 ``N×112×112×3`` RGB to ``N×D``.

    ``on_bad_image``: ``error`` raises on an absent or unreadable image (naming it and its line in
    the face list); ``skip`` leaves the face out and lists it in :attr:`FaceEmbeddings.skipped`.
    ``workers`` threads read and align each batch (PIL decodes and warps without the GIL).
    """
    if on_bad_image not in BAD_IMAGE_CHOICES:
        raise ValueError(f"on_bad_image must be one of {', '.join(BAD_IMAGE_CHOICES)}, got {on_bad_image!r}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    total = len(meta.names)
    plain: np.ndarray | None = None
    mirrored: np.ndarray | None = None
    skipped: list[str] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, total, batch_size):
            stop = min(start + batch_size, total)
            aligned = list(
                pool.map(lambda index: _aligned(meta, index, on_bad_image == "skip"), range(start, stop))
            )
            skipped += [str(meta.image_path(start + k)) for k, face in enumerate(aligned) if face is None]
            indices = [start + k for k, face in enumerate(aligned) if face is not None]
            progress("reading and aligning faces", stop, total)
            if indices:
                batch = np.stack([face for face in aligned if face is not None])
                out = np.asarray(embed(batch), dtype=np.float32)
                if plain is None:
                    plain = np.full((total, out.shape[1]), np.nan, dtype=np.float32)
                    mirrored = np.full_like(plain, np.nan) if flip else None
                plain[indices] = out
                if mirrored is not None:
                    mirror = np.ascontiguousarray(batch[:, :, ::-1])
                    mirrored[indices] = np.asarray(embed(mirror), dtype=np.float32)
            progress("embedding faces", stop, total)
    if plain is None:
        raise DataFormatError(f"{meta.meta_file('face_tid_mid')}: no readable image among {total} faces")
    return FaceEmbeddings(plain, mirrored, skipped)


def _aligned(meta: IjbMeta, index: int, skip: bool) -> np.ndarray | None:
    path = meta.image_path(index)
    try:
        if not path.is_file():
            raise ImageLoadError(f"{path}: no such image")
        image = load_image(path)
    except ImageLoadError as error:
        if skip:
            return None
        faces_file = meta.meta_file("face_tid_mid")
        raise DataFormatError(f"{error} (listed at {faces_file}:{data_line(faces_file, index)})") from None
    try:
        return align_face(image, meta.landmarks[index])
    except ValueError as error:
        points_file = meta.meta_file("name_5pts_score")
        raise DataFormatError(f"{points_file}:{data_line(points_file, index)}: {error}") from None


def face_features(
    embeddings: FaceEmbeddings,
    scores: np.ndarray,
    flip: bool = True,
    detector_score: bool = True,
    normalize: bool = False,
) -> np.ndarray:
    """Each face's feature (``N×D`` float32): embedding (+ mirror), [normalised], [× detector score]."""
    features = embeddings.plain.astype(np.float64)  # in place from here: IJB-C's is 1.9 GB
    if flip:
        if embeddings.mirrored is None:
            raise ValueError("flip needs the mirrored faces' embeddings, which were not computed")
        features += embeddings.mirrored
    if normalize:
        features /= np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    if detector_score:
        features *= np.asarray(scores, dtype=np.float64)[:, None]
    return features.astype(np.float32)


def pool_templates(
    features: np.ndarray, templates: np.ndarray, medias: np.ndarray, present: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(template ids sorted, L2-normalised template features)``: media means, summed per template.

    Faces outside ``present`` are left out; a template left without faces gets a zero row.
    """
    keep = np.ones(len(features), dtype=bool) if present is None else np.asarray(present, dtype=bool)
    template_ids = np.unique(templates)
    rows = np.searchsorted(template_ids, templates[keep])
    _, group, counts = np.unique(
        np.stack([templates[keep], medias[keep]], axis=1), axis=0, return_inverse=True, return_counts=True
    )
    weights = 1.0 / counts[group.ravel()]
    kept = np.flatnonzero(keep)
    pooling = scipy.sparse.csr_matrix(
        (weights, (rows, np.arange(len(kept)))), shape=(len(template_ids), len(kept))
    )
    pooled = np.asarray(pooling @ features[kept].astype(np.float64))
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    pooled = np.divide(pooled, norms, out=np.zeros_like(pooled), where=norms > 0)
    return template_ids, pooled.astype(np.float32)


def require_pooled(meta: IjbMeta, template_ids: np.ndarray, matrix: np.ndarray) -> None:
    """An error naming the pair-list line of a template whose every image was skipped."""
    empty = template_ids[~matrix.any(axis=1)]
    if empty.size == 0:
        return
    bad = np.isin(meta.pairs, empty).any(axis=1)
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        template = meta.pairs[index][np.isin(meta.pairs[index], empty)][0]
        pairs_file = meta.meta_file("template_pair_label")
        raise DataFormatError(
            f"{pairs_file}:{data_line(pairs_file, index)}: template {template} has no readable image left"
        )


def score_pairs(
    template_ids: np.ndarray,
    matrix: np.ndarray,
    pairs: np.ndarray,
    block_floats: int = SCORE_BLOCK_FLOATS,
    progress: Progress = _quiet,
) -> np.ndarray:
    """Dot product of each pair's template features (float32, in ``pairs``' order).

    Pairs are grouped by their first template; a group of first templates gets its similarities to
    the second templates it needs from one matrix product (row-wise dot products where it needs few
    of them), so the cost follows the templates actually paired and memory stays within
    ``block_floats`` however many pairs there are.
    """
    # int32 rows: IJB-C's 15.66M pairs then take 125 MB less per index array
    first = np.searchsorted(template_ids, pairs[:, 0]).astype(np.int32)
    second = np.searchsorted(template_ids, pairs[:, 1]).astype(np.int32)
    order = np.argsort(first, kind="stable")
    sorted_first = first[order]
    starts = np.concatenate([[0], np.flatnonzero(sorted_first[1:] != sorted_first[:-1]) + 1, [len(pairs)]])
    group_rows = sorted_first[starts[:-1]]
    del sorted_first
    scores = np.empty(len(pairs), dtype=np.float32)
    rows_per_block = max(1, block_floats // max(1, len(template_ids)))
    for group in range(0, len(starts) - 1, rows_per_block):
        end = min(group + rows_per_block, len(starts) - 1)
        start, stop = starts[group], starts[end]
        chosen = order[start:stop]
        a, b = first[chosen], second[chosen]
        rows = group_rows[group:end]
        columns = np.unique(b)
        if (stop - start) * _SPARSE_FACTOR < len(rows) * len(columns):
            scores[chosen] = _row_dots(matrix, a, b, block_floats)
        else:
            block = _product(matrix[rows], matrix[columns])
            scores[chosen] = block[np.searchsorted(rows, a), np.searchsorted(columns, b)]
        progress("scoring", int(stop), len(pairs))
    return scores


def _row_dots(matrix: np.ndarray, a: np.ndarray, b: np.ndarray, block_floats: int) -> np.ndarray:
    out = np.empty(len(a), dtype=np.float32)
    step = max(1, block_floats // (2 * matrix.shape[1]))
    for start in range(0, len(a), step):
        cut = slice(start, start + step)
        out[cut] = np.einsum("ij,ij->i", matrix[a[cut]], matrix[b[cut]])
    return out


def _product(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """``left @ right.T`` through PyTorch's GEMM (about twice NumPy's default BLAS here)."""
    import torch

    return (torch.from_numpy(left) @ torch.from_numpy(right).T).numpy()


@dataclass
class TemplateVerification:
    """TAR at each FAR target, the ROC's AUC and the pair counts."""

    tar_at_far: dict[float, float]
    auc: float
    fpr: np.ndarray
    tpr: np.ndarray
    num_genuine: int
    num_impostor: int

    @property
    def num_pairs(self) -> int:
        return self.num_genuine + self.num_impostor

    def measurable(self, far: float) -> bool:
        """Whether the impostor pairs are enough to resolve ``far`` (at least one false accept)."""
        return far * self.num_impostor >= 1

    def to_dict(self) -> dict:
        return {
            "tar_at_far": {f"{far:.0e}": value for far, value in self.tar_at_far.items()},
            "far_measurable": {f"{far:.0e}": self.measurable(far) for far in self.tar_at_far},
            "auc": self.auc,
            "num_pairs": self.num_pairs,
            "num_genuine": self.num_genuine,
            "num_impostor": self.num_impostor,
        }


def verification_at_far(
    labels: np.ndarray, scores: np.ndarray, fars: tuple[float, ...] = FAR_TARGETS
) -> TemplateVerification:
    """TAR at each target FAR (the TPR at the ROC point with the nearest FPR) and the AUC."""
    labels = np.asarray(labels)
    genuine = int(labels.sum())
    if genuine == 0 or genuine == len(labels):
        raise ValueError("the pair list needs both genuine (label 1) and impostor (label 0) pairs")
    fpr, tpr, _ = roc_curve(labels, scores)
    tar = {}
    for far in fars:
        gap = np.abs(fpr - far)
        nearest = np.flatnonzero(gap == gap.min())
        tar[far] = float(tpr[nearest].max())
    return TemplateVerification(tar, float(area_under(fpr, tpr)), fpr, tpr, genuine, len(labels) - genuine)


__all__ = [
    "BAD_IMAGE_CHOICES",
    "FAR_TARGETS",
    "FaceEmbeddings",
    "TemplateVerification",
    "embed_faces",
    "face_features",
    "pool_templates",
    "require_pooled",
    "score_pairs",
    "verification_at_far",
]
