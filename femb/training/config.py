"""The training configuration: THE schema of every training option, saved as ``config.toml``.

Each option is one :func:`~femb.training.schema.option` line: type, default, help text,
help panel, choices and range. ``femb train``'s options, the TOML keys (the field names), ``fit``'s
keywords and the run views are generated from it, and :meth:`TrainConfig.validate` is the one
check, run from the same declarations.

The head's hyper-parameters are whatever the head declares (:mod:`femb.headers.options`); they
live in one ``head_options`` table, so this file names no head option. A config file may give
them in either of two shapes::

    head = "arcface"            # what config.toml holds
    [head_options]
    s = 30.0

    [head]                      # the same, as one table
    name = "arcface"
    s = 30.0
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any

from femb.data.recordio_dataset import ON_BAD_IMAGE_CHOICES
from femb.headers import head_options, list_headers, parse_head_options
from femb.training.schema import ConfigError, Spec, check_field, check_type, option, spec_of

DATA, MODEL, HEAD, OPTIM, RUN = "Data", "Model", "Head", "Optimisation", "Run"
OPTIMIZERS = ("sgd", "adamw")
SCHEDULERS = ("cosine", "multistep", "poly", "constant")
AMP_MODES = ("none", "bf16", "fp16", "auto")
BEST_ON_MEAN = "mean"  # best.pt follows the mean accuracy over the validation sets
DEFAULT_STEPS = 1000  # the run's length when neither steps nor epochs is set
# Bounds of the counts: far past any real run, short of what overflows a time or a tensor size.
MAX_STEPS, MAX_EPOCHS, MAX_BATCH, MAX_DIM, MAX_WORKERS = 10**9, 10**6, 2**20, 2**16, 256
STEPS = dict(low=0, high=MAX_STEPS)


@dataclass
class TrainConfig:
    data: str = option(
        "synthetic:200",
        "An image folder (one sub-folder per identity), an InsightFace "
        "RecordIO folder, or synthetic[:N_IDENTITIES].",
        DATA,
        built=True,
    )
    val: list[str] = option(
        [],
        "A validation set, NAME=PATH or PATH (named by its stem; repeatable; a config file may give a "
        "[val] table of name = path): a .bin pairs file, an image folder or synthetic:N (default: "
        "held-out synthetic identities).",
        DATA,
        built=True,
        metavar="[NAME=]PATH",
    )
    val_pairs: int = option(
        2000, "Pairs drawn from a validation image folder.", DATA, low=1, high=10**8, built=True
    )
    images_per_identity: int = option(
        24, "Images per synthetic identity.", DATA, low=1, high=10**4, built=True
    )
    on_bad_image: str = option(
        "skip",
        "A training image that cannot be read: skipped (counted, the first few named) or an error.",
        DATA,
        choices=ON_BAD_IMAGE_CHOICES,
        built=True,
    )
    augment: bool = option(
        False,
        "Augment training faces: a few pixels of shift and per cent of zoom, "
        "flip, colour jitter, light blur (seeded: resume stays exact).",
        DATA,
        built=True,
    )
    backbone: str = option("mobilefacenet_fast", "Backbone name (see `femb info`).", MODEL, built=True)
    embed_dim: int = option(128, "Embedding size.", MODEL, low=1, high=MAX_DIM, built=True)
    init_backbone: str | None = option(
        None,
        "Start from these backbone weights: an arcface_torch "
        "backbone.pth, a MagFace checkpoint, or a femb checkpoint / run "
        "directory (a fresh head is trained for your identities).",
        MODEL,
        built=True,
    )
    freeze_backbone_steps: int = option(
        0, "Fine-tuning: train only the head for the first N steps.", MODEL, **STEPS
    )
    backbone_lr_scale: float = option(1.0, "The backbone's learning rate as a multiple of lr.", OPTIM, low=0)
    head: str = option(
        "arcface", "The margin head (its options: below).", HEAD, choices=list_headers, built=True
    )
    # The options that were set, typed; the head's own declared defaults fill the rest.
    head_options: dict[str, Any] = option(
        {}, "An option of the head, KEY=VALUE (repeatable).", HEAD, built=True
    )
    sample_rate: float = option(
        1.0,
        "Partial FC: the share of each process's class centres used per step.",
        HEAD,
        low=0,
        low_open=True,
        high=1,
    )
    batch_size: int = option(64, "Images per step.", OPTIM, low=1, high=MAX_BATCH)
    steps: int = option(0, f"Training steps (0: unused; both 0: {DEFAULT_STEPS}).", OPTIM, **STEPS)
    epochs: int = option(
        0, "Epochs (0: unused); the first limit reached ends the run.", OPTIM, low=0, high=MAX_EPOCHS
    )
    lr: float = option(0.1, "Peak learning rate.", OPTIM, low=0, low_open=True)
    optimizer: str = option("sgd", "The optimizer (fit: when none is given).", OPTIM, choices=OPTIMIZERS)
    momentum: float = option(0.9, "SGD momentum.", OPTIM, low=0, high=1)
    weight_decay: float = option(5e-4, "Weight decay.", OPTIM, low=0)
    scheduler: str = option(
        "cosine", "The learning-rate decay after warm-up.", OPTIM, choices=SCHEDULERS, built=True
    )
    warmup_steps: int = option(50, "Linear warm-up steps.", OPTIM, built=True, **STEPS)
    milestones: list[int] = option(
        [],
        "multistep: the steps where the rate drops (repeatable; default: 60, 80 and 90% of the run).",
        OPTIM,
        built=True,
        metavar="STEP",
        **STEPS,
    )
    gamma: float = option(
        0.1, "multistep: the factor at each milestone.", OPTIM, low=0, low_open=True, high=1, built=True
    )
    power: float = option(
        2.0, "poly: the decay's exponent.", OPTIM, low=0, low_open=True, high=100, built=True
    )
    amp: str = option("none", "Mixed precision (the margin maths stays fp32).", OPTIM, choices=AMP_MODES)
    grad_clip: float = option(0.0, "Clip the gradient norm (0: off).", OPTIM, low=0)
    skip_nonfinite: bool = option(False, "Skip steps with a NaN/inf loss instead of stopping.", OPTIM)
    eval_every: int = option(50, "Verify every N steps and at the end (0: never).", RUN, **STEPS)
    best_on: str = option(
        BEST_ON_MEAN, "The validation set whose accuracy decides best.pt: its name, or mean of all.", RUN
    )
    eval_batch_size: int | None = option(
        None, "Images per evaluation batch (default: max(batch size, 64)).", RUN, low=1, high=MAX_BATCH
    )
    log_every: int | None = option(
        None, "Steps between step events (default: 1 on CPU, 10 on GPU).", RUN, low=1, high=MAX_STEPS
    )
    checkpoint_every: int = option(
        100, "Write checkpoints/last.pt every N steps (0: only at the end).", RUN, **STEPS
    )
    seed: int | None = option(
        0, "Random seed (fit: None leaves the generators as they are).", RUN, low=0, high=2**63 - 1
    )
    device: str = option("auto", "auto | cpu | cuda | cuda:N.", RUN)
    workers: int = option(0, "DataLoader worker processes.", RUN, low=0, high=MAX_WORKERS)
    run_dir: str | None = option(None, "Run directory (default: runs/<name>-<time>).", RUN)
    name: str | None = option(None, "Run name prefix.", RUN)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str | None = "config") -> TrainConfig:
        """Check every value against its field's declaration (``lr = "0.1"`` and
        ``skip_nonfinite = "no"`` are errors, an int for a float is fine); one :class:`ConfigError`
        naming ``source`` and the option for anything wrong."""
        if not isinstance(values, dict):
            raise ConfigError(None, f"expected a table of options, got {type(values).__name__}", source)
        known = {f.name: f for f in fields(cls)}
        values = normalize_head_table(values, source)
        unknown = sorted(set(values) - set(known), key=str)
        if unknown:
            raise ConfigError(
                unknown[0], f"unknown option {unknown[0]!r}; known: {', '.join(sorted(known))}", source
            )
        given = {
            key: value for key, value in values.items() if value is not None or known[key].default is None
        }
        config = cls()
        for key, value in given.items():
            setattr(config, key, value)
        config.validate(source)
        return config

    def validate(self, source: str | None = None) -> None:
        """Every field against its declaration (type, choices, range), then the head's options
        against the head's own declarations; values are converted in place (``lr = 1`` → 1.0)."""
        hints = _field_types(type(self))
        self.val = val_list(self.val)
        for f in fields(self):
            if f.name != "head_options":
                setattr(
                    self,
                    f.name,
                    check_field(f.name, getattr(self, f.name), hints[f.name], spec_of(f), source),
                )
        self.head_options = _check_head_options(self.head, self.head_options, source)
        _check_val_sets(self.val, self.best_on, source)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def rows(self) -> Iterator[tuple[str, Any, str]]:
        """``(field, value, panel)`` of every option, in declaration order (see :func:`config_rows`)."""
        yield from config_rows(self.to_dict())


