"""The training loop behind ``FaceEmbeddingModel.fit``.

One step: backbone forward (under autocast when asked), the header's margin logits and the loss
in fp32, backward, optional clipping, optimizer and scheduler steps. Between steps the loop
polls its control channel (stop, pause, checkpoint now, evaluate now) and emits events to its
sinks; nothing else reaches into it. The only per-step host sync is the loss value, read at log
steps (every step by default on the CPU, where it costs nothing).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from femb import checkpoint as ckpt
from femb.training.control import TrainingControl
from femb.training.devices import resolve_amp, resolve_device
from femb.training.events import Event, EventSink, JsonlSink, make_event
from femb.training.run_dir import RunDir, new_run_dir
from femb.training.sampler import EpochSampler


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
    model,
    train_dataset,
    batch_size: int = 32,
    device: str | torch.device = "auto",
    optimizer: torch.optim.Optimizer | None = None,
    lr_epoch_scheduler=None,
    lr_global_step_scheduler=None,
    evaluator=None,
    val_dataset=None,
    evaluation_steps: int = 0,
    max_training_steps: int = 0,
    max_epochs: int = 0,
    tensorboard: bool = False,
    *,
    num_workers: int = 0,
    callbacks: Iterable[EventSink] = (),
    run_dir: str | Path | RunDir | None = None,
    run_name: str | None = None,
    checkpoint_every: int = 0,
    amp: str | bool | None = None,
    grad_clip: float = 0.0,
    seed: int | None = 0,
    control: TrainingControl | None = None,
    resume: str | Path | dict | None = None,
    log_every: int | None = None,
    skip_nonfinite: bool = False,
    config: dict | None = None,
    eval_batch_size: int | None = None,
) -> FitResult:
    """Train ``model`` until ``max_training_steps`` or ``max_epochs`` (whichever comes first; 0 = unused).

    The first twelve arguments are the original femb API. Additions: ``num_workers`` (DataLoader
    workers), ``callbacks`` (event sinks), ``run_dir`` (metrics.jsonl, checkpoints, TensorBoard,
    final weights; created under ``runs/`` when TensorBoard or checkpoints need one),
    ``checkpoint_every`` (steps), ``amp`` ('bf16' | 'fp16' | 'auto' | None), ``grad_clip`` (max
    norm), ``seed``, ``control`` (a :class:`TrainingControl`; Ctrl-C/SIGTERM use it too),
    ``resume`` (a checkpoint path, run directory or loaded checkpoint), ``log_every`` (steps
    between step events), ``skip_nonfinite`` (skip a step whose loss is not finite instead of
    stopping), ``config`` (saved with the run and in checkpoints), ``eval_batch_size``.
    """
    trainer = Trainer(
        model,
        train_dataset,
        batch_size=batch_size,
        device=device,
        optimizer=optimizer,
        epoch_scheduler=lr_epoch_scheduler,
        step_scheduler=lr_global_step_scheduler,
        evaluator=evaluator,
        val_dataset=val_dataset,
        evaluation_steps=evaluation_steps,
        max_training_steps=max_training_steps,
        max_epochs=max_epochs,
        tensorboard=tensorboard,
        num_workers=num_workers,
        callbacks=callbacks,
        run_dir=run_dir,
        run_name=run_name,
        checkpoint_every=checkpoint_every,
        amp=amp,
        grad_clip=grad_clip,
        seed=seed,
        control=control,
        log_every=log_every,
        skip_nonfinite=skip_nonfinite,
        config=config,
        eval_batch_size=eval_batch_size,
    )
    if resume is not None:
        trainer.restore(resume if isinstance(resume, dict) else ckpt.load_checkpoint(resume, prefer="last"))
    return trainer.run()


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


class Trainer:
    def __init__(
        self,
        model,
        train_dataset,
        *,
        batch_size,
        device,
        optimizer,
        epoch_scheduler,
        step_scheduler,
        evaluator,
        val_dataset,
        evaluation_steps,
        max_training_steps,
        max_epochs,
        tensorboard,
        num_workers,
        callbacks,
        run_dir,
        run_name,
        checkpoint_every,
        amp,
        grad_clip,
        seed,
        control,
        log_every,
        skip_nonfinite,
        config,
        eval_batch_size,
    ):
        if model.header is None:
            raise ValueError("fit needs a header: this model has none (it was stripped for inference)")
        if train_dataset is None or len(train_dataset) == 0:
            raise ValueError("train_dataset is empty: there is nothing to train on")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if not max_training_steps and not max_epochs:
            raise ValueError("set max_training_steps or max_epochs (0 means unused; both are 0)")
        if evaluator is not None and val_dataset is None:
            raise ValueError("an evaluator was given without val_dataset")
        self.model = model
        self.device = resolve_device(device)
        self.amp_dtype = resolve_amp(amp, self.device)
        self.batch_size = batch_size
        self.optimizer = optimizer or torch.optim.SGD(model.params, lr=0.1, momentum=0.9, weight_decay=5e-4)
        self.epoch_scheduler = epoch_scheduler
        self.step_scheduler = step_scheduler
        self.evaluator = evaluator
        self.val_dataset = val_dataset
        self.evaluation_steps = evaluation_steps
        self.grad_clip = grad_clip
        self.skip_nonfinite = skip_nonfinite
        self.checkpoint_every = checkpoint_every
        self.eval_batch_size = eval_batch_size or max(batch_size, 64)
        self.log_every = log_every or (1 if self.device.type == "cpu" else 10)
        self.seed = 0 if seed is None else seed
        self.config = dict(config or {})
        self.control = control or TrainingControl()
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)

        if seed is not None:
            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)
            random.seed(seed)

        drop_last = len(train_dataset) >= batch_size
        self.sampler = EpochSampler(len(train_dataset), seed=self.seed)
        self.loader = DataLoader(
            train_dataset,
            batch_size=batch_size,
            sampler=self.sampler,
            drop_last=drop_last,
            num_workers=num_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
        )
        self.steps_per_epoch = len(train_dataset) // batch_size if drop_last else 1
        limits = [max_training_steps] if max_training_steps else []
        if max_epochs:
            limits.append(max_epochs * self.steps_per_epoch)
        self.total_steps = min(limits)

        if run_dir is None and (tensorboard or checkpoint_every):
            run_dir = new_run_dir(run_name or "fit")
        self.run_dir = (
            (run_dir if isinstance(run_dir, RunDir) else RunDir(Path(run_dir))).create() if run_dir else None
        )
        self.run_name = run_name or (self.run_dir.name if self.run_dir else None)
        if self.run_dir is not None and self.control.control_dir is None:
            self.control.control_dir = self.run_dir.control

        self.sinks: list[EventSink] = []
        self._closers: list[Callable[[], None]] = []
        if self.run_dir is not None:
            jsonl = JsonlSink(self.run_dir.metrics_file)
            self.sinks.append(jsonl)
            self._closers.append(jsonl.close)
        self.tensorboard = None
        if tensorboard:
            from femb.training.tensorboard_sink import TensorBoardSink

            self.tensorboard = TensorBoardSink(self.run_dir.tensorboard)
            self.sinks.append(self.tensorboard)
            self._closers.append(self.tensorboard.close)
        self.sinks.extend(callbacks)

        self.step = 0
        self.epoch = 0
        self.best_accuracy: float | None = None
        self.last_eval: dict | None = None
        self.history: list[dict] = []
        self._last_saved_step: int | None = None

    # ------------------------------------------------------------------ events
    def emit(self, kind: str, /, **fields: Any) -> Event:
        event = make_event(kind, **fields)
        for sink in self.sinks:
            sink(event)
        return event

    def log(self, message: str, level: str = "info") -> None:
        self.emit("log", level=level, message=message)

    # ------------------------------------------------------------------ checkpoints
    def training_state(self) -> dict:
        return {
            "step": self.step,
            "epoch": self.epoch,
            "optimizer": self.optimizer.state_dict(),
            "step_scheduler": self.step_scheduler.state_dict() if self.step_scheduler else None,
            "epoch_scheduler": self.epoch_scheduler.state_dict() if self.epoch_scheduler else None,
            "scaler": self.scaler.state_dict(),
            "rng": capture_rng_state(),
            "best_accuracy": self.best_accuracy,
            "last_eval": self.last_eval,
            "total_steps": self.total_steps,
        }

    def save(self, kind: str) -> Path | None:
        if self.run_dir is None:
            return None
        path = self.run_dir.best_checkpoint if kind == "best" else self.run_dir.last_checkpoint
        payload = self.model.checkpoint_payload(
            training=self.training_state(), config=self.config, run_name=self.run_name
        )
        ckpt.save_checkpoint(payload, path)
        if kind == "last":
            self._last_saved_step = self.step
        self.emit("checkpoint", step=self.step, path=str(path), kind=kind)
        return path

    def restore(self, payload: dict) -> None:
        """Continue from a checkpoint: weights, optimizer, schedulers, scaler, RNG, step."""
        state = payload.get("training")
        if not state:
            raise ValueError(f"{payload.get('path', 'checkpoint')}: has no training state to resume from")
        self.model.backbone.load_state_dict(payload["backbone"]["state_dict"])
        self.model.header.load_state_dict(payload["header"]["state_dict"])
        self.model.to(self.device)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.step_scheduler and state.get("step_scheduler"):
            self.step_scheduler.load_state_dict(state["step_scheduler"])
        if self.epoch_scheduler and state.get("epoch_scheduler"):
            self.epoch_scheduler.load_state_dict(state["epoch_scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        restore_rng_state(state["rng"])
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.best_accuracy = state.get("best_accuracy")
        self.last_eval = state.get("last_eval")

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def _embed(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True)
        with torch.autocast(
            self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None
        ):
            return self.model.backbone(images).float()

    def evaluate(self) -> dict | None:
        if self.evaluator is None:
            return None
        backbone = self.model.backbone
        backbone.eval()
        try:
            result = self.evaluator.evaluate(self._embed, self.val_dataset, batch_size=self.eval_batch_size)
        finally:
            backbone.train()
        metrics = result.to_dict()
        accuracy = metrics["accuracy"]
        is_best = self.best_accuracy is None or accuracy > self.best_accuracy
        if is_best:
            self.best_accuracy = accuracy
        self.last_eval = {**metrics, "step": self.step}
        self.history.append({"event": "eval", **self.last_eval})
        self.emit(
            "eval",
            step=self.step,
            epoch=self.epoch,
            **metrics,
            best_accuracy=self.best_accuracy,
            is_best=is_best,
        )
        if is_best:
            self.save("best")
        return metrics

    # ------------------------------------------------------------------ the loop
    def train_step(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images = images.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        with torch.autocast(
            self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None
        ):
            embeddings = self.model.backbone(images)
        loss = self.model.compute_loss(embeddings, labels)
        if self.skip_nonfinite and not torch.isfinite(loss):
            self.optimizer.zero_grad(set_to_none=True)
            self.log(f"step {self.step + 1}: non-finite loss ({loss.item()}); step skipped", "warning")
            return loss.detach(), embeddings.detach()
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.step_scheduler is not None:
            self.step_scheduler.step()
        return loss.detach(), embeddings.detach()

    def _handle_requests(self) -> bool:
        """Act on control requests between steps (waiting while paused); True means stop now."""
        self._act_on(self.control.poll())
        if self.control.paused and not self.control.stop_requested:
            self.emit("pause", paused=True, step=self.step)
            while self.control.paused and not self.control.stop_requested:
                time.sleep(0.05)
                self._act_on(self.control.poll())
            self.emit("pause", paused=False, step=self.step)
            self._tick = time.perf_counter()  # the pause is not training time
        return self.control.stop_requested

    def _act_on(self, requests) -> None:
        if requests.checkpoint:
            self.save("manual")
        if requests.evaluate:
            self.evaluate()

    def _start_event(self) -> None:
        num_parameters = sum(p.numel() for p in self.model.backbone.parameters())
        self.emit(
            "start",
            run_name=self.run_name,
            run_dir=str(self.run_dir.path) if self.run_dir else None,
            config=self.config,
            total_steps=self.total_steps,
            steps_per_epoch=self.steps_per_epoch,
            start_step=self.step,
            num_classes=self.model.num_classes,
            num_parameters=num_parameters,
            device=str(self.device),
            batch_size=self.batch_size,
        )

    def run(self) -> FitResult:
        self.model.to(self.device)
        self.model.train()
        restore_signals = self.control.install_signal_handlers()
        reason, message = "completed", "training finished"
        try:
            self._start_event()
            reason, message = self._loop()
        except NonFiniteLossError as error:
            reason, message = "nonfinite", str(error)
        except KeyboardInterrupt:
            reason, message = "interrupted", "interrupted twice: stopped without a final checkpoint"
            raise
        except Exception as error:
            reason, message = "error", f"{type(error).__name__}: {error}"
            raise
        finally:
            restore_signals()
            self._finish(reason, message)
        return FitResult(
            self.step,
            self.epoch,
            reason,
            self.best_accuracy,
            self.last_eval,
            self.run_dir.path if self.run_dir else None,
            self.history,
        )

    def _loop(self) -> tuple[str, str]:
        self._tick = time.perf_counter()
        steps_at_tick = self.step
        rate: float | None = None
        while self.step < self.total_steps:
            self.epoch = self.step // self.steps_per_epoch
            self.sampler.set_epoch(self.epoch, (self.step % self.steps_per_epoch) * self.batch_size)
            steps_before = self.step
            for images, labels in self._batches():
                if self._handle_requests():
                    self.save("last")
                    return self.control.stop_reason or "stopped", "stopped on request"
                loss, embeddings = self.train_step(images, labels)
                self.step += 1
                evaluate_now = bool(self.evaluation_steps) and self.step % self.evaluation_steps == 0
                checkpoint_now = bool(self.checkpoint_every) and self.step % self.checkpoint_every == 0
                log_now = self.step % self.log_every == 0 or self.step == self.total_steps
                if log_now or evaluate_now or checkpoint_now:
                    # Never evaluate or checkpoint weights that a non-finite step has spoilt.
                    self._check_finite(loss)
                if log_now:
                    now = time.perf_counter()
                    interval_rate = (self.step - steps_at_tick) / max(now - self._tick, 1e-9)
                    rate = interval_rate if rate is None else 0.7 * rate + 0.3 * interval_rate
                    self._tick, steps_at_tick = now, self.step
                    self._step_event(loss.item(), embeddings, interval_rate, rate)
                if evaluate_now:
                    self.evaluate()
                if checkpoint_now:
                    self.save("last")
                if self.step >= self.total_steps:
                    break
            if self.step == steps_before:
                raise RuntimeError("the data loader yielded no batch for a whole epoch")
            if self.step % self.steps_per_epoch == 0 and self.epoch_scheduler is not None:
                self.epoch_scheduler.step()
        self.epoch = self.step // self.steps_per_epoch
        if self.evaluator is not None and (not self.last_eval or self.last_eval.get("step") != self.step):
            self.evaluate()
        if self._last_saved_step != self.step:
            self.save("last")
        return "completed", f"finished {self.step} steps"

    def _batches(self):
        """The epoch's batches, with the global RNG seeded from (seed, step) before each one.

        Augmentation in the main process and dropout then depend only on the step, so a run
        resumed mid-epoch draws exactly what the uninterrupted run drew (with ``num_workers=0``;
        workers keep their own generators, so there only the batch composition is exact).
        """
        iterator = iter(self.loader)  # creating it draws from the global RNG: do that first
        while True:
            torch.manual_seed(self.seed * 1_000_003 + self.step)
            try:
                yield next(iterator)
            except StopIteration:
                return

    def _check_finite(self, loss: torch.Tensor) -> None:
        if not self.skip_nonfinite and not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"loss is {loss.item()} at step {self.step}; stopped with the last good checkpoint intact "
                "(lower the learning rate, clip gradients, or skip such steps with skip_nonfinite)"
            )

    def _step_event(
        self, loss_value: float, embeddings: torch.Tensor, interval_rate: float, rate: float
    ) -> None:
        norms = embeddings.float().norm(dim=1)
        lr = self.optimizer.param_groups[0]["lr"]
        fields: dict[str, Any] = {
            "step": self.step,
            "epoch": self.epoch,
            "loss": loss_value,
            "lr": lr,
            "images_per_s": interval_rate * self.batch_size,
            "eta_s": (self.total_steps - self.step) / rate if rate > 0 else None,
            "emb_norm_mean": norms.mean().item(),
            "emb_norm_std": norms.std().item() if norms.numel() > 1 else 0.0,
        }
        self.history.append({"event": "step", "step": self.step, "loss": loss_value, "lr": lr})
        self.emit("step", **fields)

    def _finish(self, reason: str, message: str) -> None:
        try:
            if self.run_dir is not None and reason == "completed":
                self.model.save(self.run_dir.final_backbone, include_header=False)
            if self.tensorboard is not None and self.val_dataset is not None and reason == "completed":
                self._projector()
            resume = (
                f"femb train --resume {self.run_dir.path}" if self.run_dir and reason != "completed" else None
            )
            if reason == "nonfinite":
                self.log(message, "error")
            self.emit(
                "end",
                step=self.step,
                reason=reason,
                message=message,
                resume_command=resume,
                best_accuracy=self.best_accuracy,
            )
        finally:
            for close in self._closers:
                close()

    def _projector(self, limit: int = 256) -> None:
        # A pairs set (a .bin) has unique images without identities; a labelled set has both.
        source = getattr(self.val_dataset, "images", self.val_dataset)
        items = [source[i] for i in range(min(limit, len(source)))]
        if not items:
            return
        labelled = isinstance(items[0], (tuple, list))
        images = torch.stack([item[0] if labelled else item for item in items])
        labels = [item[1] for item in items] if labelled else None
        self.model.backbone.eval()
        try:
            embeddings = torch.cat([self._embed(chunk).cpu() for chunk in images.split(self.eval_batch_size)])
        finally:
            self.model.backbone.train()
        self.tensorboard.add_embeddings(embeddings, labels, images, self.step)
