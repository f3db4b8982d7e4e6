"""Heads registered by name: ``build_header`` builds one, ``header_spec`` says how to rebuild it."""

from __future__ import annotations

from femb.headers.base import Header

_REGISTRY: dict[str, type[Header]] = {}


def register_header(cls: type[Header]) -> type[Header]:
    """Register a :class:`Header` subclass under its ``name`` class attribute."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a non-empty `name` to be registered")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(
            f"a header named {cls.name!r} is already registered ({_REGISTRY[cls.name].__name__})"
        )
    _REGISTRY[cls.name] = cls
    return cls


def list_headers() -> list[str]:
    return sorted(_REGISTRY)


def header_class(name: str) -> type[Header]:
    """The class registered as ``name``; an unknown name lists the choices."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown header {name!r}; choices: {', '.join(list_headers())}")
    return _REGISTRY[name]


def build_header(name: str, in_features: int, out_features: int, **kwargs) -> Header:
    """Build the registered head ``name`` with ``out_features`` class centres of size ``in_features``."""
    return header_class(name)(in_features, out_features, **kwargs)


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
