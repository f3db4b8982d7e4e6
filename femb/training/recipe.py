"""From a TrainConfig to a running fit: datasets, model, optimizer, scheduler, run directory.

Shared by the command line (a new run, a resumed one, the demo) and the tests, so that a resumed
run is rebuilt exactly as it was started.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from pathlib import Path

import torch

from femb.backbones import build_backbone
from femb.data.set_names import named_paths
from femb.headers import build_header, parse_head_options
from femb.model import FaceEmbeddingModel
from femb.training.config import DEFAULT_STEPS, TrainConfig
from femb.training.control import TrainingControl
from femb.training.events import EventSink
from femb.training.loop import FitResult, fit
from femb.training.memory import available_memory, check_model_memory, gib, model_bytes
from femb.training.options import FitOptions
from femb.training.run_dir import RunDir, RunLock, new_run_dir
from femb.training.runtime import launched_world_size
from femb.training.schema import ConfigError
from femb.training.setup import build_optimizer, step_limits
from femb.training.validation import DEFAULT_SET_NAME

__all__ = ["DEFAULT_STEPS", "build_optimizer", "train"]
SYNTHETIC_VAL_IDENTITIES = 100


def build_datasets(config: TrainConfig):
    """(train dataset, validation sets by name, or None) for ``config.data`` and ``config.val``."""
    from femb.data import SyntheticFaces, open_training_dataset

    spec = config.data
    if spec == "synthetic" or spec.startswith("synthetic:"):
        identities = _synthetic_count(spec, "data")
        # Before the set is built: its label list alone grows with identities × images.
        _check_synthetic_memory(config, identities, "data")
        train = SyntheticFaces(
            num_identities=identities,
            images_per_identity=config.images_per_identity,
            seed=config.seed,
            train=True,
        )
        val_default = lambda: SyntheticFaces(  # noqa: E731 - built only when no val is given
            num_identities=SYNTHETIC_VAL_IDENTITIES,
            images_per_identity=10,
            seed=config.seed,
            identity_offset=identities,
        )
    else:
        root = Path(spec)
        if not root.exists():
            raise ConfigError(
                "data",
                f"data {spec}: no such folder (expected an image folder, an InsightFace RecordIO folder "
                "or synthetic[:N])",
            )
        train = open_training_dataset(root, train=True, on_bad_image=config.on_bad_image)
        val_default = None
    if not config.val:
        val = {DEFAULT_SET_NAME: val_default()} if val_default is not None else None
    else:
        val = {name: _val_set(config, spec, train) for name, spec in named_paths(config.val).items()}
    check_model_memory(config.embed_dim, train.num_classes)  # the model too, before anything is written
    if config.augment:
        from femb.data.transforms import FaceAugment

        train.augment = FaceAugment()  # drawn from the seeded global generator: resume stays exact
    return train, val


def _val_set(config: TrainConfig, spec: str, train):
    """One validation set: synthetic:N held-out identities, a .bin pairs file or an image folder."""
    from femb.data import ImageFolderDataset, PairsDataset, SyntheticFaces, load_verification_bin

    if spec.startswith("synthetic"):
        val_identities = _synthetic_count(spec, "val")
        _check_synthetic_memory(config, val_identities, "val", images_per_identity=10)
        val = SyntheticFaces(
            num_identities=val_identities,
            images_per_identity=10,
            seed=config.seed,
            identity_offset=getattr(train, "num_classes", 0),
        )
    else:
        path = Path(spec)
        if path.suffix == ".bin" and path.is_file():
            val = load_verification_bin(path)
        elif path.is_dir():
            val = ImageFolderDataset(path)
        else:
            raise ConfigError("val", f"val {spec}: not a .bin pairs file or an image folder")
    if not isinstance(val, PairsDataset) and len(val) < 2:
        raise ConfigError("val", f"val {spec}: needs at least two images")
    return val


def _check_synthetic_memory(
    config: TrainConfig, identities: int, field: str, images_per_identity: int | None = None
) -> None:
    """A synthetic set of ``identities`` (its label list) and, for training, its head must fit."""
    per_identity = config.images_per_identity if images_per_identity is None else images_per_identity
    needed = identities * (SYNTHETIC_BYTES_PER_IDENTITY + max(0, per_identity) * SYNTHETIC_BYTES_PER_IMAGE)
    if images_per_identity is None:  # the training set: the model (its head) comes with it
        needed += model_bytes(identities, config.embed_dim)[1]
    available = available_memory()
    if available is not None and needed > available:
        raise ConfigError(
            field,
            f"{field} synthetic:{identities}: {identities:,} identities need at least {gib(needed)} "
            f"of memory; only {gib(available)} is available: use fewer identities"
            + (" or a smaller embed_dim" if images_per_identity is None else ""),
        )


def _synthetic_count(spec: str, field: str) -> int:
    if spec == "synthetic":
        return 200
    try:
        count = int(spec.split(":", 1)[1])
    except ValueError:
        raise ConfigError(field, f"{field} {spec}: expected synthetic or synthetic:N_IDENTITIES") from None
    if count < 2:
        raise ConfigError(field, f"{field} {spec}: needs at least 2 identities")
    return count


def build_model(config: TrainConfig, num_classes: int) -> FaceEmbeddingModel:
    # Range-checked by the head's own option declarations (s = -1, m = 10 are refused).
    try:
        head_kwargs = parse_head_options(config.head, config.head_options)
    except ValueError as error:
        raise ConfigError("head_options", str(error)) from None
    check_model_memory(config.embed_dim, num_classes)  # before a single byte of the model is allocated
    backbone = build_backbone(config.backbone, embed_dim=config.embed_dim, weights=config.init_backbone)
    header = build_header(config.head, config.embed_dim, num_classes, **head_kwargs)
    return FaceEmbeddingModel(backbone, header, torch.nn.CrossEntropyLoss())


# A synthetic identity costs its name in ``classes``; each of its images a ``labels`` entry.
SYNTHETIC_BYTES_PER_IDENTITY, SYNTHETIC_BYTES_PER_IMAGE = 80, 40


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


def total_steps(config: TrainConfig, num_images: int) -> int:
    """The run's length for its learning-rate schedule, counted as the loop counts it."""
    samples_per_rank = num_images // launched_world_size()
    return step_limits(samples_per_rank, config.batch_size, config.steps, config.epochs)[1]


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
        raise ConfigError("data", f"data {config.data}: no training images")
    torch.manual_seed(config.seed)  # the initial weights are part of the recipe: same seed, same run
    model = build_model(config, train_set.num_classes)
    optimizer = build_optimizer(config, model)
    steps = total_steps(config, len(train_set))
    schedule = WarmupSchedule(
        config.scheduler, steps, config.warmup_steps, config.milestones, config.gamma, config.power
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    run_dir = run_dir or prepare_run_dir(config, overwrite=overwrite)
    config.run_dir = str(run_dir.path)  # where it is now, should a resumed run have moved
    evaluator = (
        VerificationEvaluator(similarity="cos", num_pairs=config.val_pairs, seed=config.seed)
        if val_set is not None
        else None
    )
    options = FitOptions(
        optimizer=optimizer,
        lr_global_step_scheduler=scheduler,
        evaluator=evaluator,
        val_dataset=val_set,
        tensorboard=tensorboard,
        callbacks=callbacks,
        control=control,
        resume=run_dir.last_checkpoint if resume else None,
        overwrite=overwrite,
        config=config.to_dict(),
    )
    return fit(model, train_set, dataclasses.replace(config, steps=steps, epochs=0), options)


def load_run_config(run_dir: str | Path) -> tuple[TrainConfig, RunDir]:
    """The config a run was started with, to resume it."""
    folder = RunDir(Path(run_dir))
    if not folder.path.is_dir():
        raise ValueError(f"{run_dir}: no such run directory")
    if not folder.config_file.is_file():
        raise ValueError(f"{run_dir}: no config.toml (not a femb run directory)")
    if not folder.last_checkpoint.is_file():
        raise ValueError(f"{run_dir}: no checkpoints/last.pt to resume from")
    return TrainConfig.from_dict(folder.read_config(), source=str(folder.config_file)), folder
