"""The values a run really uses are visible (issue 18, item 3): the start event, the checkpoint,
`femb runs` and the dashboard's run pane show every head option's effective value (femb's default
scale resolved from the class count), and `femb runs` survives a damaged run (issue 22, item 7)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from femb.checkpoint import load_checkpoint
from femb.headers.base import adacos_scale
from femb.training.config import TrainConfig, config_rows
from femb.training.events import read_events
from femb.training.recipe import train
from femb.training.run_summary import summarize_run, summarize_runs
from femb_cli.dashboard.state import RunState, config_summary
from femb_cli.main import app


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs") / "cos"
    config = TrainConfig(
        data="synthetic:6",
        images_per_identity=4,
        backbone="iresnet_tiny",
        embed_dim=8,
        head="cosface",
        head_options={"m": 0.3},
        batch_size=8,
        steps=1,
        eval_every=0,
        run_dir=str(folder),
        device="cpu",
    )
    train(config, tensorboard=False)
    return folder


def test_the_start_event_and_the_checkpoint_hold_the_effective_head_values(run):
    scale = adacos_scale(6)
    start = next(e for e in read_events(run / "metrics.jsonl") if e["event"] == "start")
    assert start["head"]["name"] == "cosface" and start["head"]["kwargs"]["s"] == pytest.approx(scale)
    assert start["config"]["head_options"] == {"m": 0.3}  # what was asked; the head holds what it used
    header = load_checkpoint(run, prefer="last")["header"]
    assert header["kwargs"]["s"] == pytest.approx(scale) and header["kwargs"]["m"] == 0.3
    rows = {key: value for key, value, _ in config_rows(start["config"], start["head"])}
    assert rows["head.s"] == pytest.approx(scale) and rows["head.m"] == 0.3
    assert {key for key in rows if "." not in key} == set(TrainConfig.__dataclass_fields__) - {"head_options"}


def test_femb_runs_and_the_run_pane_show_them(run):
    scale = adacos_scale(6)
    summary = summarize_run(run)
    assert summary.head_options == f"s={scale:g},m=0.3" and summary.options["eval_every"] == 0
    state = RunState()
    for event in read_events(run / "metrics.jsonl"):
        state.apply(event)
    assert dict(config_summary(state))["head"] == f"cosface s={scale:g} m=0.3"
    result = CliRunner().invoke(app, ["runs", str(run.parent), "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)[0]
    assert record["option/head.s"] == pytest.approx(scale) and record["option/lr"] == 0.1


def test_femb_runs_survives_a_damaged_run(run, tmp_path):
    import shutil

    shutil.copytree(run, tmp_path / "good")
    absurd = tmp_path / "absurd"
    absurd.mkdir()
    event = {"event": "start", "time": 1e300, "total_steps": 1e23, "start_step": 99999999999999999999999}
    (absurd / "metrics.jsonl").write_text(json.dumps(event) + "\n")
    broken = tmp_path / "broken"
    (broken / "metrics.jsonl").mkdir(parents=True)  # a folder where the event file should be
    (broken / "config.toml").write_text('backbone = "x"\n')
    statuses = {summary.name: summary.status for summary in summarize_runs(tmp_path)}
    assert statuses == {"absurd": "died", "broken": "died", "good": "completed"}
    absurd_run = next(summary for summary in summarize_runs(tmp_path) if summary.name == "absurd")
    assert (absurd_run.steps_planned, absurd_run.started, absurd_run.options) == (None, None, {})
    for extra in ([], ["--json"], ["--csv"]):
        result = CliRunner().invoke(app, ["runs", str(tmp_path), *extra])
        assert result.exit_code == 0, result.output
        assert "good" in result.output and "broken" in result.output and "absurd" in result.output
