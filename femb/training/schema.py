"""How an option of :class:`femb.training.config.TrainConfig` is declared: ``option(...)``.

One line per option carries its default, help text, help panel, choices and range; the
config file, the command line, ``fit`` and the run views all read them from here, and
:func:`check_field` is the one check of a value against them (type, then choices, then range).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

META_KEY = "femb"


@dataclass(frozen=True)
class Spec:
    """What a field declares besides its type and default.

    ``low``/``high`` bound a number (inclusive; ``low_open`` makes the lower bound exclusive) and
    every item of a list; ``choices`` is a tuple, or a function returning one when the allowed
    values are a registry's (a head registered later is accepted). ``built``: ``femb train`` builds
    an object from it (the data set, the backbone, the schedule), which ``fit`` is given instead.
    ``metavar``: how a help text writes the value (``NAME=PATH``).
    """

    help: str
    panel: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple[str, ...] | Callable[[], Sequence[str]] = ()
    built: bool = False
    metavar: str | None = None  # the placeholder for the value in help texts, where its type says too little

    def allowed(self) -> tuple[str, ...]:
        return tuple(self.choices() if callable(self.choices) else self.choices)

    def range_text(self, integer: bool) -> str:
        """``an integer ≥ 0 and ≤ 1,000,000,000`` or ``a number > 0``: the range in words."""
        kind = "an integer" if integer else "a number"
        bounds = []
        if self.low is not None:
            bounds.append(f"{'>' if self.low_open else '≥'} {_number(self.low)}")
        if self.high is not None:
            bounds.append(f"≤ {_number(self.high)}")
        return " and ".join([f"{kind} {bounds[0]}", *bounds[1:]]) if bounds else kind


def option(default: Any, help: str, panel: str, **spec: Any) -> Any:
    """A dataclass field declaring one training option (see :class:`Spec` for ``spec``)."""
    metadata = {META_KEY: Spec(help, panel, **spec)}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def spec_of(field: dataclasses.Field) -> Spec:
    return field.metadata[META_KEY]


def _number(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


class ConfigError(ValueError):
    """A value of option ``field`` that cannot work; ``source`` is the file (or ``None``).

    The message names the field as the config file and ``fit`` spell it; the command line
    rewrites that name into its flag (``femb_cli.errors``)."""

    def __init__(self, field: str | None, message: str, source: str | None = None):
        super().__init__(f"{source}: {message}" if source else message)
        self.field, self.message, self.source = field, message, source


def check_field(name: str, value: Any, annotation: Any, spec: Spec, source: str | None) -> Any:
    """``value`` converted to field ``name``'s type and checked against its choices and range."""
    value = check_type(name, value, annotation, source)
    items = value if isinstance(value, list) else [value]
    allowed = spec.allowed()
    for item in items:
        if item is None:
            continue
        if allowed and item not in allowed:
            raise ConfigError(name, f"{name}={item!r} is not one of {', '.join(allowed)}", source)
        if isinstance(item, (int, float)) and not _in_range(item, spec):
            integer = isinstance(item, int)
            raise ConfigError(name, f"{name} must be {spec.range_text(integer)}, got {item!r}", source)
    return value


def _in_range(value: float, spec: Spec) -> bool:
    if isinstance(value, float) and not math.isfinite(value):
        return False
    if spec.low is not None and (value <= spec.low if spec.low_open else value < spec.low):
        return False
    return spec.high is None or value <= spec.high


_TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
_WRONG = object()


def check_type(name: str, value: Any, annotation: Any, source: str | None) -> Any:
    """``value`` as field ``name`` of type ``annotation`` holds it, or a :class:`ConfigError`.

    Strict: a bool is no number and ``"no"`` no bool; an int is accepted for a float (TOML writes
    ``lr = 1``) and converted; a float for an int only when it is whole (``steps = 100.0``)."""
    options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    if value is None and type(None) in options:
        return None
    for option_type in options:
        if option_type is type(None):
            continue
        converted = _convert(value, option_type)
        if converted is not _WRONG:
            return converted
    wanted = " or ".join(_describe(t) for t in options if t is not type(None))
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    raise ConfigError(name, f"{name} must be {wanted}, got {shown} ({type(value).__name__})", source)


def _convert(value: Any, annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is list:
        (item,) = typing.get_args(annotation) or (Any,)
        if not isinstance(value, (list, tuple)):
            return _WRONG
        items = [_convert(v, item) for v in value]
        return _WRONG if any(v is _WRONG for v in items) else items
    if origin is dict:
        return dict(value) if isinstance(value, dict) else _WRONG
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
    return value  # Any


def _describe(annotation: Any) -> str:
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation) or (Any,)
        return f"a list of {_TYPE_WORDS.get(item, 'values').removeprefix('an ').removeprefix('a ')}s"
    if typing.get_origin(annotation) is dict:
        return "a table"
    return _TYPE_WORDS.get(annotation, getattr(annotation, "__name__", str(annotation)))


def value_type(annotation: Any) -> Any:
    """The type of a value without ``None``: ``int`` for ``int | None``."""
    if isinstance(annotation, types.UnionType):
        kept = [t for t in typing.get_args(annotation) if t is not type(None)]
        return kept[0] if len(kept) == 1 else annotation
    return annotation
