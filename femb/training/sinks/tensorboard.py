"""TensorBoard scalars from training events, and the embedding projector at the end."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from femb.fileio import write_failure
from femb.training.events import Event

STEP_SCALARS = {
    "loss": "train/loss",
    "lr": "train/lr",
    "images_per_s": "train/images_per_s",
    "emb_norm_mean": "train/embedding_norm_mean",
    "regularizer": "train/regularizer",
}
EVAL_SCALARS = ("accuracy", "eer", "auc")  # and every tar_at_far_<FAR>


ProjectorSource = Callable[[], tuple | None]  # () -> (embeddings, labels | None, images) | None


class TensorBoardSink:
    """Scalars for step and eval events; at the end of a completed run, the embedding projector.

    ``projector`` returns (embeddings, labels or None, images in [-1, 1]) of a few validation
    images when asked; the sink asks once, when the run completes.
    """

    def __init__(self, log_dir: str | os.PathLike, projector: ProjectorSource | None = None):
        from torch.utils.tensorboard import SummaryWriter

        _quiet_writer_thread_errors()
        self.log_dir = log_dir
        try:
            self.writer = SummaryWriter(log_dir=str(log_dir))
        except OSError as error:
            raise write_failure(log_dir, error, "the run's other files are intact") from None
        self.projector = projector

    def __call__(self, event: Event) -> None:
        try:
            self._write(event)
        except OSError as error:  # tensorboard's writer thread met a full disk: said once, here
            raise write_failure(self.log_dir, error, "the run's other files are intact") from None

    def _write(self, event: Event) -> None:
        kind = event["event"]
        if kind == "step":
            for key, tag in STEP_SCALARS.items():
                if event.get(key) is not None:
                    self.writer.add_scalar(tag, event[key], event["step"])
        elif kind == "eval":
            self._add_eval(event, "val", event["step"])
            sets = event.get("sets") or {}
            for name, figures in sets.items() if len(sets) > 1 else ():
                self._add_eval(figures, f"val/{name}", event["step"])
        elif kind == "end":
            if event.get("reason") == "completed" and self.projector is not None:
                projected = self.projector()
                if projected is not None:
                    self.add_embeddings(*projected, step=event["step"])
            self.writer.flush()

    def _add_eval(self, figures: dict, group: str, step: int) -> None:
        """``group/accuracy``, ``group/eer``, a TAR per configured FAR…: the run's figures under
        ``val``, each set's (when there are several) under ``val/<name>``."""
        for key, value in figures.items():
            if (key in EVAL_SCALARS or key.startswith("tar_at_far_")) and value is not None:
                self.writer.add_scalar(f"{group}/{key}", value, step)

    def add_embeddings(self, embeddings, labels, images, step: int) -> None:
        # Thumbnails back to [0, 1] for the projector's sprite.
        self.writer.add_embedding(
            embeddings,
            metadata=None if labels is None else [str(int(v)) for v in labels],
            label_img=(images * 0.5 + 0.5).clamp(0, 1),
            global_step=step,
        )

    def close(self) -> None:
        self.writer.close()


_default_excepthook = threading.excepthook


def _quiet_writer_thread_errors() -> None:
    """tensorboard's writer thread dies on a full disk, printing a traceback, and raises the same
    error again in the main thread at the next write, where it becomes one line: keep only that."""

    def hook(args: threading.ExceptHookArgs) -> None:
        if isinstance(args.exc_value, OSError) and type(args.thread).__name__ == "_AsyncWriterThread":
            return
        _default_excepthook(args)

    if threading.excepthook is _default_excepthook:
        threading.excepthook = hook
