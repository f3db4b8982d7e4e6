"""TrainConfig is the one schema (issue 18, item 1): each option declared once, with its help,
panel, choices and range; validation, TOML keys and fit's keywords all come from that line."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from dataclasses import dataclass

import pytest

from femb import FaceEmbeddingModel
from femb.training.config import RUN, TrainConfig, schema
from femb.training.options import SEED_ALIASES, SEED_POSITIONAL, FitOptions, split_fit_arguments
from femb.training.run_dir import read_toml, write_toml
from femb.training.schema import ConfigError, option, spec_of, value_type


def _inside(spec, kind) -> object:
    """A value other than the default that the field's declaration allows."""
    if spec.allowed():
        return spec.allowed()[-1]
    if kind is bool:
        return True
    if kind is int:
        return int(spec.high if spec.high is not None else (spec.low or 0) + 7)
    if kind is float:
        return float(spec.high) if spec.high is not None else float((spec.low or 0) + 0.5)
    return None  # a free string: its default (other fields may refer to it)


def test_every_option_declares_its_help_panel_and_a_working_default():
    for field, spec, annotation in schema():
        assert spec.help.strip() and spec.panel, field.name
        kind = value_type(annotation)
        if typing.get_origin(kind) is None and kind in (int, float) and field.name not in ("seed",):
            assert spec.low is not None, f"{field.name}: a number without a range"
    TrainConfig().validate()  # the defaults pass their own checks


def test_every_count_is_bounded():
    counts = [f.name for f, spec, a in schema() if value_type(a) is int]
    assert {"steps", "epochs", "batch_size", "eval_every", "checkpoint_every", "workers"} <= set(counts)
    for field, spec, _ in schema():
        if field.name in counts:
            assert spec.high is not None, f"{field.name} has no upper bound"
            with pytest.raises(ConfigError, match=rf"^{field.name} must be an integer .*≤"):
                TrainConfig.from_dict({field.name: int(spec.high) + 1}, source=None)


def test_a_toml_round_trip_keeps_every_field(tmp_path):
    values = {}
    for field, spec, annotation in schema():
        kind = value_type(annotation)
        if field.name == "head_options":
            values[field.name] = {"m": 0.3}
        elif typing.get_origin(kind) is list:
            values[field.name] = [3, 5] if typing.get_args(kind) == (int,) else ["synthetic:4"]
        else:
            values[field.name] = _inside(spec, kind) or field.default or "x"
    values["head"] = "arcface"
    config = TrainConfig.from_dict(values, source=None)
    path = tmp_path / "config.toml"
    write_toml(path, config.to_dict())
    assert set(read_toml(path)) == {f.name for f, _, _ in schema()}  # TOML keys = field names
    assert TrainConfig.from_dict(read_toml(path), source=str(path)) == config


def test_a_new_option_is_one_line_and_its_range_check_comes_from_that_line():
    @dataclass
    class Extended(TrainConfig):
        new_count: int = option(3, "A new count.", RUN, low=1, high=5)

    assert Extended.from_dict({"new_count": 5}).new_count == 5
    with pytest.raises(
        ConfigError, match=r"^x.toml: new_count must be an integer ≥ 1 and ≤ 5, got 9$"
    ) as info:
        Extended.from_dict({"new_count": 9}, source="x.toml")
    assert info.value.field == "new_count"
    field = {f.name: f for f in dataclasses.fields(Extended)}["new_count"]
    assert spec_of(field).panel == RUN


def test_library_errors_name_the_field_never_a_flag():
    with pytest.raises(ConfigError) as info:
        TrainConfig(eval_every=-1).validate()
    assert str(info.value) == "eval_every must be an integer ≥ 0 and ≤ 1,000,000,000, got -1"
    assert info.value.field == "eval_every" and "--" not in str(info.value)


def test_fit_options_hold_no_configuration():
    configuration = {f.name for f, _, _ in schema()}
    objects = {f.name for f in dataclasses.fields(FitOptions)}
    assert objects & configuration == {"optimizer"}  # the seed API's object; the schema's is its name
    assert objects <= {
        "optimizer",
        "lr_epoch_scheduler",
        "lr_global_step_scheduler",
        "evaluator",
        "val_dataset",
        "tensorboard",
        "callbacks",
        "control",
        "resume",
        "overwrite",
        "config",
    }


def test_fit_takes_the_seed_names_and_the_schema_names_alike():
    config, options = split_fit_arguments(
        (8, "cpu"), {"evaluation_steps": 3, "max_training_steps": 7, "num_workers": 0, "run_name": "r"}
    )
    assert (config.batch_size, config.device, config.eval_every, config.steps, config.name) == (
        8,
        "cpu",
        3,
        7,
        "r",
    )
    config, _ = split_fit_arguments((), {"eval_every": 4, "steps": 9, "optimizer": "adamw"})
    assert (config.eval_every, config.steps, config.optimizer) == (4, 9, "adamw")
    assert options.optimizer is None and config.batch_size == TrainConfig.batch_size  # one default
    with pytest.raises(ConfigError, match="^num_workers must be an integer ≥ 0"):
        split_fit_arguments((), {"num_workers": -1})
    with pytest.raises(TypeError, match="the recipe builds an object from it"):
        split_fit_arguments((), {"backbone": "iresnet50"})
    with pytest.raises(TypeError, match="unexpected option 'nope'"):
        split_fit_arguments((), {"nope": 1})


def test_fits_signature_is_generated_and_keeps_the_seed_order():
    parameters = list(inspect.signature(FaceEmbeddingModel.fit).parameters)
    assert parameters[: 2 + len(SEED_POSITIONAL)] == ["self", "train_dataset", *SEED_POSITIONAL]
    loop_fields = [f.name for f, spec, _ in schema() if not spec.built]
    renamed = {SEED_ALIASES[name] for name in SEED_POSITIONAL if name in SEED_ALIASES}
    assert set(loop_fields) - renamed <= set(parameters)


def test_the_library_names_no_flag_and_builds_no_command():
    """Issue 18, item 2: only the command line speaks in flags and composes femb commands."""
    import ast
    import re
    from pathlib import Path

    import femb

    flag = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]+")
    command = re.compile(r"`?femb (train|verify|export|embed|data|dashboard|runs|stop|demo|info) ")
    found = []
    for path in sorted(Path(femb.__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and flag.search(node.value):
                found.append(f"{path.name}:{node.lineno}: {flag.search(node.value).group()}")
            if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
                if command.match(str(node.values[0].value)):
                    found.append(f"{path.name}:{node.lineno}: a femb command")
    assert found == []
