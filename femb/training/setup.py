"""What a Trainer is built from: its data loader, its sinks, its run directory, its step limits."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from femb.training.config import DEFAULT_STEPS, TrainConfig
from femb.training.control import TrainingControl
from femb.training.events import EventSink
from femb.training.options import FitOptions
from femb.training.run_dir import RunDir, RunLock, new_run_dir
from femb.training.runtime import Runtime
from femb.training.sampler import EpochSampler


def build_loader(
    dataset, config: TrainConfig, runtime: Runtime, seed: int
) -> tuple[DataLoader, EpochSampler]:
    """This rank's loader over its slice of a seeded permutation; a ragged last batch is kept
    only when the slice is smaller than one batch (otherwise every step has the same size)."""
    sampler = runtime.sampler(len(dataset), seed)
    per_rank = len(sampler)
    if per_rank == 0:
        raise ValueError(
            f"the training set ({len(dataset)} images) is smaller than the number of processes "
            f"({runtime.world_size})"
        )
    loader = DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=sampler,
        drop_last=per_rank >= config.batch_size,
        num_workers=config.workers,
        pin_memory=runtime.device.type == "cuda",
        persistent_workers=False,
    )
    return loader, sampler


def limits(samples_per_rank: int, config: TrainConfig) -> tuple[int, int]:
    """(steps per epoch, total steps) of a fit."""
    return step_limits(samples_per_rank, config.batch_size, config.steps, config.epochs)


def build_optimizer(config: TrainConfig, model) -> torch.optim.Optimizer:
    """The config's optimizer over the model's groups; the backbone's rate scaled for fine-tuning."""
    groups = model.params
    for group in groups:  # fine-tuning: a pretrained backbone usually wants a smaller step
        if group["name"] == "backbone":
            group["lr"] = config.lr * config.backbone_lr_scale
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)


def step_limits(samples_per_rank: int, batch_size: int, max_steps: int, max_epochs: int) -> tuple[int, int]:
    """(steps per epoch, total steps): whichever of ``max_steps`` and ``max_epochs`` comes first.

    An epoch is one pass of *this rank's* slice of the data, so with several processes an epoch
    has 1/W of the steps; the recipe's learning-rate schedule and the loop count alike. Neither
    set: :data:`~femb.training.config.DEFAULT_STEPS`.
    """
    if not max_steps and not max_epochs:
        max_steps = DEFAULT_STEPS
    steps_per_epoch = max(1, samples_per_rank // batch_size)
    candidates = [max_steps] if max_steps else []
    if max_epochs:
        candidates.append(max_epochs * steps_per_epoch)
    return steps_per_epoch, min(candidates)


def claim_run_dir(
    config: TrainConfig, options: FitOptions, runtime: Runtime, control: TrainingControl
) -> tuple[RunDir | None, RunLock | None, list[str]]:
    """The run directory, owned by this process alone, and notes for the log.

    An earlier run in it is never overwritten (unless ``overwrite``); a stale control request
    left there by a dead process is discarded, not obeyed. Only rank 0 touches the folder.
    """
    if config.run_dir is None and options.tensorboard and runtime.is_primary:
        run_dir = new_run_dir(config.name or "fit")
    elif config.run_dir is None:
        return None, None, []
    else:
        run_dir = RunDir(Path(config.run_dir))
    if not runtime.is_primary:
        return run_dir, None, []
    run_dir.create()
    lock = RunLock(run_dir).acquire()
    try:
        if options.resume is None and run_dir.holds_run():
            if not options.overwrite:
                run_dir.refuse_existing_run()
            run_dir.clear_run()
        if options.resume is None and options.config:
            run_dir.write_config(options.config)
        stale = control.discard_requests(run_dir.control)
    except BaseException:
        lock.release()
        raise
    notes = [
        f"ignored a stale {name!r} request left in {run_dir.control} by an earlier process" for name in stale
    ]
    if lock.stale_owner:
        notes.append(f"took over the lock of process {lock.stale_owner}, which is no longer running")
    return run_dir, lock, notes


def wants_projector(run_dir: RunDir | None, options: FitOptions, runtime: Runtime) -> bool:
    """Whether the run's TensorBoard gets the embedding projector of validation images at the end."""
    primary_run = runtime.is_primary and run_dir is not None
    return primary_run and options.tensorboard and options.val_dataset is not None


def build_sinks(
    run_dir: RunDir | None, options: FitOptions, runtime: Runtime, projector
) -> tuple[list[EventSink], list]:
    """(sinks, closers): metrics.jsonl and TensorBoard on rank 0, then the caller's callbacks."""
    sinks: list[EventSink] = []
    closers: list = []
    if runtime.is_primary and run_dir is not None:
        from femb.training.sinks import JsonlSink

        jsonl = JsonlSink(run_dir.metrics_file)
        sinks.append(jsonl)
        closers.append(jsonl.close)
        if options.tensorboard:
            from femb.training.sinks.tensorboard import TensorBoardSink

            board = TensorBoardSink(
                run_dir.tensorboard, projector if wants_projector(run_dir, options, runtime) else None
            )
            sinks.append(board)
            closers.append(board.close)
    if runtime.is_primary:
        sinks.extend(options.callbacks)
    return sinks, closers


class ThroughputMeter:
    """Images per second over real images (a ragged last batch counts what it holds), all ranks.

    Time spent in :meth:`excluded` (evaluations, checkpoints, pauses) is not training time: it
    counts in neither the rate nor the ETA.
    """

    def __init__(self, step: int):
        self.smoothed: float | None = None
        self._depth = 0
        self.restart(step)

    def restart(self, step: int) -> None:
        self.tick, self.step_at_tick, self.images, self.excluded_s = time.perf_counter(), step, 0, 0.0

    def count(self, images: int) -> None:
        self.images += images

    @contextmanager
    def excluded(self):
        self._depth += 1  # a best checkpoint inside an evaluation is not taken off twice
        started = time.perf_counter()
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                self.excluded_s += time.perf_counter() - started

    def read(self, step: int, runtime: Runtime) -> tuple[float, float]:
        """(global images per second since the last read, smoothed steps per second)."""
        now = time.perf_counter()
        elapsed = max(now - self.tick - self.excluded_s, 1e-9)
        images = runtime.sum(self.images)
        steps_rate = (step - self.step_at_tick) / elapsed
        self.smoothed = steps_rate if self.smoothed is None else 0.7 * self.smoothed + 0.3 * steps_rate
        self.restart(step)
        return images / elapsed, self.smoothed


def recipe_description(model, config: TrainConfig, total_steps: int, num_images: int) -> dict:
    """What every rank must agree on; a rank started otherwise is refused before the first step."""
    from femb.headers import header_spec

    return {
        "head": header_spec(model.header) if model.header is not None else None,
        "backbone": getattr(model.backbone, "femb_spec", type(model.backbone).__name__),
        "train images": num_images,
        "seed": config.seed,
        "batch_size": config.batch_size,
        "total_steps": total_steps,
        "sample_rate": config.sample_rate,
    }
