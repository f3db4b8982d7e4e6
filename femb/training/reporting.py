"""The events a run emits to its sinks, and the fields of its ``start``, ``step`` and ``end`` events
(see :mod:`femb.training.events`)."""

from __future__ import annotations

import time
from typing import Any

import torch

from femb.data.bad_images import skipped_images_note
from femb.training.events import Event, make_event


def start_fields(trainer) -> dict:
    progress = trainer.progress
    return {
        "run_name": trainer.run_name,
        "run_dir": str(trainer.run_dir.path) if trainer.run_dir else None,
        "config": trainer.config,
        "total_steps": progress.total_steps,
        "steps_per_epoch": trainer.steps_per_epoch,
        "start_step": progress.step,
        "num_classes": trainer.num_classes,
        "num_parameters": sum(p.numel() for p in trainer.model.backbone.parameters()),
        "device": str(trainer.device),
        "batch_size": trainer.settings.batch_size,
        "head": _head_spec(trainer.model.header),  # every head option's value as built: the effective ones
        "world_size": trainer.runtime.world_size,
    }


def _head_spec(header) -> dict | None:
    from femb.headers import header_spec

    try:
        return header_spec(header)
    except ValueError:  # a head class of the caller's own, never registered
        return None


def step_fields(trainer, loss_value: float, embeddings: torch.Tensor) -> dict:
    """Loss, learning rate, global images/s, ETA and embedding-norm statistics of a log step."""
    norms = embeddings.float().norm(dim=1)
    images_per_s, rate = trainer.meter.read(trainer.step, trainer.runtime)
    remaining = trainer.progress.total_steps - trainer.step
    return {
        "step": trainer.step,
        "epoch": trainer.progress.epoch,
        "loss": loss_value,
        # The peak rate over the groups: the head's, when the backbone's is scaled for fine-tuning.
        "lr": max(group["lr"] for group in trainer.state.optimizer.param_groups),
        "images_per_s": images_per_s,
        "eta_s": remaining / rate if rate > 0 else None,
        "emb_norm_mean": norms.mean().item(),
        "emb_norm_std": norms.std().item() if norms.numel() > 1 else 0.0,
    }


def end_fields(trainer, reason: str, message: str) -> dict:
    """How the run ended; ``resume_from``: the run directory, when a checkpoint to resume from exists."""
    run_dir = trainer.run_dir
    resumable = trainer.checkpointer.has_resumable
    if reason not in ("completed", "nonfinite") and run_dir is not None and not resumable:
        message += "; no checkpoint was written, so there is nothing to resume"
    return {
        "step": trainer.step,
        "reason": reason,
        "message": message,
        "resume_from": str(run_dir.path) if run_dir and reason != "completed" and resumable else None,
        "best_accuracy": trainer.progress.best_accuracy,
    }


class TaskProgress:
    """``progress`` events of one long piece of work between steps (an evaluation, the projector).

    Announced at once (done 0), then at most every ``interval_s`` and when done reaches total, so
    a minutes-long final evaluation on a big backbone is never silent and the log stays short.
    Called as ``on_batch(done, total)``.
    """

    def __init__(self, emit, task: str, step: int, final: bool = False, interval_s: float = 1.0):
        self.emit, self.task, self.step, self.final = emit, task, step, final
        self.interval_s = interval_s
        self._last = time.monotonic()
        self._send(0, None)

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done >= total or now - self._last >= self.interval_s:
            self._last = now
            self._send(done, total)

    def _send(self, done: int, total: int | None) -> None:
        self.emit("progress", task=self.task, step=self.step, done=done, total=total, final=self.final)


class RunEvents:
    """Mixed into :class:`femb.training.loop.Trainer`: what the run says to its sinks, from its start
    event to its end event (after the last saves of a completed run). Uses the trainer's sinks,
    validation, runtime and run directory."""

    def emit(self, kind: str, /, **fields: Any) -> Event:
        event = make_event(kind, **fields)
        for sink in self.sinks:
            sink(event)
        return event

    def log(self, message: str, level: str = "info") -> None:
        self.emit("log", level=level, message=message)

    def _start_event(self) -> None:
        for note in self._notes:
            self.log(note, "warning")
        self.emit("start", **start_fields(self))

    def _read_validation_images(self) -> None:
        """Before the first step: a damaged validation image stops the run before any training."""
        if self.runtime.is_primary and self.validation.unread_images():
            on_image = TaskProgress(self.emit, "validation images", self.step)
            self.validation.read_images(on_image)

    def _step_event(self, loss_value: float, embeddings: torch.Tensor) -> None:
        fields = step_fields(self, loss_value, embeddings)
        self.history.append({"event": "step", "step": self.step, "loss": loss_value, "lr": fields["lr"]})
        self.emit("step", **fields)

    def _finish(self, reason: str, message: str) -> None:
        try:
            if self.run_dir is not None and reason == "completed" and self.runtime.is_primary:
                self.model.save(self.run_dir.final_backbone, include_header=False)
            if self._wants_projector and reason == "completed":
                on_batch = TaskProgress(self.emit, "projector", self.step, final=True)
                self._projected = self.validation.projector_sample(on_batch=on_batch)
            if reason == "nonfinite":
                self.log(message, "error")
            skipped = skipped_images_note(self.train_dataset)  # workers' finds included (shared)
            if skipped and self.runtime.is_primary:
                self.log(skipped, "warning")
            self.emit("end", **end_fields(self, reason, message))
        finally:
            for close in self._closers:
                close()
            if self.lock is not None:
                self.lock.release()