def config_rows(values: dict[str, Any], head: Any = None) -> Iterator[tuple[str, Any, str]]:
    """``(field, value, panel)`` of a recorded config (``config.toml`` or a start event's), in the
    schema's order, for a run's views; a missing field shows its default. The head's options come
    one by one (``head.s``): with ``head``, a start event's or checkpoint's head spec (``name``,
    ``kwargs``), the values the run really used (femb's default scale resolved from the class
    count); else the config's table over the head's declared defaults (``None``: resolved later).
    Values are shown as they were read: the caller treats them as outside input."""
    for f in fields(TrainConfig):
        spec = spec_of(f)
        if f.name == "head_options":
            for key, value in _head_values(values, head).items():
                yield f"head.{key}", value, spec.panel
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        yield f.name, values.get(f.name, default), spec.panel


def _head_values(values: dict[str, Any], head: Any) -> dict[str, Any]:
    built = head.get("kwargs") if isinstance(head, dict) else None
    name = head.get("name") if isinstance(built, dict) else values.get("head", TrainConfig.head)
    declared = head_options(name) if isinstance(name, str) and name in list_headers() else ()
    if isinstance(built, dict):
        return {option.name: built.get(option.name) for option in declared} or {
            key: value for key, value in built.items() if key not in ("in_features", "out_features")
        }
    table = values.get("head_options")
    table = table if isinstance(table, dict) else {}
    return {**{option.name: option.default for option in declared}, **table}


