"""The training configuration: one flat record, saved as ``config.toml`` in every run directory.

Command line, config files and resume all go through ``TrainConfig.from_dict`` so an unknown or
ill-typed key gets one error naming it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any

from femb.headers import list_headers

OPTIMIZERS = ("sgd", "adamw")
SCHEDULERS = ("cosine", "multistep", "poly", "constant")
AMP_MODES = ("none", "bf16", "fp16", "auto")


@dataclass
class TrainConfig:
    # data
    data: str = "synthetic:200"
    val: str | None = None  # None: held-out synthetic identities (or pairs from the training folder)
    val_pairs: int = 2000
    images_per_identity: int = 24  # synthetic data only
    # model
    backbone: str = "mobilefacenet_small"
    embed_dim: int = 128
    head: str = "arcface"
    s: float | None = None  # None: the head's own default
    m: float | None = None
    easy_margin: bool | None = None
    m1: float | None = None
    m2: float | None = None
    m3: float | None = None
    l_a: float | None = None
    u_a: float | None = None
    l_m: float | None = None
    u_m: float | None = None
    lambda_g: float | None = None
    # optimisation
    batch_size: int = 64
    steps: int = 0
    epochs: int = 0
    lr: float = 0.1
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    scheduler: str = "cosine"
    warmup_steps: int = 50
    milestones: list[int] = dataclasses.field(
        default_factory=list
    )  # multistep: fractions of the run if empty
    gamma: float = 0.1
    power: float = 2.0
    amp: str = "none"
    grad_clip: float = 0.0
    skip_nonfinite: bool = False
    # run
    eval_every: int = 50
    checkpoint_every: int = 100
    seed: int = 0
    device: str = "auto"
    workers: int = 0
    run_dir: str | None = None
    name: str | None = None

    HEAD_OPTIONS = ("s", "m", "easy_margin", "m1", "m2", "m3", "l_a", "u_a", "l_m", "u_m", "lambda_g")

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> TrainConfig:
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"{source}: unknown option {unknown[0]!r}; known: {', '.join(sorted(known))}")
        config = cls(**{k: v for k, v in values.items() if v is not None or known[k].default is None})
        config.validate(source)
        return config

    def validate(self, source: str = "config") -> None:
        def choice(name: str, choices: tuple[str, ...]) -> None:
            if getattr(self, name) not in choices:
                raise ValueError(
                    f"{source}: {name}={getattr(self, name)!r} is not one of {', '.join(choices)}"
                )

        choice("optimizer", OPTIMIZERS)
        choice("scheduler", SCHEDULERS)
        choice("amp", AMP_MODES)
        choice("head", tuple(list_headers()))  # the registry, so a registered head is accepted
        for name in ("batch_size", "embed_dim"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{source}: {name} must be positive, got {getattr(self, name)}")
        for name in ("steps", "epochs", "warmup_steps", "eval_every", "checkpoint_every", "workers"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{source}: {name} must be zero or positive, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"{source}: lr must be positive, got {self.lr}")

    def head_kwargs(self) -> dict[str, Any]:
        """The head options that were set; the head's own defaults fill the rest."""
        return {name: getattr(self, name) for name in self.HEAD_OPTIONS if getattr(self, name) is not None}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
