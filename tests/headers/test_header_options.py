"""Head options declared once: the registry reads them, the constructors take their defaults from them."""

from __future__ import annotations

import pytest
from header_helpers import ALL_HEADERS

from femb.headers import ArcFaceHeader, build_header, head_options, parse_head_options, register_header
from femb.headers.base import MarginHeader
from femb.headers.options import HeadOption, scale_option


@pytest.mark.parametrize("name", ALL_HEADERS)
def test_built_head_has_the_declared_defaults(name):
    header = build_header(name, 4, 3)
    options = head_options(name)
    assert options == type(header).options
    hparams = header.hparams()
    for option in options:
        if option.default is not None:  # None: resolved by the head from its other options
            assert hparams[option.name] == option.default, option.name
            assert type(hparams[option.name]) is option.type, option.name
    assert all(option.help and option.describe().startswith(option.name) for option in options)


@pytest.mark.parametrize("name", ALL_HEADERS)
def test_parsing_the_spec_as_strings_gives_it_back(name):
    # What a command line or a TOML file would give: every option as a string.
    header = build_header(name, 4, 3)
    declared = {option.name for option in head_options(name)}
    as_strings = {key: str(value) for key, value in header.hparams().items() if key in declared}
    assert parse_head_options(name, as_strings) == {key: header.hparams()[key] for key in as_strings}


def test_parse_converts_strings_by_type():
    assert parse_head_options("arcface", {"s": "30", "m": "0.4", "easy_margin": "yes"}) == {
        "s": 30.0,
        "m": 0.4,
        "easy_margin": True,
    }
    assert parse_head_options("sphereface", {"m": "3"}) == {"m": 3}
    assert parse_head_options("sphereface", {"m": 2.0}) == {"m": 2}
    assert parse_head_options("linear", {"bias": "off"}) == {"bias": False}
    assert parse_head_options("cosface", {}) == {}


def test_unknown_option_names_the_head_and_lists_its_options():
    with pytest.raises(ValueError) as error:
        parse_head_options("cosface", {"easy_margin": "true"})
    message = str(error.value)
    assert "'cosface'" in message and "'easy_margin'" in message
    assert "s=None" in message and "m=0.35" in message
    with pytest.raises(ValueError, match="'arcface' has no option 'nonsense'"):
        build_header("arcface", 8, 4, nonsense=1)


@pytest.mark.parametrize(
    ("name", "values", "pattern"),
    [
        ("arcface", {"s": "0"}, r"s=0.0: expected a float in \(0, inf\)"),
        ("cosface", {"s": "-64"}, "expected a float in"),
        ("arcface", {"m": "2.0"}, r"\[0, 1.5708\]"),
        ("cosface", {"m": "-0.1"}, "m=-0.1"),
        ("magface", {"l_m": "3"}, "l_m"),
        ("combined", {"m1": "0"}, "m1"),
        ("sphereface", {"m": "2.5"}, "expected int"),
        ("sphereface", {"m": "0"}, r"an int in \[1, 8\]"),
        ("arcface", {"easy_margin": "maybe"}, "expected bool"),
        ("arcface", {"m": "nan"}, "m=nan"),
        ("arcface", {"s": True}, "expected float"),
    ],
)
def test_meaningless_values_are_refused(name, values, pattern):
    with pytest.raises(ValueError, match=pattern) as error:
        parse_head_options(name, values)
    assert f"head {name!r}" in str(error.value)


def test_direct_construction_checks_the_declaration_too():
    with pytest.raises(ValueError, match="head 'arcface': option s=0.0"):
        ArcFaceHeader(8, 4, s=0.0)
    with pytest.raises(ValueError, match="l_a < u_a"):
        build_header("magface", 8, 4, l_a=50.0, u_a=20.0)


def test_registering_a_head_whose_constructor_repeats_a_default_is_refused():
    scale = scale_option()

    class Drifted(MarginHeader):
        name = "drifted"
        options = (scale,)

        def __init__(self, in_features: int, out_features: int, s: float = 30.0) -> None:
            super().__init__(in_features, out_features, s=s)

    with pytest.raises(ValueError, match="take it from the declaration"):
        register_header(Drifted)


def test_registering_a_head_with_an_undeclared_argument_is_refused():
    class Undeclared(ArcFaceHeader):
        name = "undeclared"

        def __init__(self, in_features: int, out_features: int, s: float = 64.0, k: int = 3) -> None:
            super().__init__(in_features, out_features, s=s)

    with pytest.raises(ValueError, match="differ from the declared options"):
        register_header(Undeclared)


def test_a_declaration_that_breaks_its_own_range_fails_at_once():
    with pytest.raises(ValueError):
        HeadOption("m", float, 2.0, "a margin", low=0.0, high=1.0)
    with pytest.raises(TypeError):
        HeadOption("m", list, [], "a list")
