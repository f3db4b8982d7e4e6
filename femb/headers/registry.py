"""Heads registered by name: ``build_header`` builds one, ``header_spec`` says how to rebuild it.

``head_options`` and ``parse_head_options`` give every head's declared options (see
:mod:`femb.headers.options`) to config files, the command line and the dashboard.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from femb.headers.base import Header
from femb.headers.options import HeadOption, OptionValue

_REGISTRY: dict[str, type[Header]] = {}
# Constructor arguments that are no hyper-parameter of the method: sizes, and how W is kept unit.
_STRUCTURAL_ARGUMENTS = ("self", "in_features", "out_features", "normalize_weight_in_place")


def register_header(cls: type[Header]) -> type[Header]:
    """Register a :class:`Header` subclass under its ``name`` class attribute.

    Refuses a head whose constructor arguments are not exactly its declared ``options`` (besides
    the sizes and ``normalize_weight_in_place``) with the declared defaults: the declaration is
    the one copy, and the constructor must read its defaults from it.
    """
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a non-empty `name` to be registered")
    _check_declaration(cls)
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(
            f"a header named {cls.name!r} is already registered ({_REGISTRY[cls.name].__name__})"
        )
    _REGISTRY[cls.name] = cls
    return cls


def _check_declaration(cls: type[Header]) -> None:
    parameters = {
        name: parameter
        for name, parameter in inspect.signature(cls.__init__).parameters.items()
        if name not in _STRUCTURAL_ARGUMENTS and parameter.kind is not inspect.Parameter.VAR_KEYWORD
    }
    declared = {option.name: option for option in cls.options}
    if len(declared) != len(cls.options) or set(parameters) != set(declared):
        raise ValueError(
            f"{cls.__name__}: constructor arguments {sorted(parameters)} differ from the declared "
            f"options {[option.name for option in cls.options]}"
        )
    for name, option in declared.items():
        if parameters[name].default != option.default:
            raise ValueError(
                f"{cls.__name__}: the default of {name} is {parameters[name].default!r} in the "
                f"constructor but {option.default!r} in `options`; take it from the declaration"
            )


def list_headers() -> list[str]:
    return sorted(_REGISTRY)


def header_class(name: str) -> type[Header]:
    """The class registered as ``name``; an unknown name lists the choices."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown header {name!r}; choices: {', '.join(list_headers())}")
    return _REGISTRY[name]


def head_options(name: str) -> tuple[HeadOption, ...]:
    """The options head ``name`` declares (name, type, default, help, range), in declaration order."""
    return header_class(name).options


def parse_head_options(name: str, values: Mapping[str, Any]) -> dict[str, OptionValue]:
    """``values`` (strings such as ``{"m": "0.4"}``, or already typed) checked and converted.

    Returns only the options given, typed, for ``build_header(name, ..., **result)``; the head's
    defaults fill the rest. An option the head does not take, a value of the wrong type or one
    out of the option's range raises one ``ValueError`` naming the head and listing its options.
    Constraints between options (MagFace's l_a < u_a) are checked when the head is built.
    """
    options = {option.name: option for option in head_options(name)}
    parsed: dict[str, OptionValue] = {}
    for key, value in values.items():
        if key not in options:
            raise ValueError(f"head {name!r} has no option {key!r}; {_listing(name)}")
        try:
            parsed[key] = options[key].parse(value)
        except ValueError as error:
            raise ValueError(f"head {name!r}: {error}") from None
    return parsed


def _listing(name: str) -> str:
    options = head_options(name)
    if not options:
        return "it takes no options"
    return "its options: " + ", ".join(f"{option.name}={option.default}" for option in options)


def build_header(name: str, in_features: int, out_features: int, **kwargs) -> Header:
    """Build the registered head ``name`` with ``out_features`` class centres of size ``in_features``.

    ``kwargs`` are the head's options (typed values; see :func:`parse_head_options` for strings)
    and ``normalize_weight_in_place``; an option the head does not take is a ``ValueError``.
    """
    cls = header_class(name)
    declared = {option.name for option in cls.options}
    unknown = sorted(key for key in kwargs if key not in declared and key not in _STRUCTURAL_ARGUMENTS)
    if unknown:
        raise ValueError(f"head {name!r} has no option {unknown[0]!r}; {_listing(name)}")
    return cls(in_features, out_features, **kwargs)


def header_spec(header: Header) -> dict:
    """``{"name", "kwargs"}`` such that ``build_header(spec["name"], **spec["kwargs"])`` rebuilds it.

    ``kwargs`` include ``in_features`` and ``out_features`` and hold only numbers, bools and
    strings, so the spec goes into JSON, TOML and checkpoints as it is.
    """
    cls = type(header)
    if _REGISTRY.get(getattr(cls, "name", "")) is not cls:
        raise ValueError(
            f"{cls.__name__} is not a registered header, so a checkpoint cannot rebuild it; "
            "register it with @register_header"
        )
    return {"name": cls.name, "kwargs": dict(header.hparams())}
