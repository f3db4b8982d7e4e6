"""Embed verification images with any model and score the pairs (the field's protocol).

Each unique image is embedded once, in batches, as ``embed(x) + embed(hflip(x))`` (``flip=True``),
then L2-normalised. Scores: ``cos`` → cosine similarity (higher = same); ``euclidean`` →
squared L2 distance between the normalised embeddings (lower = same; the reported threshold is
a distance, like InsightFace's). On normalised embeddings ``d² = 2 − 2·cos``, so both give the
same accuracy, EER, AUC and TAR; only the threshold's units differ.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from femb.data.labelled_pairs import pairs_from_labelled
from femb.data.pairs import PairsDataset
from femb.data.transforms import hflip
from femb.evaluation.metrics import VerificationResult, verification_metrics

SIMILARITIES = ("cos", "euclidean")
EmbedFn = Callable[[torch.Tensor], "torch.Tensor | np.ndarray"]

_PAIR_CHUNK = 1 << 16  # pairs scored per step: bounds the memory of gathered embeddings


def l2_normalize(embeddings: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    return embeddings / np.maximum(norms, eps)


def pair_scores(embeddings: np.ndarray, pairs: np.ndarray, similarity: str = "cos") -> np.ndarray:
    """Scores of ``pairs`` (int ``(N, 2)``) over L2-normalised ``embeddings``: cosine, or squared distance."""
    if similarity not in SIMILARITIES:
        raise ValueError(f"unknown similarity {similarity!r}; choices: {', '.join(SIMILARITIES)}")
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    scores = np.empty(len(pairs), dtype=np.float64)
    for start in range(0, len(pairs), _PAIR_CHUNK):
        chunk = pairs[start : start + _PAIR_CHUNK]
        a, b = embeddings[chunk[:, 0]], embeddings[chunk[:, 1]]
        if similarity == "cos":
            scores[start : start + len(chunk)] = np.einsum("ij,ij->i", a, b)
        else:
            diff = a - b
            scores[start : start + len(chunk)] = np.einsum("ij,ij->i", diff, diff)
    return scores


# Embeddings closer than this (per coordinate, after L2 normalisation) count as one embedding:
# a real model's embeddings of different faces differ by orders of magnitude more.
_IDENTICAL_SPREAD = 1e-6


def require_informative(embeddings: np.ndarray, source: str = "the pairs set") -> None:
    """A ``ValueError`` when embeddings cannot tell faces apart: any of them NaN or infinite
    (a model with non-finite weights), or all of them the same vector (an all-zero or constant
    model), which would score chance accuracy and look like a result."""
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2 or not len(embeddings):
        raise ValueError(f"embeddings must be [num_images, dim], got shape {embeddings.shape}")
    bad = int((~np.isfinite(embeddings).all(axis=1)).sum())
    if bad:
        raise ValueError(
            f"the model gives NaN or infinite embeddings for {bad} of the {len(embeddings)} images of "
            f"{source}; its weights are probably not finite"
        )
    if len(embeddings) > 1 and float(np.ptp(embeddings, axis=0).max()) <= _IDENTICAL_SPREAD:
        raise ValueError(
            f"the model gives the same embedding for all {len(embeddings)} images of {source} "
            "(an untrained, zeroed or constant model?); its verification figures would be chance"
        )


def _collate_images(items: list) -> torch.Tensor:
    """Stack the images of a batch; items may be image tensors or ``(image, label, ...)`` tuples."""
    images = [item[0] if isinstance(item, (tuple, list)) else item for item in items]
    if not all(isinstance(image, torch.Tensor) for image in images):
        kinds = sorted({type(image).__name__ for image in images})
        raise TypeError(f"expected image tensors from the dataset, got {', '.join(kinds)}")
    # numpy's copy: torch.stack's thread pool is slower than the copy on a busy few-core machine.
    return torch.from_numpy(np.stack([image.to(torch.float32).numpy() for image in images]))


def _to_numpy(output: object, batch_size: int) -> np.ndarray:
    if isinstance(output, torch.Tensor):
        output = output.detach().to(device="cpu", dtype=torch.float32).numpy()
    array = np.asarray(output, dtype=np.float32)
    if array.ndim != 2 or array.shape[0] != batch_size:
        raise ValueError(
            f"embed_fn must return a [batch, dim] array; for a batch of {batch_size} it gave {array.shape}"
        )
    return array


class VerificationEvaluator:
    """Runs the verification protocol for an ``embed_fn(batch[B,3,112,112] float32) -> [B, D]``.

    ``embed_fn`` gets CPU tensors; moving them to a device and ``model.eval()`` are the caller's.
    A :class:`PairsDataset` is used as it is; any other dataset with ``labels`` gets
    ``pairs_from_labelled(dataset, num_pairs, seed)`` pairs.
    """

    def __init__(
        self,
        similarity: str = "cos",
        n_folds: int = 10,
        flip: bool = True,
        num_pairs: int = 3000,
        seed: int = 0,
        far_targets: Sequence[float] = (1e-3, 1e-4),
        batch_size: int = 64,
        num_workers: int = 0,
    ):
        if similarity not in SIMILARITIES:
            raise ValueError(f"unknown similarity {similarity!r}; choices: {', '.join(SIMILARITIES)}")
        self.similarity = similarity
        self.n_folds = int(n_folds)
        self.flip = bool(flip)
        self.num_pairs = int(num_pairs)
        self.seed = int(seed)
        self.far_targets = tuple(float(f) for f in far_targets)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)

    def pairs_for(self, dataset: Dataset) -> PairsDataset:
        """The pairs this evaluator scores for ``dataset``."""
        if isinstance(dataset, PairsDataset):
            return dataset
        if getattr(dataset, "labels", None) is not None:
            return pairs_from_labelled(dataset, num_pairs=self.num_pairs, seed=self.seed)
        raise TypeError(
            f"cannot verify on {type(dataset).__name__}: expected a PairsDataset or a dataset with labels"
        )

    def check(self, dataset: Dataset, name: str = "validation set") -> PairsDataset:
        """The pairs for ``dataset``, or one clear error when they cannot give a result.

        A training run calls this before its first step, so that a validation set that can never
        be scored fails in a second instead of after hours of training.
        """
        if self.num_pairs <= 0 and not isinstance(dataset, PairsDataset):
            raise ValueError(f"{name}: the number of validation pairs must be positive, got {self.num_pairs}")
        try:
            pairs = self.pairs_for(dataset)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{name}: {error}") from None
        issame = np.asarray(pairs.issame, dtype=bool)
        if len(issame) < self.n_folds:
            raise ValueError(
                f"{name}: {len(issame)} pairs, fewer than the {self.n_folds} folds of the protocol"
            )
        if issame.all() or not issame.any():
            kind = "same-person" if issame.all() else "different-person"
            raise ValueError(
                f"{name}: all {len(issame)} pairs are {kind} pairs; verification needs both kinds "
                "(a folder needs at least two identities, one with two or more images)"
            )
        return pairs

    @torch.no_grad()
    def embed(
        self,
        embed_fn: EmbedFn,
        images: Dataset,
        batch_size: int | None = None,
        return_norms: bool = False,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Flip-summed, L2-normalised embeddings of every image of ``images``, as float32 ``[N, D]``.

        ``return_norms``: also the raw norm of each image's own (unflipped) embedding, MagFace's
        quality score, as ``femb embed`` writes it in its ``norm`` column.
        ``on_batch(done, total)``: called after each batch with the images embedded so far.
        """
        loader = DataLoader(
            images,
            batch_size=int(batch_size or self.batch_size),
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=_collate_images,
        )
        chunks, norms, done = [], [], 0
        for batch in loader:
            embedding = _to_numpy(embed_fn(batch), len(batch))
            norms.append(np.linalg.norm(embedding, axis=1))
            if self.flip:
                embedding = embedding + _to_numpy(embed_fn(hflip(batch)), len(batch))
            chunks.append(embedding)
            done += len(batch)
            if on_batch is not None:
                on_batch(done, len(images))
        if not chunks:
            raise ValueError("the verification set holds no images")
        embeddings = l2_normalize(np.concatenate(chunks))
        return (embeddings, np.concatenate(norms)) if return_norms else embeddings

    def evaluate(
        self,
        embed_fn: EmbedFn,
        dataset: Dataset,
        batch_size: int | None = None,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> VerificationResult:
        pairs = self.pairs_for(dataset)
        embeddings = self.embed(embed_fn, pairs.images, batch_size, on_batch=on_batch)
        return self.evaluate_embeddings(embeddings, pairs.pairs, pairs.issame, normalized=True)

    def evaluate_embeddings(
        self,
        embeddings: np.ndarray | torch.Tensor,
        pairs: np.ndarray,
        issame: np.ndarray,
        normalized: bool = False,
    ) -> VerificationResult:
        """Metrics for precomputed embeddings (flip-summed already, if wanted); they are
        L2-normalised here unless ``normalized=True``."""
        if isinstance(embeddings, torch.Tensor):
            embeddings = embeddings.detach().cpu().float().numpy()
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2:
            raise ValueError(f"embeddings must be [num_images, dim], got shape {embeddings.shape}")
        if not normalized:
            embeddings = l2_normalize(embeddings)
        scores = pair_scores(embeddings, pairs, self.similarity)
        return verification_metrics(
            scores,
            issame,
            n_folds=self.n_folds,
            far_targets=self.far_targets,
            higher_is_same=self.similarity == "cos",
        )


def evaluate_embeddings(
    embeddings: np.ndarray | torch.Tensor,
    pairs: np.ndarray,
    issame: np.ndarray,
    similarity: str = "cos",
    n_folds: int = 10,
    far_targets: Sequence[float] = (1e-3, 1e-4),
) -> VerificationResult:
    """Module-level shortcut for :meth:`VerificationEvaluator.evaluate_embeddings`."""
    evaluator = VerificationEvaluator(similarity=similarity, n_folds=n_folds, far_targets=far_targets)
    return evaluator.evaluate_embeddings(embeddings, pairs, issame)
