"""Issue 11, item 10: `femb dashboard --replay` never crashes on a malformed metrics file, and a
crash inside the dashboard exits non-zero."""

from __future__ import annotations

import asyncio
import functools
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from femb.training.events import EventFollower
from femb_cli.dashboard import DashboardApp, create_dashboard_app
from femb_cli.dashboard.state import RunState, config_summary, one_line_summary, status_word
from femb_cli.dashboard.widgets import RunLog, metrics_text
from femb_cli.main import app as cli_app

GOOD_START = {
    "event": "start",
    "run_name": "demo",
    "total_steps": 10,
    "config": {"lr": 0.1, "head": "arcface"},
}
HUGE_INT = "9" * 4000  # below Python's 4300-digit limit: json.loads turns it into an int
MALFORMED_LINES = [
    b"[1, 2, 3]",
    b'"just a string"',
    b"42",
    b"null",
    b"\xff\xfe not utf-8 \x80",
    b'{"event": "step", "step": 1e308, "loss": 1e308, "lr": 1e999}',
    b'{"event": "step", "step": ' + b"1" * 5000 + b', "loss": 1.0}',  # 5000 digits: refused by json
    b'{"event": "step", "step": ' + HUGE_INT.encode() + b', "loss": ' + HUGE_INT.encode() + b"}",
    b'{"event": "step", "step": "abc", "loss": 1.0}',
    b'{"event": "step", "step": 2, "loss": null, "epoch": "x"}',
    b'{"event": "step", "step": 3, "loss": [1], "lr": {"a": 1}, "images_per_s": "fast"}',
    b'{"event": "step", "step": -5, "loss": -1e308}',
    b'{"event": "start", "config": "abc", "total_steps": "many", "num_classes": [1], "run_name": 7}',
    b'{"event": "start", "config": {"lr": "0.1", "s": [1], "embed_dim": 1e308, "head": 3, "amp": {}},'
    b' "num_parameters": 1e308, "batch_size": true, "start_step": 1e999, "device": ["cpu"]}',
    b'{"event": "eval", "step": "[bold red]x[/]", "accuracy": 1e308, "is_best": "yes", "eer": [0]}',
    b'{"event": "eval", "step": 4, "accuracy": 0.75, "accuracy_std": "[/]", "auc": 1e999}',
    b'{"event": "checkpoint", "step": {}, "path": 5, "kind": ["best"]}',
    b'{"event": "log", "level": "[not a style", "message": ["a", "list"]}',
    b'{"event": "log", "level": ["warning"], "message": "[bold]markup[/] stays text"}',
    b'{"event": "pause", "paused": "no", "step": null}',
    b'{"event": "bogus", "step": 1}',
    b'{"event": 5}',
    b'{"event": "end", "step": 1e999, "reason": ["x"], "message": 3, "resume_command": 4}',
]


def write_lines(run_dir: Path, lines: list[bytes]) -> None:
    (run_dir / "metrics.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))


def run_async(test):
    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        return asyncio.run(test(*args, **kwargs))

    return wrapper


@run_async
async def test_replay_of_a_malformed_file_shows_what_it_can(tmp_path):
    lines = [json.dumps(GOOD_START).encode(), *MALFORMED_LINES]
    lines += [json.dumps({"event": "step", "step": 9, "loss": 2.5, "lr": 0.01}).encode()]
    write_lines(tmp_path, lines)
    app = create_dashboard_app(follow_run_dir=tmp_path, replay=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        app.refresh_now()
        await pilot.pause()
        assert app.state.step == 9 and app.state.loss == 2.5
        assert app.state.ended  # the malformed end event still ends the run
        log = app.query_one(RunLog).lines_text
        assert any("skipped a malformed 'step' event" in line for line in log)
        assert any("[bold]markup[/] stays text" in line for line in log)
        await pilot.press("q")
    assert app.return_code == 0


def test_cli_replay_of_a_malformed_file_exits_zero(tmp_path, monkeypatch):
    write_lines(tmp_path, [json.dumps(GOOD_START).encode(), *MALFORMED_LINES])
    monkeypatch.setattr(DashboardApp, "run", _headless_run_then_quit)
    result = CliRunner().invoke(cli_app, ["dashboard", str(tmp_path), "--replay"])
    assert result.exit_code == 0, result.output


def test_a_crash_inside_the_dashboard_exits_non_zero(tmp_path, monkeypatch):
    write_lines(tmp_path, [json.dumps(GOOD_START).encode()])

    def broken(self, event):
        raise RuntimeError("a bug in the dashboard")

    monkeypatch.setattr(RunState, "apply", broken)
    monkeypatch.setattr(DashboardApp, "run", _headless_run_then_quit)
    result = CliRunner().invoke(cli_app, ["dashboard", str(tmp_path), "--replay"])
    assert result.exit_code == 1, result.output


def _headless_run_then_quit(self):
    async def quit_soon(pilot):
        await pilot.pause()
        if self.return_code is None:  # not after a crash: exit() would reset its code to 0
            self.exit()

    return DashboardApp.__mro__[1].run(self, headless=True, size=(100, 30), auto_pilot=quit_soon)


# Arbitrary lines: JSON objects with the known field names and values of any JSON type, raw bytes.
json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(10**400), max_value=10**400),
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from([1e308, -1e308, 5e-324]),
        st.text(max_size=20),
        st.sampled_from(["[bold]", "[/]", "start", "step", "warning", "completed"]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
FIELD_NAMES = ["event", "step", "epoch", "loss", "lr", "images_per_s", "eta_s", "emb_norm_mean", "config"]
FIELD_NAMES += ["run_name", "total_steps", "start_step", "num_classes", "num_parameters", "batch_size"]
FIELD_NAMES += ["accuracy", "accuracy_std", "is_best", "paused", "reason", "message", "level", "path"]
events = st.fixed_dictionaries(
    {"event": st.sampled_from(["start", "step", "eval", "checkpoint", "log", "pause", "end", "other"])},
    optional={name: json_values for name in FIELD_NAMES[1:]},
)
lines = st.one_of(
    events.map(lambda event: json.dumps(event).encode()),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.binary(max_size=40),
    events.map(lambda event: json.dumps(event).encode().replace(b'"loss": 1', b'"loss": 1e999')),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.lists(lines, max_size=12))
def test_any_metrics_file_reads_and_folds_without_an_exception(tmp_path, body):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b"\n".join(body) + b"\n")
    state = RunState()
    for event in EventFollower(path).poll():
        assert isinstance(event, dict) and isinstance(event["event"], str)
        try:
            state.apply(event)
        except ValueError:
            pass  # an unusable step number: the dashboard logs and skips that event
    # Whatever was folded in, every text the widgets show can be built.
    metrics_text(state)
    config_summary(state)
    one_line_summary(state)
    status_word(state)
    assert all(abs(y) <= 1e15 for y in state.loss_curve.ys + state.accuracy_curve.ys)
    assert all(0 <= x <= 10**15 for x in state.loss_curve.xs)


@pytest.mark.parametrize("line", MALFORMED_LINES, ids=range(len(MALFORMED_LINES)))
def test_each_malformed_line_alone(tmp_path, line):
    write_lines(tmp_path, [line])
    state = RunState()
    for event in EventFollower(tmp_path / "metrics.jsonl").poll():
        try:
            state.apply(event)
        except ValueError:
            pass
    metrics_text(state)
    config_summary(state)
