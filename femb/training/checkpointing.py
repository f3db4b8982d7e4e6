"""Save and restore the whole training state: weights, optimizer, schedulers, grad scaler, RNG, step.

The file format is :mod:`femb.checkpoint`'s; this module decides *what* goes in a training
checkpoint and *where* in the run directory it lands. A checkpoint is written only by rank 0
and holds the full head, so a run resumes on any number of processes. Writes are atomic: the
previous ``last.pt`` stays intact until the new one is complete.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from femb import checkpoint as ckpt
from femb.errors import one_line
from femb.training.run_dir import RunDir

CHECKPOINT_KINDS = ("last", "best", "manual")


class NonFiniteStateError(RuntimeError):
    """The model's weights or buffers hold NaN or inf: no checkpoint is written from them."""


def non_finite_entries(tensors: dict[str, torch.Tensor]) -> list[str]:
    """The names of the floating-point tensors holding a NaN or an inf (one host sync when none do).

    A finite loss does not prove finite weights: in training mode BatchNorm normalises with the
    batch's statistics, so its running variance can be inf while the loss still looks sane.
    """
    floating = {name: t for name, t in tensors.items() if torch.is_tensor(t) and t.is_floating_point()}
    if not floating:
        return []
    finite = torch.stack([torch.isfinite(t).all() for t in floating.values()])
    if bool(finite.all()):
        return []
    return [name for name, ok in zip(floating, finite.tolist(), strict=True) if not ok]


def _model_tensors(model) -> dict[str, torch.Tensor]:
    """Every parameter and buffer of the backbone and of this process's head (or head block)."""
    tensors = {f"backbone.{k}": v for k, v in model.backbone.state_dict().items()}
    if model.header is not None:
        tensors.update({f"header.{k}": v for k, v in model.header.state_dict().items()})
    return tensors


