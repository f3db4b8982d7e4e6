"""`TrainConfig.from_dict`: every value checked against its field's type; one ValueError, never another."""

from __future__ import annotations

import dataclasses
import math

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from femb.training.config import TrainConfig
from femb.training.run_dir import read_toml

FIELDS = [field.name for field in dataclasses.fields(TrainConfig)]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"lr": "0.1"}, "lr must be a number, got '0.1' (str)"),
        ({"steps": [1, 2]}, "steps must be an integer, got [1, 2]"),
        ({"milestones": "abc"}, "milestones must be a list of integers, got 'abc'"),
        ({"milestones": [1, 2.5]}, "milestones must be a list of integers"),
        ({"head_options": {"easy_margin": "no"}}, "easy_margin must be true or false, got 'no'"),
        ({"skip_nonfinite": 1}, "skip_nonfinite must be true or false, got 1"),
        ({"batch_size": True}, "batch_size must be an integer, got True"),
        ({"data": 5}, "data must be a string, got 5"),
        ({"val": ["a", 3]}, "val must be a list of strings, got ['a', 3]"),
        ({"val": {"lfw": 3}}, "val must be a list of strings, got {'lfw': 3}"),
        ({"val": ["a/lfw.bin", "b/lfw.bin"]}, "val: two sets are named 'lfw'"),
        ({"val": ["lfw.bin"], "best_on": "cfp"}, "best_on 'cfp' is not a validation set; choices: mean, lfw"),
        ({"head_options": {"s": "64"}}, "s must be a number, got '64'"),
        ({"head_options": {"s": -1.0}}, "head 'arcface': option s=-1.0: expected a float in (0, inf)"),
        ({"head_options": {"m": 10.0}}, "head 'arcface': option m=10.0"),
        ({"head_options": {"s": math.inf}}, "head 'arcface'"),
        ({"head_options": {"m": "0.4"}}, "m must be a number, got '0.4' (str)"),
        ({"head_options": {"m1": 0.3}}, "head 'arcface' has no option 'm1'; its options: s="),
        ({"m1": 0.3}, "unknown option 'm1'; known: "),  # head options live in [head_options] only
        ({"head_options": [1]}, "head_options must be a table, got list"),
        ({"head": {"s": 30.0}}, "the [head] table needs a name"),
        (
            {"head": "cosface", "head_options": {"easy_margin": True}},
            "head 'cosface' has no option 'easy_margin'",
        ),
        ({"steps": 10**20}, "steps must be an integer ≥ 0 and ≤ 1,000,000,000, got 100000000000000000000"),
        ({"epochs": -1}, "epochs must be an integer ≥ 0 and ≤ 1,000,000"),
        ({"sample_rate": 0}, "sample_rate must be a number > 0 and ≤ 1, got 0.0"),
        ({"optimizer": "rmsprop"}, "optimizer='rmsprop' is not one of sgd, adamw"),
        ({"milestones": [3, -1]}, "milestones must be an integer ≥ 0"),
    ],
)
def test_wrong_types_name_the_file_and_the_option(values, message):
    with pytest.raises(ValueError) as info:
        TrainConfig.from_dict(values, source="run.toml")
    assert str(info.value).startswith("run.toml: ") and message in str(info.value)
    assert "\n" not in str(info.value)


def test_what_toml_writes_naturally_is_accepted():
    config = TrainConfig.from_dict(
        {"lr": 1, "steps": 100.0, "milestones": [10, 20], "head_options": {"easy_margin": False, "m": 0}},
        source="run.toml",
    )
    assert config.lr == 1.0 and isinstance(config.lr, float)
    assert config.steps == 100 and isinstance(config.steps, int)
    assert config.milestones == [10, 20] and config.head_options == {"easy_margin": False, "m": 0.0}


def test_a_saved_config_reads_back_unchanged(tmp_path):
    config = TrainConfig(head="magface", lr=0.05, milestones=[3, 5], head_options={"l_a": 10.0, "u_a": 110.0})
    path = tmp_path / "config.toml"
    path.write_text(tomli_w.dumps({k: v for k, v in config.to_dict().items() if v is not None}))
    assert TrainConfig.from_dict(read_toml(path), source=str(path)) == config


