"""Verification during training: the evaluator on one or several named validation sets, the
best-accuracy tracking, and the few validation embeddings the TensorBoard projector shows at the end.

Each set's pairs are fixed once, before the first step (a set that can never be scored fails
then), and its images are decoded once, also before the first step (:meth:`Validation.read_images`;
a damaged image stops the run before it has spent any training time, as InsightFace's loading of
its ``.bin`` sets does), into memory (:class:`~femb.data.decoded_images.DecodedImages`):
evaluations only embed them, in batches. Evaluation runs on rank 0 alone, so only rank 0 decodes
and holds the images.

What an evaluation reports (the ``eval`` event, see :mod:`femb.training.events`): each set's
figures under ``sets[name]``, and at the top level the figures ``best_on`` judges by: the named
set's, or with ``"mean"`` the mean over the sets of each figure (pair counts summed). With one
set the top level is that set's figures, as before sets had names.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping

import torch

from femb.data.decoded_images import DecodedImages
from femb.data.pairs import PairsDataset
from femb.training.checkpointing import Progress
from femb.training.config import BEST_ON_MEAN, check_best_on
from femb.training.runtime import Runtime

DEFAULT_SET_NAME = "val"  # a single validation set given without a name
SUMMED = ("num_pairs", "num_same", "num_different")


def named_sets(datasets) -> dict[str, object]:
    """``{name: dataset}`` from a mapping of them or from one unnamed dataset (None: no set)."""
    if datasets is None:
        return {}
    if isinstance(datasets, Mapping):
        return {str(name): dataset for name, dataset in datasets.items() if dataset is not None}
    return {DEFAULT_SET_NAME: datasets}


class Validation:
    """Runs ``evaluator`` on rank 0 with the plain (unwrapped) backbone in eval mode, on every set."""

    def __init__(
        self, evaluator, datasets, model, runtime: Runtime, batch_size: int, best_on: str = BEST_ON_MEAN
    ):
        self.evaluator, self.model, self.runtime = evaluator, model, runtime
        self.batch_size, self.best_on = batch_size, best_on
        self.sets = named_sets(datasets) if evaluator is not None else {}
        # A user's own evaluator need not take the progress hook: asked once, not per evaluation.
        self._takes_progress = evaluator is not None and _accepts(evaluator.evaluate, "on_batch")
        if self.sets:
            check_best_on(best_on, list(self.sets))
            # before any training time is spent: the pairs, and whether they can give a result
            self.sets = {name: self._prepared(name, dataset) for name, dataset in self.sets.items()}

    def _prepared(self, name: str, dataset):
        """The set as it is scored: its pairs fixed, its images decoded once when first scored."""
        check = getattr(self.evaluator, "check", None)
        if check is not None:
            label = "validation set" if name == DEFAULT_SET_NAME else f"validation set {name}"
            dataset = check(dataset, name=label) if _accepts(check, "name") else check(dataset)
        if isinstance(dataset, PairsDataset):
            return PairsDataset(DecodedImages(dataset.images), dataset.pairs, dataset.issame, name=name)
        return dataset

    @property
    def enabled(self) -> bool:
        return bool(self.sets)

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        with self.runtime.autocast():
            return self.model.backbone(images.to(self.runtime.device, non_blocking=True)).float()

    def run(self, progress: Progress, on_batch=None) -> tuple[dict | None, bool]:
        """(metrics on rank 0 — None elsewhere, whether they are the best so far — on every rank).

        ``on_batch(done, total)`` follows the embedding over all sets, where the evaluator takes it.
        """
        metrics, is_best = None, False
        if self.runtime.is_primary:
            backbone = self.model.backbone
            backbone.eval()
            try:
                per_set = self._score_sets(on_batch)
            finally:
                backbone.train()
            metrics = summarize(per_set, self.best_on)
            is_best = progress.best_accuracy is None or (
                metrics["accuracy"] is not None and metrics["accuracy"] > progress.best_accuracy
            )
            if is_best:
                progress.best_accuracy = metrics["accuracy"]
            progress.last_eval = {**metrics, "step": progress.step}
        return metrics, self.runtime.any_rank(is_best)

    def _score_sets(self, on_batch) -> dict[str, dict]:
        sizes = {name: len(getattr(dataset, "images", dataset)) for name, dataset in self.sets.items()}
        total, offset, per_set = sum(sizes.values()), 0, {}
        for name, dataset in self.sets.items():
            extra = {}
            if on_batch is not None and self._takes_progress:
                extra["on_batch"] = lambda done, _, start=offset: on_batch(start + done, total)
            result = self.evaluator.evaluate(self.embed, dataset, batch_size=self.batch_size, **extra)
            per_set[name] = result.to_dict()
            offset += sizes[name]
        return per_set

    def read_images(self, on_image=None) -> None:
        """Decode every set's images into memory now, on rank 0 (where evaluation runs).

        ``on_image(done, total)`` follows it over all sets. A set decoded already is not read again.
        """
        if not self.runtime.is_primary:
            return
        pending = [images for images in self._decoded_images() if not images.decoded]
        total, offset = sum(len(images) for images in pending), 0
        for images in pending:
            follow = (
                None if on_image is None else (lambda done, _, start=offset: on_image(start + done, total))
            )
            images.decode(follow)
            offset += len(images)

    def unread_images(self) -> int:
        """Images of the sets not decoded yet."""
        return sum(len(images) for images in self._decoded_images() if not images.decoded)

    def decoded_images(self) -> int:
        """Images read from the sets' sources so far (each set's once, by :meth:`read_images` or at
        its first evaluation)."""
        return sum(images.decodes for images in self._decoded_images())

    def _decoded_images(self) -> list[DecodedImages]:
        return [
            dataset.images
            for dataset in self.sets.values()
            if isinstance(getattr(dataset, "images", None), DecodedImages)
        ]

    def projector_sample(self, limit: int = 256, on_batch=None):
        """(embeddings, labels or None, images) of the first ``limit`` images of the first set.

        A pairs set (a .bin) has unique images without identities; a labelled set has both.
        ``on_batch(done, total)`` follows the embedding.
        """
        if not self.sets:
            return None
        first = next(iter(self.sets.values()))
        source = getattr(first, "images", first)
        items = [source[i] for i in range(min(limit, len(source)))]
        if not items:
            return None
        labelled = isinstance(items[0], (tuple, list))
        images = torch.stack([item[0] if labelled else item for item in items])
        labels = [item[1] for item in items] if labelled else None
        self.model.backbone.eval()
        chunks = []
        try:
            for chunk in images.split(self.batch_size):
                chunks.append(self.embed(chunk).cpu())
                if on_batch is not None:
                    on_batch(min(len(chunks) * self.batch_size, len(images)), len(images))
            embeddings = torch.cat(chunks)
        finally:
            self.model.backbone.train()
        return embeddings, labels, images


def summarize(per_set: dict[str, dict], best_on: str = BEST_ON_MEAN) -> dict:
    """The ``eval`` figures: ``best_on``'s at the top level (see the module's docstring), every
    set's under ``sets``."""
    if len(per_set) == 1 or best_on != BEST_ON_MEAN:
        top = dict(per_set[best_on] if best_on in per_set else next(iter(per_set.values())))
    else:
        keys = [key for key in next(iter(per_set.values())) if all(key in m for m in per_set.values())]
        top = {key: _combined(key, [m[key] for m in per_set.values()]) for key in keys}
        top["threshold"] = None  # each set has its own: their mean would threshold nothing
    return {**top, "best_on": best_on, "sets": {name: dict(m) for name, m in per_set.items()}}


def _combined(key: str, values: list):
    if any(value is None for value in values):
        return None  # a figure one set could not give (a TAR at a FAR below its pairs)
    if key in SUMMED:
        return int(sum(values))
    return float(sum(values) / len(values))


def _accepts(function, name: str) -> bool:
    try:
        return name in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
