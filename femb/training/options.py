"""What ``fit`` is given besides its configuration: built objects, hooks, control, resume.

Every training option is a field of :class:`femb.training.config.TrainConfig` (the schema);
:class:`FitOptions` holds only what is not configuration. ``FaceEmbeddingModel.fit`` keeps the
seed API's positional order and keyword names (:data:`SEED_ALIASES`); nowhere else knows them.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch

from femb.training.config import TrainConfig, schema
from femb.training.control import TrainingControl
from femb.training.events import EventSink
from femb.training.schema import ConfigError

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
# The seed API's keyword names → the schema's.
SEED_ALIASES = {
    "evaluation_steps": "eval_every",
    "max_training_steps": "steps",
    "max_epochs": "epochs",
    "num_workers": "workers",
    "run_name": "name",
}


@dataclass
class FitOptions:
    """The objects a fit is given (built by the caller, or by the recipe from its config)."""

    optimizer: torch.optim.Optimizer | None = None  # default: the config's optimizer, lr, momentum...
    lr_epoch_scheduler: Any = None
    lr_global_step_scheduler: Any = None
    evaluator: Any = None
    val_dataset: Any = None
    tensorboard: bool = False
    callbacks: Sequence[EventSink] = ()  # event sinks, called in the loop's thread
    control: TrainingControl | None = None  # stop / pause / checkpoint / evaluate requests
    resume: str | os.PathLike | dict | None = None  # checkpoint, run directory or loaded checkpoint
    overwrite: bool = False  # allow a run directory that already holds a run (never the default)
    config: dict | None = None  # what the run directory and checkpoints record as its config

    def validate(self) -> None:
        if self.evaluator is not None and self.val_dataset is None:
            raise ValueError("an evaluator was given without val_dataset")


def split_fit_arguments(args: tuple, kwargs: dict[str, Any]) -> tuple[TrainConfig, FitOptions]:
    """``fit``'s positional (seed order) and keyword arguments as (config, objects); the seed
    API's names are accepted, and an error about a value names the keyword that was given."""
    if len(args) > len(SEED_POSITIONAL):
        raise TypeError(f"fit takes at most {len(SEED_POSITIONAL)} positional options, got {len(args)}")
    given = dict(zip(SEED_POSITIONAL, args, strict=False))
    for key, value in kwargs.items():
        if key in given:
            raise TypeError(f"fit got multiple values for {key!r}")
        given[key] = value
    settings, objects, spelled = {}, {}, {}
    parts = {f.name for f in fields(FitOptions)}
    loop_fields = {f.name for f, spec, _ in schema() if not spec.built}
    for key, value in given.items():
        name = SEED_ALIASES.get(key, key)
        if name in parts and not (name == "optimizer" and isinstance(value, str)):  # "sgd": the schema's
            objects[name] = value
        elif name in loop_fields:
            settings[name], spelled[name] = _plain(value), key
        elif name in {f.name for f, _, _ in schema()}:
            raise TypeError(f"fit got {key!r}: the recipe builds an object from it; give fit that object")
        else:
            raise TypeError(f"fit got an unexpected option {key!r}; options: {', '.join(fit_keywords())}")
    try:
        config = TrainConfig(**settings)
        config.validate()
    except ConfigError as error:
        if error.field in spelled and spelled[error.field] != error.field:
            raise ConfigError(
                error.field, error.message.replace(error.field, spelled[error.field], 1)
            ) from None
        raise
    options = FitOptions(**objects)
    options.validate()
    return config, options


def _plain(value: Any) -> Any:
    """A path or a torch.device as the string the schema holds."""
    return str(value) if isinstance(value, (os.PathLike, torch.device)) else value


def fit_keywords() -> list[str]:
    """The keywords ``fit`` takes: the loop's options (schema names) and the objects."""
    names = [f.name for f, spec, _ in schema() if not spec.built]
    return names + [f.name for f in fields(FitOptions)]


def fit_signature(leading: Sequence[str]) -> inspect.Signature:
    """``fit``'s signature as help() shows it: the seed order first, then every other keyword."""
    keyword = inspect.Parameter.KEYWORD_ONLY
    defaults = {f.name: f.default for f, spec, _ in schema() if not spec.built}
    defaults.update({f.name: f.default for f in fields(FitOptions)})  # ``optimizer``: the object
    parameters = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in leading]
    for name in SEED_POSITIONAL:
        default = defaults.pop(SEED_ALIASES.get(name, name))
        parameters.append(inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default))
    parameters += [inspect.Parameter(name, keyword, default=default) for name, default in defaults.items()]
    return inspect.Signature(parameters)