# Arbitrary TOML tables: known and unknown keys, every kind of TOML value.
toml_scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["arcface", "cosface", "magface", "sgd", "adamw", "cosine", "none", "synthetic:4"]),
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
toml_tables = st.dictionaries(
    st.one_of(st.sampled_from(FIELDS), st.text(min_size=1, max_size=8)), toml_values, max_size=8
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(table=toml_tables)
def test_any_toml_table_gives_a_config_or_one_value_error(tmp_path, table):
    path = tmp_path / "any.toml"
    path.write_text(tomli_w.dumps(table))
    values = read_toml(path)
    try:
        config = TrainConfig.from_dict(values, source=str(path))
    except ValueError as error:
        text = str(error)
        assert text and "\n" not in text.strip()
        return
    # Accepted: every field holds its declared type.
    for name in values:
        value = getattr(config, name)
        default = getattr(TrainConfig(), name)
        if value is None or default is None:
            continue
        assert type(value) is type(default), (name, value)


# ---------------------------------------------------------------------------------------- head options


def test_the_two_shapes_of_head_options_give_one_config(tmp_path):
    """config.toml's `[head_options]` and a hand-written `[head]` table; top-level head keys are
    unknown options (that shape was never released)."""
    shapes = {
        "table": 'head = "magface"\nlr = 0.05\n[head_options]\nl_a = 5\nlambda_g = 30.0\n',
        "head": 'lr = 0.05\n[head]\nname = "magface"\nl_a = 5\nlambda_g = 30.0\n',
    }
    configs = {}
    for shape, text in shapes.items():
        path = tmp_path / "config.toml"
        path.write_text(text)
        configs[shape] = TrainConfig.from_dict(read_toml(path), source=str(path))
    assert all(config == configs["table"] for config in configs.values()), configs
    path = tmp_path / "flat.toml"
    path.write_text('head = "magface"\nl_a = 5.0\n')
    with pytest.raises(ValueError, match="unknown option 'l_a'"):
        TrainConfig.from_dict(read_toml(path), source=str(path))
    assert configs["table"].head_options == {"l_a": 5.0, "lambda_g": 30.0}
    assert type(configs["table"].head_options["l_a"]) is float  # typed by the head's declaration


def test_saved_config_holds_a_head_options_table_and_reads_back(tmp_path):
    from femb.training.run_dir import write_toml

    config = TrainConfig(head="adaface", head_options={"h": 0.5, "s": 32.0})
    path = tmp_path / "config.toml"
    write_toml(path, config.to_dict())
    assert "[head_options]" in path.read_text() and read_toml(path)["head_options"] == {"h": 0.5, "s": 32.0}
    assert TrainConfig.from_dict(read_toml(path), source=str(path)) == config


def test_a_newly_registered_head_is_configured_without_touching_the_config(tmp_path):
    from femb.headers import ArcFaceHeader, register_header
    from femb.headers.options import HeadOption
    from femb.headers.registry import _REGISTRY

    extra = HeadOption("t", float, 2.0, "a test option", low=0.0)

    class TwoScaleHeader(ArcFaceHeader):
        name = "two_scale_test"
        options = (extra,)

        def __init__(self, in_features, out_features, t=extra.default, **structural):
            super().__init__(in_features, out_features, **structural)
            self.t = t

    register_header(TwoScaleHeader)
    try:
        config = TrainConfig.from_dict({"head": {"name": "two_scale_test", "t": 3}}, source="x.toml")
        assert config.head_options == {"t": 3.0}
        with pytest.raises(ValueError, match="two_scale_test.*option t=-1.0"):
            TrainConfig.from_dict({"head": "two_scale_test", "head_options": {"t": -1.0}}, source="x.toml")
    finally:
        _REGISTRY.pop("two_scale_test", None)
