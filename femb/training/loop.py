"""The training loop behind ``FaceEmbeddingModel.fit``.

One step: backbone forward (under autocast when asked), the head's margin logits and the loss
in fp32, backward, optional clipping, optimizer and scheduler steps. Between steps the loop
polls its control channel (stop, pause, checkpoint now, evaluate now) and emits events to its
sinks; nothing else reaches into it. Where the run executes is the :class:`Runtime`'s business,
what a checkpoint holds :mod:`femb.training.checkpointing`'s; the options are a
:class:`TrainConfig`, the objects it is given a :class:`FitOptions`. The only per-step host sync
is the loss value, read at log steps.
"""

from __future__ import annotations

import dataclasses
import gc
from dataclasses import dataclass, field
from pathlib import Path

import torch

from femb.backbones.registry import prefers_channels_last
from femb.errors import one_line
from femb.training import checkpointing
from femb.training.between_steps import BetweenSteps
from femb.training.checkpointing import Checkpointer, TrainingState
from femb.training.config import TrainConfig
from femb.training.control import TrainingControl
from femb.training.objective import Objective
from femb.training.options import FitOptions
from femb.training.reporting import RunEvents
from femb.training.runtime import TIMEOUT_ENV, PeerLostError, Runtime, is_collective_failure
from femb.training.setup import (
    ThroughputMeter,
    build_loader,
    build_optimizer,
    build_sinks,
    claim_run_dir,
    limits,
    recipe_description,
    wants_projector,
)
from femb.training.validation import Validation


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is left as it was."""


@dataclass
class FitResult:
    step: int
    epoch: int
    reason: str
    best_accuracy: float | None
    last_eval: dict | None
    run_dir: Path | None
    history: list[dict] = field(default_factory=list)


def fit(
    model, train_dataset, config: TrainConfig | None = None, options: FitOptions | None = None
) -> FitResult:
    """Train ``model`` until ``config.steps`` or ``config.epochs`` (whichever comes first; both 0:
    the schema's default length). ``FaceEmbeddingModel.fit`` takes the same as keywords."""
    config = config if config is not None else TrainConfig()
    config.validate()
    options = options if options is not None else FitOptions()
    options.validate()
    return Trainer(model, train_dataset, config, options).run()


class Trainer(BetweenSteps, RunEvents):
    """The loop, its control polling and its evaluation cadence; the parts are built in setup."""

    def __init__(self, model, train_dataset, config: TrainConfig, options: FitOptions):
        if model.header is None:
            raise ValueError("fit needs a header: this model has none (it was stripped for inference)")
        if train_dataset is None or len(train_dataset) == 0:
            raise ValueError("train_dataset is empty: there is nothing to train on")
        self.train_dataset = train_dataset
        self.model, self.settings, self.options = model, config, options
        self.runtime = runtime = Runtime.create(config.device, config.amp)
        self.device = runtime.device
        self.control = options.control or TrainingControl()
        eval_batch = config.eval_batch_size or max(config.batch_size, 64)
        if not config.eval_every:  # 0: no evaluation at all, not even at the end (nor the projector)
            options = dataclasses.replace(options, evaluator=None, val_dataset=None)
        self.model, self.options = model, options
        self.validation = Validation(
            options.evaluator, options.val_dataset, model, runtime, eval_batch, config.best_on
        )
        self.seed = 0 if config.seed is None else config.seed
        if config.seed is not None:
            checkpointing.seed_everything(config.seed)
        self.loader, self.sampler = build_loader(train_dataset, config, runtime, self.seed)
        self.steps_per_epoch, total_steps = limits(len(self.sampler), config)
        optimizer = options.optimizer or build_optimizer(config, model)
        self.state = TrainingState(
            optimizer, runtime.grad_scaler(), options.lr_global_step_scheduler, options.lr_epoch_scheduler
        )
        self.state.progress.total_steps = total_steps
        self.num_classes = model.num_classes
        runtime.same_everywhere(recipe_description(model, config, total_steps, len(train_dataset)))
        self.objective = Objective(model, optimizer, runtime, config.sample_rate, self.seed)
        self.run_dir, self.lock, self._notes = claim_run_dir(config, options, runtime, self.control)
        try:
            self.run_name = self.run_dir.name if self.run_dir else config.name
            self.config = dict(options.config or {})
            self.checkpointer = Checkpointer(self.run_dir, self.config, self.run_name, runtime.is_primary)
            if self.run_dir is not None and self.control.control_dir is None and runtime.is_primary:
                self.control.control_dir = self.run_dir.control
            self.sinks, self._closers = build_sinks(self.run_dir, options, runtime, lambda: self._projected)
            self._wants_projector = wants_projector(self.run_dir, options, runtime)
        except BaseException:
            if self.lock is not None:
                self.lock.release()
            raise
        self.history: list[dict] = []
        # Channels-last input and weights where measured faster for this backbone and device.
        self.memory_format = (
            torch.channels_last
            if prefers_channels_last(model.backbone, self.device.type)
            else torch.preserve_format
        )
        model.backbone.to(memory_format=self.memory_format)  # before DDP takes its parameters
        self.backbone = runtime.wrap(model.backbone)
        self.log_every = config.log_every or (1 if self.device.type == "cpu" else 10)
        self.meter = ThroughputMeter(0)
        self._evaluated_at: int | None = None
        self._projected = None  # the projector's sample, made before the end event

    @property
    def progress(self) -> checkpointing.Progress:
        return self.state.progress

    @property
    def step(self) -> int:
        return self.progress.step

    # ------------------------------------------------------------------ one step
    def train_step(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images = images.to(self.device, non_blocking=True, memory_format=self.memory_format)
        labels = labels.to(self.device, non_blocking=True)
        frozen = self.step < self.settings.freeze_backbone_steps
        with self.runtime.autocast(), torch.set_grad_enabled(not frozen):
            embeddings = self.backbone(images)
        loss = self.objective.loss(embeddings, labels)
        optimizer, scaler = self.state.optimizer, self.state.scaler
        optimizer.zero_grad(set_to_none=True)
        if self.settings.skip_nonfinite and self.runtime.any_rank(not bool(torch.isfinite(loss))):
            self.log(f"step {self.step + 1}: non-finite loss ({loss.item()}); step skipped", "warning")
            return loss.detach(), embeddings.detach()
        scaler.scale(loss * self.objective.backward_scale).backward()
        if self.settings.grad_clip:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.grad_clip)
        self.objective.optimizer_step(lambda: scaler.step(optimizer))
        scaler.update()
        if self.state.step_scheduler is not None:
            self.state.step_scheduler.step()
        return loss.detach(), embeddings.detach()

    def check_finite(self, loss: torch.Tensor) -> None:
        if self.settings.skip_nonfinite or not self.runtime.any_rank(not bool(torch.isfinite(loss))):
            return
        raise NonFiniteLossError(
            f"loss is {loss.item()} at step {self.step}; stopped: {self.checkpointer.kept_description()} "
            "(lower the learning rate, "
            "clip gradients, or skip such steps with skip_nonfinite)"
        )

    # ------------------------------------------------------------------ the run
    def run(self) -> FitResult:
        if self.options.resume is not None:
            source = checkpointing.load_resume_source(self.options.resume)
            checkpointing.restore(self.model, self.state, source, self.device, self.objective)
            self.checkpointer.note_resumed(source)
        self.model.to(self.device)
        self.model.train()
        restore_signals = self.control.install_signal_handlers()
        reason, message = "completed", "training finished"
        try:
            self._start_event()
            self._read_validation_images()
            reason, message = self._loop()
        except (NonFiniteLossError, checkpointing.NonFiniteStateError) as error:
            reason, message = "nonfinite", str(error)
        except KeyboardInterrupt:
            reason, message = "interrupted", "interrupted twice: stopped without a final checkpoint"
            raise
        except Exception as error:
            reason, message = "error", f"{type(error).__name__}: {error}"
            if self.runtime.distributed and is_collective_failure(error):
                raise PeerLostError(
                    f"rank {self.runtime.rank} of {self.runtime.world_size} lost its peers at step "
                    f"{self.step + 1} (another rank died, or hung past {TIMEOUT_ENV}): {one_line(error)}"
                ) from error
            raise
        finally:
            restore_signals()
            self._finish(reason, message)
        self._leave_together()
        progress = self.progress
        run_path = self.run_dir.path if self.run_dir else None
        return FitResult(
            progress.step,
            progress.epoch,
            reason,
            progress.best_accuracy,
            progress.last_eval,
            run_path,
            self.history,
        )

    def _leave_together(self) -> None:
        """Every rank leaves together: one that exits first would cut a peer's last collective.

        DDP holds the process group too; freed after ``destroy_process_group`` (when the Trainer
        goes), gloo's teardown then waited on a peer that had already exited: a worker hung at
        exit now and then. Dropping it first lets the group go while every rank is still here.
        """
        if self.backbone is not self.model.backbone:
            self.backbone = self.model.backbone
            gc.collect()  # DDP's hooks form reference cycles
        self.runtime.barrier()
        self.runtime.shutdown()

    def _loop(self) -> tuple[str, str]:
        progress, config = self.progress, self.settings
        self.meter = ThroughputMeter(self.step)
        while self.step < progress.total_steps:
            progress.epoch = self.step // self.steps_per_epoch
            self.sampler.set_epoch(progress.epoch, (self.step % self.steps_per_epoch) * config.batch_size)
            steps_before = self.step
            for images, labels in self._batches():
                if self._handle_requests():
                    self.save("last")
                    return self.control.stop_reason or "stopped", "stopped on request"
                loss, embeddings = self.train_step(images, labels)
                progress.step += 1
                self.meter.count(len(labels))
                self._after_step(loss, embeddings)
                if self.step >= progress.total_steps:
                    break
            if self.step == steps_before:
                raise RuntimeError("the data loader yielded no batch for a whole epoch")
            if self.step % self.steps_per_epoch == 0 and self.state.epoch_scheduler is not None:
                self.state.epoch_scheduler.step()
        progress.epoch = self.step // self.steps_per_epoch
        if self.validation.enabled and self._evaluated_at != self.step:
            self.evaluate(final=True)
        if self.checkpointer.last_saved_step != self.step:
            self.save("last")
        return "completed", f"finished {self.step} steps"

    def _after_step(self, loss: torch.Tensor, embeddings: torch.Tensor) -> None:
        """The cadence: step events, evaluation and checkpoints, never on spoilt weights."""
        step, config = self.step, self.settings
        evaluate_now = bool(config.eval_every) and step % config.eval_every == 0
        checkpoint_now = bool(config.checkpoint_every) and step % config.checkpoint_every == 0
        log_now = step % self.log_every == 0 or step == self.progress.total_steps
        if log_now or evaluate_now or checkpoint_now:
            self.check_finite(loss)
        if log_now:
            self._step_event(loss.item(), embeddings)
        if evaluate_now:
            self.evaluate()
        if checkpoint_now:
            self.save("last")

    def _batches(self):
        """The epoch's batches, with the global RNG seeded from (seed, step, rank) before each one.

        Augmentation in the main process and dropout then depend only on the step, so a run
        resumed mid-epoch draws exactly what the uninterrupted run drew (with ``num_workers=0``;
        workers keep their own generators, so there only the batch composition is exact).
        """
        iterator = iter(self.loader)  # creating it draws from the global RNG: do that first
        while True:
            torch.manual_seed(self.runtime.batch_seed(self.seed, self.step))
            try:
                yield next(iterator)
            except StopIteration:
                return