def schema() -> list[tuple[dataclasses.Field, Spec, Any]]:
    """``(field, spec, type)`` of every option, in declaration order."""
    hints = _field_types(TrainConfig)
    return [(f, spec_of(f), hints[f.name]) for f in fields(TrainConfig)]


def normalize_head_table(values: dict[str, Any], source: str | None = "config") -> dict[str, Any]:
    """``values`` with a ``[head]`` table (``name`` and the options) split into ``head`` and
    ``head_options``; types are checked later."""
    values = dict(values)
    head = values.get("head")
    if isinstance(head, dict):
        table = dict(head)
        if "name" not in table:
            raise ConfigError("head", 'the [head] table needs a name, e.g. name = "arcface"', source)
        values["head"] = table.pop("name")
        given = values.get("head_options", {})
        if not isinstance(given, dict):
            raise ConfigError(
                "head_options", f"head_options must be a table, got {type(given).__name__}", source
            )
        values["head_options"] = {**table, **given}
    return values


def val_list(value: Any) -> Any:
    """The validation sets as the list the field holds: a ``[val]`` table becomes ``NAME=PATH``
    items, one path (a config written before sets had names) a list of it; other values are left
    for the type check to refuse."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict) and all(isinstance(path, str) for path in value.values()):
        return [f"{name}={path}" for name, path in value.items()]
    return value


def _check_val_sets(val: list[str], best_on: str, source: str | None) -> None:
    """Set names unique and well formed; ``best_on`` ``mean`` or one of them (checked again, for
    any set ``fit`` is given, before the first step)."""
    from femb.data.set_names import named_paths

    try:
        names = list(named_paths(val, "val")) if val else []
    except ValueError as error:
        raise ConfigError("val", str(error), source) from None
    if val:
        check_best_on(best_on, names, source)


def check_best_on(best_on: str, names: list[str], source: str | None = None) -> None:
    """``best_on`` must be ``mean`` or one of the validation sets' ``names``."""
    if best_on != BEST_ON_MEAN and best_on not in names:
        choices = ", ".join([BEST_ON_MEAN, *names])
        message = f"best_on {best_on!r} is not a validation set; choices: {choices}"
        raise ConfigError("best_on", message, source)


def _check_head_options(head: Any, values: Any, source: str | None) -> dict[str, Any]:
    """``values`` typed as head ``head`` declares them, strictly (a file's ``s = "64"`` is an error)."""
    if not isinstance(values, dict):
        raise ConfigError(
            "head_options", f"head_options must be a table, got {type(values).__name__}", source
        )
    declared = {option.name: option for option in head_options(head)}
    typed = {
        key: check_type(key, value, declared[key].type, source)
        if key in declared and value is not None
        else value
        for key, value in values.items()
    }
    try:
        return parse_head_options(head, typed)  # unknown options and ranges
    except ValueError as error:
        raise ConfigError("head_options", str(error), source) from None


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)
