"""The registry: names, errors, and specs that rebuild a head with identical logits."""

from __future__ import annotations

import json

import pytest
import torch
from header_helpers import ALL_HEADERS, resumed_copy

import femb.headers as headers
from femb.headers import ArcFaceHeader, build_header, head_options, header_spec, list_headers
from femb.headers.options import HeadOption

NON_DEFAULT_KWARGS = {
    "linear": {"bias": True},
    "sphereface": {"m": 3, "base": 500.0, "gamma": 0.1, "power": 2.0, "lambda_min": 3.0},
    "cosface": {"s": 30.0, "m": 0.4},
    "arcface": {"s": 32.0, "m": 0.45, "easy_margin": True},
    "magface": {"s": 32.0, "l_a": 5.0, "u_a": 100.0, "l_m": 0.4, "u_m": 0.7, "lambda_g": 35.0},
    "combined": {"s": 48.0, "m1": 0.9, "m2": 0.4, "m3": 0.15, "normalize_weight_in_place": False},
}


SHIPPED = [
    "linear",
    "sphereface",
    "cosface",
    "arcface",
    "magface",
    "combined",
    "subcenter_arcface",
    "curricularface",
    "adaface",
    "elasticface",
]


def test_list_headers():
    assert set(SHIPPED) <= set(list_headers())
    assert list_headers() == sorted(list_headers())


def non_default_value(option: HeadOption):
    """A valid value other than the option's default, from its declared type and range."""
    if option.type is bool:
        return not option.default
    if option.type is str:
        return next(choice for choice in option.choices if choice != option.default)
    if option.default is None:  # resolved by the head: any value inside the range
        return option.low + 0.01 if option.low is not None else 0.01
    for value in (option.default * 0.9, option.default + 1, option.default - 1):
        value = option.type(value)
        try:
            if value != option.default:
                return option.check(value)
        except ValueError:
            continue
    raise AssertionError(f"no valid non-default value for {option}")


def non_default_kwargs(name: str) -> dict:
    if name in NON_DEFAULT_KWARGS:
        return NON_DEFAULT_KWARGS[name]
    return {option.name: non_default_value(option) for option in head_options(name)}


def test_public_names():
    for name in [
        "LinearHeader",
        "SphereFaceHeader",
        "CosFaceHeader",
        "ArcFaceHeader",
        "MagFaceHeader",
        "CombinedMarginHeader",
        "build_header",
        "list_headers",
        "header_spec",
    ]:
        assert hasattr(headers, name), name


def test_unknown_name_lists_the_choices():
    with pytest.raises(ValueError) as error:
        build_header("softmaxx", 8, 10)
    for name in ALL_HEADERS:
        assert name in str(error.value)


@pytest.mark.parametrize("name", ALL_HEADERS)
def test_module_contract(name):
    header = build_header(name, 16, 7)
    assert isinstance(header.weight, torch.nn.Parameter)
    assert header.weight.shape == (7 * header.centres_per_class, 16)
    logits = header(torch.randn(3, 16), torch.tensor([0, 6, -1]))
    assert logits.shape == (3, 7) and logits.dtype == torch.float32
    extra = header.extra_loss(torch.randn(3, 16))
    assert (extra is None) == (name != "magface")


@pytest.mark.parametrize("name", ALL_HEADERS)
@pytest.mark.parametrize("non_default", [False, True], ids=["defaults", "non-default"])
def test_spec_round_trip_gives_identical_logits(name, non_default):
    header = build_header(name, 16, 7, **(non_default_kwargs(name) if non_default else {}))
    spec = header_spec(header)
    assert spec["name"] == name
    assert all(type(value) in (int, float, bool, str) for value in spec["kwargs"].values())
    spec = json.loads(json.dumps(spec))
    rebuilt = build_header(spec["name"], **spec["kwargs"])
    assert type(rebuilt) is type(header) and header_spec(rebuilt) == spec
    rebuilt.load_state_dict(header.state_dict())
    x, labels = 15.0 * torch.randn(5, 16), torch.tensor([0, 1, 6, -1, 3])
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x, labels), header.eval()(x, labels))


def test_spec_of_unregistered_subclass_is_refused():
    class Custom(ArcFaceHeader):
        pass

    with pytest.raises(ValueError, match="register"):
        header_spec(Custom(8, 4))


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("sphereface", {"m": 2.5}),
        ("sphereface", {"m": 0}),
        ("magface", {"l_a": 110.0, "u_a": 10.0}),
        ("combined", {"m1": 0.0}),
        ("arcface", {"nonsense": 1}),
    ],
)
def test_bad_arguments_are_refused(name, kwargs):
    with pytest.raises((ValueError, TypeError)):
        build_header(name, 8, 4, **kwargs)


@pytest.mark.parametrize("name", ALL_HEADERS)
def test_state_resumes_exactly(name):
    # Buffers (SphereFace's iter, CurricularFace's t, AdaFace's μ/σ) travel in the state dict and
    # random margins come from the global RNG, which the loop seeds per step: after a reload, the
    # next training step gives bit-identical logits and buffers.
    header = build_header(name, 8, 5).train()
    x, labels = 12.0 * torch.randn(6, 8), torch.tensor([0, 1, 2, 3, 4, -1])
    for step in range(3):
        torch.manual_seed(step)
        header(x, labels)
    resumed = resumed_copy(header)
    torch.manual_seed(3)
    expected = header(x, labels)
    torch.manual_seed(3)
    assert torch.equal(resumed(x, labels), expected)
    for (key, value), (resumed_key, resumed_value) in zip(
        header.state_dict().items(), resumed.state_dict().items(), strict=True
    ):
        assert key == resumed_key and torch.equal(value, resumed_value), key
