"""From a TrainConfig to a running fit: datasets, model, optimizer, scheduler, run directory.

Shared by ``femb train``, ``femb train --resume``, ``femb demo`` and the tests, so that a resumed
run is rebuilt exactly as it was started.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable
from pathlib import Path

import torch

from femb.backbones import build_backbone
from femb.headers import build_header, header_class
from femb.model import FaceEmbeddingModel
from femb.training.config import TrainConfig
from femb.training.control import TrainingControl
from femb.training.events import EventSink
from femb.training.loop import FitResult, fit
from femb.training.run_dir import RunDir, RunLock, new_run_dir

DEFAULT_STEPS = 1000
SYNTHETIC_VAL_IDENTITIES = 100


def build_datasets(config: TrainConfig):
    """(train dataset, validation dataset) for ``config.data`` and ``config.val``."""
    from femb.data import ImageFolderDataset, PairsDataset, SyntheticFaces, load_verification_bin

    spec = config.data
    if spec == "synthetic" or spec.startswith("synthetic:"):
        identities = _synthetic_count(spec, "--data")
        train = SyntheticFaces(
            num_identities=identities,
            images_per_identity=config.images_per_identity,
            seed=config.seed,
            train=True,
        )
        val_default = lambda: SyntheticFaces(  # noqa: E731 - built only when no --val is given
            num_identities=SYNTHETIC_VAL_IDENTITIES,
            images_per_identity=10,
            seed=config.seed,
            identity_offset=identities,
        )
    else:
        root = Path(spec)
        if not root.is_dir():
            raise ValueError(f"--data {spec}: not a folder (expected an image folder or synthetic[:N])")
        train = ImageFolderDataset(root, train=True)
        val_default = None
    if config.val is None:
        val = val_default() if val_default is not None else None
    elif config.val.startswith("synthetic"):
        val = SyntheticFaces(
            num_identities=_synthetic_count(config.val, "--val"),
            images_per_identity=10,
            seed=config.seed,
            identity_offset=getattr(train, "num_classes", 0),
        )
    else:
        path = Path(config.val)
        if path.suffix == ".bin" and path.is_file():
            val = load_verification_bin(path)
        elif path.is_dir():
            val = ImageFolderDataset(path)
        else:
            raise ValueError(f"--val {config.val}: not a .bin pairs file or an image folder")
    if val is not None and not isinstance(val, PairsDataset) and len(val) < 2:
        raise ValueError(f"--val {config.val}: needs at least two images")
    return train, val


def _synthetic_count(spec: str, option: str) -> int:
    if spec == "synthetic":
        return 200
    try:
        count = int(spec.split(":", 1)[1])
    except ValueError:
        raise ValueError(f"{option} {spec}: expected synthetic or synthetic:N_IDENTITIES") from None
    if count < 2:
        raise ValueError(f"{option} {spec}: needs at least 2 identities")
    return count


def build_model(config: TrainConfig, num_classes: int) -> FaceEmbeddingModel:
    backbone = build_backbone(config.backbone, embed_dim=config.embed_dim)
    head_kwargs = config.head_kwargs()
    accepted = _header_options(config.head)
    for name in head_kwargs:
        if name not in accepted:
            raise ValueError(
                f"--{name.replace('_', '-')} is not an option of head {config.head!r} "
                f"(its options: {', '.join(sorted(accepted)) or 'none'})"
            )
    header = build_header(config.head, config.embed_dim, num_classes, **head_kwargs)
    return FaceEmbeddingModel(backbone, header, torch.nn.CrossEntropyLoss())


def _header_options(head: str) -> set[str]:
    parameters = inspect.signature(header_class(head).__init__).parameters
    return {name for name in parameters if name not in ("self", "in_features", "out_features")}


def build_optimizer(config: TrainConfig, model: FaceEmbeddingModel) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            model.params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    return torch.optim.AdamW(model.params, lr=config.lr, weight_decay=config.weight_decay)


class WarmupSchedule:
    """Linear warm-up, then cosine / multistep / poly decay; a picklable LambdaLR factor by step."""

    def __init__(
        self,
        kind: str,
        total_steps: int,
        warmup_steps: int,
        milestones: list[int],
        gamma: float,
        power: float,
    ):
        self.kind = kind
        self.total_steps = max(1, total_steps)
        self.warmup_steps = min(warmup_steps, self.total_steps // 2)
        self.milestones = sorted(milestones) or [int(self.total_steps * f) for f in (0.6, 0.8, 0.9)]
        self.gamma = gamma
        self.power = power

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, progress)
        if self.kind == "cosine":
            return 0.5 * (1 + math.cos(math.pi * progress))
        if self.kind == "poly":
            return (1 - progress) ** self.power
        if self.kind == "multistep":
            return self.gamma ** sum(step >= milestone for milestone in self.milestones)
        return 1.0


def total_steps(config: TrainConfig, steps_per_epoch: int) -> int:
    limits = [config.steps] if config.steps else []
    if config.epochs:
        limits.append(config.epochs * steps_per_epoch)
    return min(limits) if limits else DEFAULT_STEPS


def prepare_run_dir(config: TrainConfig, overwrite: bool = False) -> RunDir:
    """The new run's directory; one that already holds a run is refused unless ``overwrite``."""
    if config.run_dir:
        folder = RunDir(Path(config.run_dir))
        if not overwrite:
            folder.refuse_existing_run()
        with RunLock(folder.create()):  # refused at once when another process owns it
            return folder
    name = config.name or f"{config.backbone}-{config.head}"
    return new_run_dir(name)


