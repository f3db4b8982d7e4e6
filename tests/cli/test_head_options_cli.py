"""`femb train --head NAME --head-opt KEY=VALUE`: the head's own declarations, end to end.

Parsing, errors (one line naming the head and its options), `--help` and `femb info` generated
from the registry, the `[head_options]` table in config.toml, and the refusal of a config.toml
with head options at the top level (a shape never released).
"""

from __future__ import annotations

import json

import pytest
import tomli_w
from cli_helpers import TINY_TRAIN
from typer.testing import CliRunner

from femb.checkpoint import load_checkpoint
from femb.headers import head_options, list_headers
from femb.training.events import read_events
from femb.training.run_dir import read_toml
from femb_cli.main import app

runner = CliRunner()
TINY = [*TINY_TRAIN, "--eval-every", "0"]


def train(*args):
    return runner.invoke(app, ["train", *TINY, *map(str, args)])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--head-opt", "m"], "--head-opt 'm': expected KEY=VALUE, e.g. --head-opt m=0.4"),
        (["--head-opt", "=0.3"], "--head-opt '=0.3': expected KEY=VALUE"),
        (
            ["--head", "adaface", "--head-opt", "k=3"],
            "--head-opt: head 'adaface' has no option 'k'; its options: s=",
        ),
        (
            ["--head", "adaface", "--head-opt", "h=abc"],
            "--head-opt: head 'adaface': option h='abc': expected float",
        ),
        (["--head", "adaface", "--head-opt", "t_alpha=2"], "option t_alpha=2.0: expected a float in [0, 1]"),
        (["--head", "subcenter_arcface", "--head-opt", "k=2.5"], "option k='2.5': expected int"),
        (
            ["--head", "elasticface", "--head-opt", "variant=tan"],
            "option variant='tan': expected one of arc, cos",
        ),
        (["--head", "linear", "--s", "30"], "--s: head 'linear' has no option 's'; its options: bias=False"),
        (["--s", "30", "--head-opt", "s=20"], "--s and --head-opt s=… both set the head's s"),
        (["--head", "nope", "--m", "0.3"], "--head 'nope': not one of"),
    ],
)
def test_bad_head_options_are_one_line(tmp_path, args, message):
    result = runner.invoke(app, ["train", "--no-dashboard", "--run-dir", str(tmp_path / "run"), *args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.output
    assert not (tmp_path / "run").exists()


def test_head_opt_trains_that_head_with_those_options(tmp_path):
    run_dir = tmp_path / "run"
    result = train(
        "--head", "adaface", "--head-opt", "h=0.5", "--head-opt", "t_alpha=1", "--s", 30,
        "--steps", 2, "--run-dir", run_dir,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert read_toml(run_dir / "config.toml")["head_options"] == {"h": 0.5, "t_alpha": 1.0, "s": 30.0}
    header = load_checkpoint(run_dir, prefer="last")["header"]
    assert header["name"] == "adaface"
    assert {key: header["kwargs"][key] for key in ("h", "t_alpha", "s", "m")} == {
        "h": 0.5,
        "t_alpha": 1.0,
        "s": 30.0,
        "m": 0.4,  # the head's declared default
    }
    start = next(e for e in read_events(run_dir / "metrics.jsonl") if e["event"] == "start")
    assert start["config"]["head_options"] == {"h": 0.5, "t_alpha": 1.0, "s": 30.0}


def test_a_head_table_in_a_config_file_and_head_opt_on_top(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('[head]\nname = "cosface"\ns = 30.0\nm = 0.2\n')
    run_dir = tmp_path / "run"
    result = train("--config", config, "--head-opt", "m=0.3", "--steps", 1, "--run-dir", run_dir)
    assert result.exit_code == 0, result.output
    resolved = read_toml(run_dir / "config.toml")
    assert (resolved["head"], resolved["head_options"]) == ("cosface", {"s": 30.0, "m": 0.3})


def test_resume_of_a_config_with_top_level_head_keys_is_refused_by_name(tmp_path):
    """Head options at the top level of config.toml were never released: such a file is refused."""
    run_dir = tmp_path / "run"
    first = train("--head", "cosface", "--s", 30, "--m", 0.25, "--steps", 2, "--run-dir", run_dir)
    assert first.exit_code == 0, first.output
    config = read_toml(run_dir / "config.toml")
    config.update(config.pop("head_options"), steps=4)
    (run_dir / "config.toml").write_text(tomli_w.dumps(config))
    resumed = runner.invoke(app, ["train", "--resume", str(run_dir), "--no-dashboard"])
    assert resumed.exit_code == 2, resumed.output
    assert f"{run_dir / 'config.toml'}: unknown option 'm'" in resumed.output


def test_resume_names_a_head_option_it_ignores(tmp_path):
    run_dir = tmp_path / "run"
    assert train("--head", "cosface", "--s", 30, "--steps", 1, "--run-dir", run_dir).exit_code == 0
    config = read_toml(run_dir / "config.toml")
    (run_dir / "config.toml").write_text(tomli_w.dumps({**config, "steps": 2}))
    resumed = runner.invoke(
        app, ["train", "--resume", str(run_dir), "--no-dashboard", "--head-opt", "m=0.1", "--s", "30"]
    )
    assert resumed.exit_code == 0, resumed.output
    warning = next(line for line in resumed.output.splitlines() if line.startswith("warning:"))
    assert "--head-opt m" in warning and "--s" not in warning  # s=30 is the recorded value: no change


def test_help_lists_every_heads_options_from_the_registry():
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "--head-opt" in result.output
    for name in list_headers():
        line = next(line for line in result.output.splitlines() if line.strip().startswith(f"{name}:"))
        for option in head_options(name):
            assert f"{option.name}=" in line
    assert " | ".join(list_headers()) in " ".join(result.output.split())


def test_info_lists_the_heads_options_with_defaults_and_help():
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.output.splitlines()]
    adaface = lines.index("adaface")
    described = lines[adaface + 1 : adaface + 1 + len(head_options("adaface"))]
    assert described == [option.describe() for option in head_options("adaface")]
    assert any(line.startswith("h=0.333") and "norm" in line for line in described)

    facts = json.loads(runner.invoke(app, ["info", "--json"]).stdout)
    assert set(facts["head_options"]) == set(list_headers())
    by_name = {option["name"]: option for option in facts["head_options"]["adaface"]}
    assert by_name["t_alpha"]["default"] == 0.01 and by_name["t_alpha"]["type"] == "float"
