"""Named evaluation sets: ``lfw=data/lfw.bin`` or a plain path named after its file's stem.

Shared by training (several validation sets) and ``femb verify pairs`` (several pairs sets), so
that a set is named the same way everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

SET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


def split_name(value: str | Path) -> tuple[str, Path]:
    """``lfw=data/lfw.bin`` → ``("lfw", data/lfw.bin)``; a plain path (or one that exists as
    written, '=' and all) is named after its stem."""
    path = Path(value)
    name, sep, rest = str(value).partition("=")
    if sep and rest and SET_NAME.fullmatch(name) and not path.exists():
        return name, Path(rest)
    return path.stem or path.name, path


def named_paths(values: Iterable[str] | Mapping[str, str] | str, field: str = "val") -> dict[str, str]:
    """Name → path of each set: a table (name = path), a list of ``NAME=PATH`` / ``PATH`` or one
    such string. Two sets of one name are one ``ValueError`` naming ``field`` and both paths."""
    if isinstance(values, Mapping):
        pairs = [(str(name), str(path)) for name, path in values.items()]
        for name, _ in pairs:
            if not SET_NAME.fullmatch(name):
                raise ValueError(
                    f"{field}: set name {name!r} must be letters, digits and _.+- (starting with a "
                    "letter or digit)"
                )
    else:
        values = [values] if isinstance(values, str) else list(values)
        pairs = []
        for value in values:
            name, path = split_name(value)
            # synthetic:N is a set of its own, not a file: named without its count.
            pairs.append(("synthetic" if name.startswith("synthetic:") else name, str(path)))
    named: dict[str, str] = {}
    for name, path in pairs:
        if name in named:
            raise ValueError(
                f"{field}: two sets are named {name!r} ({named[name]} and {path}); name them apart with "
                "NAME=PATH"
            )
        named[name] = path
    return named

