"""`femb train`'s options are generated from the schema (issue 18, item 1), errors are translated
to flags in one place (item 2), counts are bounded (issue 22, item 7), and a binary --config
names the file (issue 22, item 9)."""

from __future__ import annotations

import re
import typing

import typer
from cli_helpers import TINY_TRAIN
from typer.testing import CliRunner

from femb.training.config import TrainConfig, schema
from femb.training.run_dir import read_toml
from femb.training.schema import value_type
from femb_cli.errors import flag
from femb_cli.main import app

runner = CliRunner()


def one_error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_help_shows_every_schema_option_with_its_default_and_range():
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "500"})
    assert result.exit_code == 0
    text = re.sub(r"[\s│]+", " ", result.output)
    for field, spec, annotation in schema():
        assert flag(field.name) in text, field.name
        kind = value_type(annotation)
        default = field.default
        if kind is bool:
            assert f"[default: {'' if default else 'no-'}{field.name.replace('_', '-')}]" in text
        elif default is not None and typing.get_origin(kind) is None:
            assert f"[default: {default}]" in text, field.name
        if spec.allowed():
            assert f"({' | '.join(spec.allowed())})" in text, field.name
        elif kind in (int, float) and spec.high is not None:
            assert f"({spec.range_text(kind is int)})" in text, field.name
    assert "arcface: s=auto (papers: 64), m=0.5" in text  # femb's default beside the papers' value
    for panel in {spec.panel for _, spec, _ in schema()}:
        assert f"─ {panel} ─" in result.output


def test_an_absurd_count_and_a_bad_process_count_are_refused_by_name(tmp_path):
    run = tmp_path / "run"
    base = ["train", "--no-dashboard", "--run-dir", str(run)]
    line = one_error_line(runner.invoke(app, [*base, "--steps", "99999999999999999999999"]))
    assert line.startswith("error: --steps must be an integer ≥ 0 and ≤ 1,000,000,000, got 9999")
    line = one_error_line(runner.invoke(app, [*base, "--nproc-per-node", "0"]))
    assert "--nproc-per-node 0" in line
    line = one_error_line(runner.invoke(app, [*base, "--milestones", "3", "--milestones", "-1"]))
    assert "--milestones must be an integer ≥ 0" in line  # a repeatable option, each value checked
    assert not run.exists()


def test_a_bad_value_in_the_config_file_is_named_by_its_key_and_a_binary_file_by_its_name(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text("eval_every = -3\n")
    base = ["train", "--no-dashboard", "--run-dir", str(tmp_path / "run"), "--config", str(config)]
    assert one_error_line(runner.invoke(app, base)) == (
        f"error: {config}: eval_every must be an integer ≥ 0 and ≤ 1,000,000,000, got -3"
    )
    # Given on the command line too: that value wins and its flag is named.
    line = one_error_line(runner.invoke(app, [*base, "--eval-every", "-4"]))
    assert line.startswith("error: --eval-every must be an integer ≥ 0") and line.endswith("got -4")
    config.write_bytes(bytes(range(256)) * 4)
    line = one_error_line(runner.invoke(app, base))
    assert line.startswith(f"error: {config}: not a TOML text file")
    config.write_text("a = " + "[" * 100_000 + "\n")
    line = one_error_line(runner.invoke(app, base))
    assert line == f"error: {config}: not valid TOML (values nested too deeply)"


def test_a_command_line_only_option_is_one_entry(monkeypatch):
    from femb_cli import train

    extra = train.CliOption(
        bool, False, typer.Option("--extra-test", help="A test option.", rich_help_panel="Run")
    )
    monkeypatch.setitem(train.CLI_ONLY, "extra_test", extra)
    parameters = train.command_signature().parameters
    assert "extra_test" in parameters and parameters["extra_test"].default is False
    assert set(TrainConfig.__dataclass_fields__) <= set(parameters)


def test_a_repeatable_option_reaches_the_config(tmp_path):
    run = tmp_path / "run"
    args = [*TINY_TRAIN, "--steps", "1", "--eval-every", "0", "--milestones", "3", "--milestones", "5"]
    result = runner.invoke(app, ["train", *args, "--scheduler", "multistep", "--run-dir", str(run)])
    assert result.exit_code == 0, result.output
    assert read_toml(run / "config.toml")["milestones"] == [3, 5]
