"""Every option of ``fit``, typed and declared once.

``FaceEmbeddingModel.fit`` (the seed README's signature, whose first eleven arguments may be
given by position), :class:`femb.training.config.TrainConfig` and the command line all build a
:class:`FitOptions`; the :class:`~femb.training.loop.Trainer` reads nothing else.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from femb.training.control import TrainingControl
from femb.training.events import EventSink

# The seed README's positional order after (model, train_dataset).
SEED_POSITIONAL = (
    "batch_size",
    "device",
    "optimizer",
    "lr_epoch_scheduler",
    "lr_global_step_scheduler",
    "evaluator",
    "val_dataset",
    "evaluation_steps",
    "max_training_steps",
    "max_epochs",
    "tensorboard",
)


@dataclass
class FitOptions:
    """What ``fit`` takes besides the model and the training set (0 means "unused" for limits)."""

    # --- the original femb API ---
    batch_size: int = 32
    device: str | torch.device = "auto"
    optimizer: torch.optim.Optimizer | None = None  # default: SGD(lr 0.1, momentum 0.9, wd 5e-4)
    lr_epoch_scheduler: Any = None
    lr_global_step_scheduler: Any = None
    evaluator: Any = None
    val_dataset: Any = None
    evaluation_steps: int = 0  # with an evaluator: every N steps and at the end; 0: only at the end
    max_training_steps: int = 0
    max_epochs: int = 0
    tensorboard: bool = False
    # --- additions ---
    num_workers: int = 0  # DataLoader worker processes
    callbacks: Sequence[EventSink] = ()  # event sinks, called in the loop's thread
    run_dir: str | os.PathLike | Any = None  # a path or RunDir; created under runs/ when needed
    run_name: str | None = None
    checkpoint_every: int = 0  # steps between checkpoints/last.pt
    amp: str | bool | None = None  # 'bf16' | 'fp16' | 'auto' | None
    grad_clip: float = 0.0  # max gradient norm (0: off)
    seed: int | None = 0
    control: TrainingControl | None = None  # stop / pause / checkpoint / evaluate requests
    resume: str | os.PathLike | dict | None = None  # checkpoint, run directory or loaded checkpoint
    log_every: int | None = None  # steps between step events (default: 1 on CPU, 10 on GPU)
    skip_nonfinite: bool = False  # skip a step whose loss is not finite instead of stopping
    config: dict | None = None  # saved in the run and in checkpoints
    eval_batch_size: int | None = None
    overwrite: bool = False  # allow a run directory that already holds a run (never the default)
    sample_rate: float = 1.0  # Partial FC: the share of each rank's class centres used per step
    freeze_backbone_steps: int = 0  # train only the head for the first N steps (fine-tuning)

    @classmethod
    def from_call(cls, args: tuple, kwargs: dict[str, Any], base: FitOptions | None = None) -> FitOptions:
        """Options from ``fit``'s positional (seed order) and keyword arguments over ``base``."""
        if len(args) > len(SEED_POSITIONAL):
            raise TypeError(f"fit takes at most {len(SEED_POSITIONAL)} positional options, got {len(args)}")
        given = dict(zip(SEED_POSITIONAL, args, strict=False))
        for key, value in kwargs.items():
            if key in given:
                raise TypeError(f"fit got multiple values for {key!r}")
            given[key] = value
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(given) - known)
        if unknown:
            raise TypeError(
                f"fit got an unexpected option {unknown[0]!r}; options: {', '.join(sorted(known))}"
            )
        options = dataclasses.replace(base, **given) if base is not None else cls(**given)
        options.validate()
        return options

    def validate(self) -> None:
        """One clear error for options that cannot work, before anything is built."""
        _positive_int("batch_size", self.batch_size)
        for name in (
            "evaluation_steps",
            "max_training_steps",
            "max_epochs",
            "num_workers",
            "checkpoint_every",
        ):
            _non_negative_int(name, getattr(self, name))
        if not self.max_training_steps and not self.max_epochs:
            raise ValueError("set max_training_steps or max_epochs (0 means unused; both are 0)")
        _non_negative_int("freeze_backbone_steps", self.freeze_backbone_steps)
        if not isinstance(self.sample_rate, (int, float)) or not 0.0 < self.sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be in (0, 1], got {self.sample_rate!r}")
        if self.log_every is not None:
            _positive_int("log_every", self.log_every)
        if self.eval_batch_size is not None:
            _positive_int("eval_batch_size", self.eval_batch_size)
        if (
            not isinstance(self.grad_clip, (int, float))
            or not math.isfinite(self.grad_clip)
            or self.grad_clip < 0
        ):
            raise ValueError(f"grad_clip must be a finite number ≥ 0, got {self.grad_clip!r}")
        if self.evaluator is not None and self.val_dataset is None:
            raise ValueError("an evaluator was given without val_dataset")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise ValueError(f"seed must be an integer or None, got {self.seed!r}")
        if isinstance(self.run_dir, (str, Path)) and str(self.run_dir) == "":
            raise ValueError("run_dir is an empty string")


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _non_negative_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer ≥ 0, got {value!r}")


def fit_signature(leading: Sequence[str]) -> inspect.Signature:
    """``fit``'s signature as help() shows it, generated from :class:`FitOptions`."""
    parameters = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in leading]
    for f in fields(FitOptions):
        kind = (
            inspect.Parameter.POSITIONAL_OR_KEYWORD
            if f.name in SEED_POSITIONAL
            else inspect.Parameter.KEYWORD_ONLY
        )
        parameters.append(inspect.Parameter(f.name, kind, default=f.default))
    return inspect.Signature(parameters)