def train(
    config: TrainConfig,
    *,
    callbacks: Iterable[EventSink] = (),
    control: TrainingControl | None = None,
    run_dir: RunDir | None = None,
    resume: bool = False,
    datasets=None,
    tensorboard: bool = True,
    overwrite: bool = False,
) -> FitResult:
    """Build everything from ``config`` and fit; ``resume=True`` continues ``run_dir``'s last checkpoint."""
    from femb.evaluation import VerificationEvaluator

    train_set, val_set = datasets if datasets is not None else build_datasets(config)
    if len(train_set) == 0:
        raise ValueError(f"--data {config.data}: no training images")
    torch.manual_seed(config.seed)  # the initial weights are part of the recipe: same seed, same run
    model = build_model(config, train_set.num_classes)
    optimizer = build_optimizer(config, model)
    steps_per_epoch = max(1, len(train_set) // config.batch_size)
    steps = total_steps(config, steps_per_epoch)
    schedule = WarmupSchedule(
        config.scheduler, steps, config.warmup_steps, config.milestones, config.gamma, config.power
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    run_dir = run_dir or prepare_run_dir(config, overwrite=overwrite)
    if not resume:
        config.run_dir = str(run_dir.path)
    evaluator = (
        VerificationEvaluator(similarity="cos", num_pairs=config.val_pairs, seed=config.seed)
        if val_set is not None
        else None
    )
    options = config.fit_options(
        optimizer=optimizer,
        lr_global_step_scheduler=scheduler,
        evaluator=evaluator,
        val_dataset=val_set,
        max_training_steps=steps,
        tensorboard=tensorboard,
        callbacks=callbacks,
        run_dir=run_dir,
        run_name=run_dir.name,
        control=control,
        resume=run_dir.last_checkpoint if resume else None,
        overwrite=overwrite,
    )
    return fit(model, train_set, options=options)


def load_run_config(run_dir: str | Path) -> tuple[TrainConfig, RunDir]:
    """The config a run was started with, for ``--resume``."""
    folder = RunDir(Path(run_dir))
    if not folder.path.is_dir():
        raise ValueError(f"--resume {run_dir}: no such run directory")
    if not folder.config_file.is_file():
        raise ValueError(f"--resume {run_dir}: no config.toml (not a femb run directory)")
    if not folder.last_checkpoint.is_file():
        raise ValueError(f"--resume {run_dir}: no checkpoints/last.pt to resume from")
    return TrainConfig.from_dict(folder.read_config(), source=str(folder.config_file)), folder
