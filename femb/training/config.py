"""The training configuration: one record, saved as ``config.toml`` in every run directory.

Command line, config files and resume all go through ``TrainConfig.from_dict`` so an unknown or
ill-typed key gets one error naming it.

The head's hyper-parameters are whatever the head declares (:mod:`femb.headers.options`); they
live in one ``head_options`` table, so this file names no head and no head option. A config file
may give them in either of two shapes, and files written before the table existed still read::

    head = "arcface"            # what config.toml holds
    [head_options]
    s = 30.0

    [head]                      # the same, as one table
    name = "arcface"
    s = 30.0

    head = "arcface"            # old runs: the head's options as top-level keys
    s = 30.0
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from dataclasses import dataclass, fields
from typing import Any

from femb.data.recordio_dataset import ON_BAD_IMAGE_CHOICES
from femb.headers import head_options, list_headers, parse_head_options
from femb.training.options import FitOptions

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
    on_bad_image: str = "skip"  # an unreadable training image: "skip" (counted, warned) or "error"
    augment: bool = False  # FaceAugment on the training images (shift, zoom, flip, jitter, blur)
    # model
    backbone: str = "mobilefacenet_fast"
    embed_dim: int = 128
    head: str = "arcface"
    init_backbone: str | None = None  # start from these weights (arcface_torch, MagFace or femb)
    freeze_backbone_steps: int = 0  # fine-tuning: train only the fresh head for the first N steps
    backbone_lr_scale: float = 1.0  # the backbone's learning rate relative to the head's
    sample_rate: float = 1.0  # Partial FC: the share of each process's class centres used per step
    # The options that were set, typed; the head's own declared defaults fill the rest.
    head_options: dict[str, Any] = dataclasses.field(default_factory=dict)
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

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> TrainConfig:
        """Check every value against its field's type (``lr = "0.1"`` and ``skip_nonfinite = "no"``
        are errors, an int for a float is fine), then :meth:`validate`; one ``ValueError`` naming
        ``source`` and the option for anything wrong."""
        if not isinstance(values, dict):
            raise ValueError(f"{source}: expected a table of options, got {type(values).__name__}")
        known = {f.name: f for f in fields(cls)}
        values = normalize_head_table(values, set(known), source)
        unknown = sorted(set(values) - set(known), key=str)
        if unknown:
            if unknown[0] in _all_head_option_names():  # not one of this head's: name the head's own
                _check_head_options(values.get("head", known["head"].default), {unknown[0]: None}, source)
            raise ValueError(f"{source}: unknown option {unknown[0]!r}; known: {', '.join(sorted(known))}")
        types = _field_types(cls)
        checked = {
            key: _check_type(key, value, types[key], source)
            for key, value in values.items()
            if key != "head_options" and (value is not None or known[key].default is None)
        }
        if "head_options" in values:
            checked["head_options"] = _check_head_options(
                checked.get("head", known["head"].default), values["head_options"], source
            )
        config = cls(**checked)
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
        choice("on_bad_image", ON_BAD_IMAGE_CHOICES)
        choice("head", tuple(list_headers()))  # the registry, so a registered head is accepted
        for name in ("batch_size", "embed_dim"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{source}: {name} must be positive, got {getattr(self, name)}")
        for name in ("steps", "epochs", "warmup_steps", "eval_every", "checkpoint_every", "workers"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{source}: {name} must be zero or positive, got {getattr(self, name)}")
        if not math.isfinite(self.lr) or self.lr <= 0:
            raise ValueError(f"{source}: lr must be a finite number > 0, got {self.lr}")
        if not 0.0 < self.sample_rate <= 1.0:
            raise ValueError(f"{source}: sample_rate must be in (0, 1], got {self.sample_rate}")
        if not math.isfinite(self.backbone_lr_scale) or self.backbone_lr_scale < 0:
            raise ValueError(
                f"{source}: backbone_lr_scale must be a finite number ≥ 0, got {self.backbone_lr_scale}"
            )
        if self.freeze_backbone_steps < 0:
            raise ValueError(f"{source}: freeze_backbone_steps must be ≥ 0, got {self.freeze_backbone_steps}")
        if not isinstance(self.head_options, dict):
            kind = type(self.head_options).__name__
            raise ValueError(f"{source}: head_options must be a table, got {kind}")
        try:  # range-checked by the head's own declarations (s = -1, m = 10 are refused)
            self.head_options = parse_head_options(self.head, self.head_options)
        except ValueError as error:
            raise ValueError(f"{source}: {error}") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fit_options(self, **built: Any) -> FitOptions:
        """The :class:`FitOptions` of this recipe; ``built`` holds the objects built from it
        (optimizer, scheduler, evaluator, datasets, run directory, sinks)."""
        return FitOptions(
            batch_size=self.batch_size,
            device=self.device,
            evaluation_steps=self.eval_every,
            num_workers=self.workers,
            checkpoint_every=self.checkpoint_every,
            amp=self.amp,
            grad_clip=self.grad_clip,
            seed=self.seed,
            skip_nonfinite=self.skip_nonfinite,
            sample_rate=self.sample_rate,
            freeze_backbone_steps=self.freeze_backbone_steps,
            config=self.to_dict(),
            **built,
        )


def normalize_head_table(values: dict[str, Any], known: set[str], source: str = "config") -> dict[str, Any]:
    """``values`` with the head in its stored shape: ``head`` a name and ``head_options`` a table.

    Accepts a ``[head]`` table (``name`` and the options) and, from config files of older femb
    versions, the head's options as top-level keys (only those the named head declares; any other
    key is left for :meth:`TrainConfig.from_dict` to refuse). Types are checked later.
    """
    values = dict(values)
    options: dict[str, Any] = {}
    head = values.get("head")
    if isinstance(head, dict):
        table = dict(head)
        if "name" not in table:
            raise ValueError(f'{source}: the [head] table needs a name, e.g. name = "arcface"')
        values["head"] = head = table.pop("name")
        options.update(table)
    if not isinstance(head, str) and head is not None:
        return values  # refused by the type check, with its usual message
    name = TrainConfig.head if head is None else head
    if name in list_headers():
        declared = {option.name for option in head_options(name)}
        for key in [key for key in values if key not in known and key in declared]:
            options[key] = values.pop(key)
    if options:
        given = values.get("head_options", {})
        if not isinstance(given, dict):
            raise ValueError(f"{source}: head_options must be a table, got {type(given).__name__}")
        values["head_options"] = {**options, **given}
    return values


def _check_head_options(head: Any, values: Any, source: str) -> dict[str, Any]:
    """``values`` typed as head ``head`` declares them, strictly (a file's ``s = "64"`` is an error)."""
    if not isinstance(values, dict):
        raise ValueError(f"{source}: head_options must be a table, got {type(values).__name__}")
    if not isinstance(head, str) or head not in list_headers():
        raise ValueError(f"{source}: head={head!r} is not one of {', '.join(list_headers())}")
    declared = {option.name: option for option in head_options(head)}
    typed = {}
    for key, value in values.items():
        if key in declared and value is not None:
            value = _check_type(key, value, declared[key].type, source)
        typed[key] = value
    try:
        return parse_head_options(head, typed)  # unknown options and ranges
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from None


def _all_head_option_names() -> frozenset[str]:
    return frozenset(option.name for name in list_headers() for option in head_options(name))


_TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _check_type(name: str, value: Any, annotation: Any, source: str) -> Any:
    """``value`` as field ``name`` of type ``annotation`` holds it, or a ``ValueError``.

    Strict: a bool is no number and ``"no"`` no bool; an int is accepted for a float (TOML writes
    ``lr = 1``) and converted; a float for an int only when it is whole (``steps = 100.0``)."""
    options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    if value is None and type(None) in options:
        return None
    for option in options:
        if option is type(None):
            continue
        converted = _convert(value, option)
        if converted is not _WRONG:
            return converted
    wanted = " or ".join(_describe(option) for option in options if option is not type(None))
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    raise ValueError(f"{source}: {name} must be {wanted}, got {shown} ({type(value).__name__})")


_WRONG = object()


def _convert(value: Any, annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is list:
        (item,) = typing.get_args(annotation) or (Any,)
        if not isinstance(value, list):
            return _WRONG
        items = [_convert(v, item) for v in value]
        return _WRONG if any(v is _WRONG for v in items) else items
    if annotation is bool:
        return value if isinstance(value, bool) else _WRONG
    if isinstance(value, bool):
        return _WRONG
    if annotation is int:
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return _WRONG
    if annotation is float:
        return float(value) if isinstance(value, (int, float)) else _WRONG
    if annotation is str:
        return value if isinstance(value, str) else _WRONG
    return value  # a type this checker does not know: left to validate()


def _describe(annotation: Any) -> str:
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation) or (Any,)
        return f"a list of {_TYPE_WORDS.get(item, 'values').removeprefix('an ').removeprefix('a ')}s"
    return _TYPE_WORDS.get(annotation, getattr(annotation, "__name__", str(annotation)))
