"""Verification during training: the evaluator on the validation set, best-accuracy tracking,
and the few validation embeddings the TensorBoard projector shows at the end."""

from __future__ import annotations

import inspect

import torch

from femb.training.checkpointing import Progress
from femb.training.runtime import Runtime


class Validation:
    """Runs ``evaluator`` on rank 0 with the plain (unwrapped) backbone in eval mode."""

    def __init__(self, evaluator, dataset, model, runtime: Runtime, batch_size: int):
        self.evaluator, self.dataset = evaluator, dataset
        self.model, self.runtime, self.batch_size = model, runtime, batch_size
        # A user's own evaluator need not take the progress hook: asked once, not per evaluation.
        self._takes_progress = evaluator is not None and _accepts(evaluator.evaluate, "on_batch")
        if evaluator is not None and hasattr(evaluator, "check"):
            evaluator.check(dataset)  # before any training time is spent

    @property
    def enabled(self) -> bool:
        return self.evaluator is not None

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        with self.runtime.autocast():
            return self.model.backbone(images.to(self.runtime.device, non_blocking=True)).float()

    def run(self, progress: Progress, on_batch=None) -> tuple[dict | None, bool]:
        """(metrics on rank 0 — None elsewhere, whether they are the best so far — on every rank).

        ``on_batch(done, total)`` follows the embedding, where the evaluator takes it.
        """
        metrics, is_best = None, False
        if self.runtime.is_primary:
            backbone = self.model.backbone
            backbone.eval()
            extra = {"on_batch": on_batch} if on_batch and self._takes_progress else {}
            try:
                result = self.evaluator.evaluate(
                    self.embed, self.dataset, batch_size=self.batch_size, **extra
                )
            finally:
                backbone.train()
            metrics = result.to_dict()
            is_best = progress.best_accuracy is None or metrics["accuracy"] > progress.best_accuracy
            if is_best:
                progress.best_accuracy = metrics["accuracy"]
            progress.last_eval = {**metrics, "step": progress.step}
        return metrics, self.runtime.any_rank(is_best)

    def projector_sample(self, limit: int = 256, on_batch=None):
        """(embeddings, labels or None, images) of the first ``limit`` validation images.

        A pairs set (a .bin) has unique images without identities; a labelled set has both.
        ``on_batch(done, total)`` follows the embedding.
        """
        source = getattr(self.dataset, "images", self.dataset)
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


def _accepts(function, name: str) -> bool:
    try:
        return name in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
