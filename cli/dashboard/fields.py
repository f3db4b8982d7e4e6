"""Fields of an event or a run's config, read as outside input: a wrong type or an absurd value is None."""

from __future__ import annotations

import math
from typing import Any

# Counts (steps, classes, parameters) beyond this are not from a real run: shown as unknown.
MAX_COUNT = 10**15


def as_number(value: Any) -> float | None:
    # Metrics files write NaN/inf as null; a missing metric is simply not shown. A metrics file is
    # input like any other: strings, lists and 5000-digit integers are "not a number" too.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except (OverflowError, ValueError):
        return None
    return number if math.isfinite(number) else None


def as_count(value: Any) -> int | None:
    """A step, epoch or size: a whole number in ``[0, MAX_COUNT]``, else None."""
    number = as_number(value)
    if number is None or not 0 <= number <= MAX_COUNT or not float(number).is_integer():
        return None
    return int(number)


def as_text(value: Any, limit: int = 200) -> str | None:
    """A short plain string (names, reasons, paths), else None."""
    if not isinstance(value, str) or not value:
        return None
    return value if len(value) <= limit else value[: limit - 1] + "…"
