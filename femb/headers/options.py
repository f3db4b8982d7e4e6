"""A head's hyper-parameters, declared once in the head's own file as ``options``.

Each head class lists its options as ``options: tuple[HeadOption, ...]``; its constructor takes
its defaults from the same objects (``m: float = MARGIN.default``), and
:func:`femb.headers.register_header` refuses a head whose constructor and declaration disagree.
The registry's :func:`~femb.headers.head_options` and :func:`~femb.headers.parse_head_options`
serve config files, the command line and the dashboard from this one declaration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

OptionValue = bool | int | float | str
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


@dataclass(frozen=True)
class HeadOption:
    """One hyper-parameter of a head: its name, type, default, one-line help and sane range.

    ``type`` is ``bool``, ``int``, ``float`` or ``str``. ``low``/``high`` bound a number (inclusive;
    ``low_open=True`` makes the lower bound exclusive, as for a scale that must be > 0);
    ``choices`` lists a string's allowed values. ``default=None`` means "resolved by the head from
    its other options" (ElasticFace's margin depends on its variant); ``help`` then says how.
    ``papers``: the value the method's paper uses, where femb's default is another.
    """

    name: str
    type: type
    default: OptionValue | None
    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple[str, ...] = ()
    papers: OptionValue | None = None

    def __post_init__(self) -> None:
        if self.type not in (bool, int, float, str):
            raise TypeError(f"option {self.name}: type must be bool, int, float or str, not {self.type}")
        if self.default is not None:
            self.check(self.default)  # a declaration that breaks its own rules fails at import

    def parse(self, value: Any) -> OptionValue | None:
        """``value`` (a string from the command line, or already typed) as this option's type."""
        if value is None and self.default is None:
            return None
        converted = self._convert(value)
        if converted is None:
            raise ValueError(f"option {self.name}={value!r}: expected {self.type.__name__}")
        return self.check(converted)

    def check(self, value: OptionValue) -> OptionValue:
        """``value`` unchanged if it is in range, else a ``ValueError`` that says the range."""
        if self.choices and value not in self.choices:
            raise ValueError(f"option {self.name}={value!r}: expected one of {', '.join(self.choices)}")
        if self.type in (int, float):
            too_low = self.low is not None and (value <= self.low if self.low_open else value < self.low)
            too_high = self.high is not None and value > self.high
            if too_low or too_high or not math.isfinite(value):
                raise ValueError(f"option {self.name}={value!r}: expected {self.range_text()}")
        return value

    def range_text(self) -> str:
        """The allowed values in words, e.g. ``a float in (0, inf)`` or ``one of arc, cos``."""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.type in (int, float):
            low = "(-inf" if self.low is None else f"{'(' if self.low_open else '['}{self.low:g}"
            high = "inf)" if self.high is None else f"{self.high:g}]"
            return f"{'an' if self.type is int else 'a'} {self.type.__name__} in {low}, {high}"
        return f"a {self.type.__name__}"

    def describe(self) -> str:
        """One line for help texts, ``femb info`` and the dashboard: ``name=default  help (range)``."""
        default = "(see help)" if self.default is None else str(self.default)
        return f"{self.name}={default}  {self.help} ({self.range_text()})"

    def help_default(self) -> str:
        """``name=default``, with the papers' value beside it if other (``s=auto (papers: 64)``)."""
        shown = f"{self.name}={'auto' if self.default is None else self.default}"
        return shown if self.papers is None else f"{shown} (papers: {self.papers:g})"

    def _convert(self, value: Any) -> OptionValue | None:
        """The typed value, or ``None`` where ``value`` cannot mean this type (bool is no number)."""
        if self.type is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
                return value.strip().lower() in _TRUE
            return None
        if self.type is str:
            return value if isinstance(value, str) else None
        if isinstance(value, bool):
            return None
        if isinstance(value, str):
            try:
                value = float(value)  # int options accept "4" and "4.0" alike
            except ValueError:
                return None
        if not isinstance(value, int | float):
            return None
        if self.type is int:
            return int(value) if float(value).is_integer() else None
        return float(value)


def scale_option(default: float | None = None) -> HeadOption:
    """``s``, the logit scale shared by the normalised heads; ``None``: AdaCos's fixed scale.

    The papers' s = 64 saturates the softmax of a freshly initialised head, so training first
    climbs (see :func:`femb.headers.base.adacos_scale`); ``s=64`` gives the papers' value.
    """
    return HeadOption(
        "s",
        float,
        default,
        "logit scale: every cosine is multiplied by s; default AdaCos's fixed scale "
        "max(4, √2·ln(classes − 1)) (the papers use 64, which climbs before it learns)",
        low=0.0,
        low_open=True,
        papers=64.0,
    )


def angular_margin_option(
    default: float, help: str = "additive angular margin m in radians: cos(θ_y + m)"
) -> HeadOption:
    """``m``, an additive angular margin in radians (a quarter turn is far beyond any sane one)."""
    return HeadOption("m", float, default, help, low=0.0, high=math.pi / 2)


__all__ = ["HeadOption", "OptionValue", "angular_margin_option", "scale_option"]
