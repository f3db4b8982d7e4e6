"""The fields of a run's ``start``, ``step`` and ``end`` events (see :mod:`femb.training.events`)."""

from __future__ import annotations

import torch


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
        "batch_size": trainer.options.batch_size,
        "world_size": trainer.runtime.world_size,
    }


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
    """How the run ended; a resume command only when a checkpoint to resume from exists."""
    run_dir = trainer.run_dir
    resumable = trainer.checkpointer.has_resumable
    if reason not in ("completed", "nonfinite") and run_dir is not None and not resumable:
        message += "; no checkpoint was written, so there is nothing to resume"
    return {
        "step": trainer.step,
        "reason": reason,
        "message": message,
        "resume_command": f"femb train --resume {run_dir.path}"
        if run_dir and reason != "completed" and resumable
        else None,
        "best_accuracy": trainer.progress.best_accuracy,
    }