def _named_list(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def capture_rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": _numpy_state(), "python": _python_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _numpy_state() -> list:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached]


def _python_state() -> list:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


@dataclass
class Progress:
    """Where a run stands; saved with every checkpoint."""

    step: int = 0
    epoch: int = 0
    total_steps: int = 0
    best_accuracy: float | None = None
    last_eval: dict | None = None


@dataclass
class TrainingState:
    """Everything a checkpoint restores besides the model's weights."""

    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    step_scheduler: Any = None
    epoch_scheduler: Any = None
    progress: Progress = field(default_factory=Progress)

    def state_dict(self, optimizer_state: dict | None = None) -> dict:
        """``optimizer_state``: the optimizer's state dict when the caller already has it (one
        ``optimizer.state_dict()`` per checkpoint, not two)."""
        return {
            "step": self.progress.step,
            "epoch": self.progress.epoch,
            "total_steps": self.progress.total_steps,
            "best_accuracy": self.progress.best_accuracy,
            "last_eval": self.progress.last_eval,
            "optimizer": self.optimizer.state_dict() if optimizer_state is None else optimizer_state,
            "step_scheduler": self.step_scheduler.state_dict() if self.step_scheduler else None,
            "epoch_scheduler": self.epoch_scheduler.state_dict() if self.epoch_scheduler else None,
            "scaler": self.scaler.state_dict(),
            "rng": capture_rng_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if self.step_scheduler and state.get("step_scheduler"):
            self.step_scheduler.load_state_dict(state["step_scheduler"])
        if self.epoch_scheduler and state.get("epoch_scheduler"):
            self.epoch_scheduler.load_state_dict(state["epoch_scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        restore_rng_state(state["rng"])
        self.progress.step, self.progress.epoch = int(state["step"]), int(state["epoch"])
        self.progress.best_accuracy = state.get("best_accuracy")
        self.progress.last_eval = state.get("last_eval")


class Checkpointer:
    """Writes and reads a run's checkpoints (``checkpoints/last.pt``, ``best.pt``)."""

    def __init__(self, run_dir: RunDir | None, config: dict, run_name: str | None, is_primary: bool = True):
        self.run_dir = run_dir
        self.config = config
        self.run_name = run_name
        self.is_primary = is_primary
        # The step of the run's last.pt as this process knows it: written here, or resumed from.
        self.last_saved_step: int | None = None

    def path(self, kind: str) -> Path | None:
        if kind not in CHECKPOINT_KINDS:
            raise ValueError(f"unknown checkpoint kind {kind!r}; choices: {', '.join(CHECKPOINT_KINDS)}")
        if self.run_dir is None:
            return None
        return self.run_dir.best_checkpoint if kind == "best" else self.run_dir.last_checkpoint

    def save(self, kind: str, model, state: TrainingState, objective) -> Path | None:
        """Write a checkpoint of ``kind``; call on every rank (a sharded head is gathered).

        Raises :class:`NonFiniteStateError` instead when any rank's weights or buffers are not
        finite: a checkpoint that cannot be exported or resumed is no checkpoint.
        """
        path = self.path(kind)
        if path is None:
            return None
        self.refuse_non_finite(model, objective.runtime, state.progress.step)
        header, head_rows = objective.head_checkpoint()  # a collective: every rank takes part
        if self.is_primary:  # the only rank that writes builds the payload
            training = {
                **state.state_dict(optimizer_state=objective.optimizer_state_without_head()),
                "head_rows": head_rows,
            }
            payload = model.checkpoint_payload(
                training=training, config=self.config, run_name=self.run_name, include_header=False
            )
            payload["header"] = header  # the full head, whatever the number of processes
            ckpt.save_checkpoint(payload, path)
        if kind != "best":
            self.last_saved_step = state.progress.step
        return path

    def refuse_non_finite(self, model, runtime, step: int) -> None:
        """Agreed on every rank (one all-reduce), so all ranks stop at the same step."""
        bad = non_finite_entries(_model_tensors(model))
        if not runtime.any_rank(bool(bad)):
            return
        where = _named_list(bad) if bad else "on another process"
        raise NonFiniteStateError(
            f"the model's weights are not finite at step {step} ({where}); stopped without writing "
            f"a checkpoint: {self.kept_description()} (lower the learning rate or clip gradients)"
        )

    def kept_description(self) -> str:
        """What a stop leaves to resume from, said truthfully (every checkpoint written is finite)."""
        if self.last_saved_step is not None:
            return f"the last checkpoint (step {self.last_saved_step}, finite) is intact"
        if self.has_resumable:
            return f"the checkpoint already in {self.run_dir.checkpoints} is intact"
        return "no checkpoint had been written yet"

    def note_resumed(self, payload: dict) -> None:
        """After a resume from this run's own last.pt, that file is the last checkpoint at its step."""
        training = payload.get("training") or {}
        same_file = (
            self.run_dir is not None
            and payload.get("path") is not None
            and Path(payload["path"]).resolve() == self.run_dir.last_checkpoint.resolve()
        )
        if same_file and training.get("step") is not None:
            self.last_saved_step = int(training["step"])

    @property
    def has_resumable(self) -> bool:
        """Whether a checkpoint to resume from exists on disk now (said truthfully on errors)."""
        return self.run_dir is not None and self.run_dir.last_checkpoint.is_file()


def restore(model, state: TrainingState, payload: dict, device: torch.device, objective) -> None:
    """Continue from a loaded checkpoint: weights, optimizer, schedulers, scaler, RNG, step.

    The head comes back whole or as this rank's block, with its rows' optimizer state, whatever
    the number of processes that saved it.
    """
    where = payload.get("path", "checkpoint")
    training = payload.get("training")
    if not training or not payload.get("header"):
        raise ValueError(f"{where}: has no training state to resume from")
    check_same_recipe(model, objective.num_classes, payload, where)
    saved = {f"backbone.{k}": v for k, v in payload["backbone"]["state_dict"].items()}
    saved.update({f"header.{k}": v for k, v in payload["header"].get("state_dict", {}).items()})
    bad = non_finite_entries(saved)
    if bad:
        raise ValueError(
            f"{where}: holds non-finite values ({_named_list(bad)}), written after the run diverged; "
            "it cannot be resumed (start again with a lower learning rate)"
        )
    try:
        model.backbone.load_state_dict(payload["backbone"]["state_dict"])
    except RuntimeError as error:
        raise ValueError(
            f"{where}: its backbone weights do not fit this model ({one_line(error, limit=200)})"
        ) from None
    model.to(device)
    state.load_state_dict(training)  # the optimizer first: loading it replaces every row's state
    objective.load_head(payload["header"], training.get("head_rows"))


def check_same_recipe(model, num_classes: int | None, payload: dict, where: str) -> None:
    """A checkpoint resumes only the network it was written by: a config.toml edited to another
    backbone, embedding size or head is named in one line, not a page of missing keys."""
    from femb.backbones import backbone_spec

    saved_backbone, saved_head = payload["backbone"], payload["header"]
    now = backbone_spec(model.backbone)
    if (saved_backbone.get("name"), saved_backbone.get("kwargs")) != (now["name"], now["kwargs"]):
        raise ValueError(
            f"{where}: written by backbone {saved_backbone.get('name')} {saved_backbone.get('kwargs')}, "
            f"but this run builds {now['name']} {now['kwargs']} (was its config.toml edited?)"
        )
    saved_classes = saved_head.get("kwargs", {}).get("out_features")
    head_name = getattr(model.header, "name", None)
    if saved_head.get("name") != head_name or (num_classes is not None and saved_classes != num_classes):
        raise ValueError(
            f"{where}: written with head {saved_head.get('name')} over {saved_classes} classes, "
            f"but this run builds {head_name} over {num_classes} classes"
        )


def load_resume_source(source: str | Path | dict) -> dict:
    """A loaded checkpoint from a path, a run directory (its last.pt) or an already loaded dict."""
    return source if isinstance(source, dict) else ckpt.load_checkpoint(source, prefer="last")
