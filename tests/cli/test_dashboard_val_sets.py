"""The dashboard with several validation sets (issue 19 item 1): one accuracy curve per set with a
legend, each set's latest accuracy in the metrics pane, legible at 80×24 with three to five sets."""

from __future__ import annotations

import math

import pytest
from test_dashboard import COMPACT, run_async, screen_text, start_event, step_event, write_events

from femb_cli.dashboard import create_dashboard_app
from femb_cli.dashboard.state import MAX_SETS, RunState, sets_text

NAMES = ["lfw", "cfp_fp", "agedb_30", "calfw", "cplfw"]


def sets_eval(step: int, names: list[str]) -> dict:
    """An eval event as the loop writes it: each set's figures under its name, the mean on top."""
    sets = {
        name: {"accuracy": 0.5 + 0.45 * (1 - math.exp(-step / (60 + 40 * i))), "accuracy_std": 0.01}
        for i, name in enumerate(names)
    }
    mean = sum(figures["accuracy"] for figures in sets.values()) / len(sets)
    return {"event": "eval", "time": 0.0, "step": step, "accuracy": mean, "best_on": "mean", "sets": sets}


def run_events(names: list[str], steps: int = 200, every: int = 25) -> list[dict]:
    events = [start_event(total_steps=steps)]
    for step in range(1, steps + 1):
        events.append(step_event(step, steps))
        if step % every == 0:
            events.append(sets_eval(step, names))
    return events


def test_the_state_keeps_one_curve_per_set_and_each_sets_latest_figures():
    state = RunState()
    for event in run_events(NAMES[:4]):
        state.apply(event)
    assert list(state.set_curves) == NAMES[:4]
    assert all(curve.xs == [25.0 * k for k in range(1, 9)] for curve in state.set_curves.values())
    last = state.last_eval
    assert list(last["sets"]) == NAMES[:4] and last["best_on"] == "mean"
    assert last["sets"]["lfw"]["accuracy"] == pytest.approx(state.set_curves["lfw"].ys[-1])
    assert len(state.accuracy_curve) == 8  # the mean: what best.pt follows
    assert sets_text({"sets": last["sets"]}).startswith("  lfw 0.")


def test_set_names_and_figures_are_checked_and_bounded():
    state = RunState()
    many = {f"set{i}": {"accuracy": 0.9} for i in range(MAX_SETS + 4)}
    state.apply({"event": "eval", "step": 1, "accuracy": 0.9, "sets": {**many, "bad": [1], "x" * 500: {}}})
    assert len(state.set_curves) == MAX_SETS and "bad" not in state.last_eval["sets"]
    state.apply({"event": "eval", "step": 2, "accuracy": 0.9, "sets": "not a table"})
    assert state.last_eval["sets"] == {}
    assert sets_text({"sets": {"only": {"accuracy": 0.9}}}) == ""  # one set: its figures are the run's


@pytest.mark.parametrize("count", [3, 5])
@run_async
async def test_80x24_shows_every_sets_curve_name_and_latest_accuracy(tmp_path, count):
    names = NAMES[:count]
    write_events(tmp_path / "metrics.jsonl", run_events(names))
    app = create_dashboard_app(follow_run_dir=tmp_path, replay=True, title="femb dashboard · demo")
    async with app.run_test(size=COMPACT) as pilot:
        await pilot.pause()
        app.refresh_now()
        await pilot.pause()
        text = screen_text(app)
        lines = text.splitlines()
        assert len(lines) == 24 and max(len(line) for line in lines) <= 80
        last = app.state.last_eval["sets"]
        for name in names:
            # the legend of the accuracy plot (top half) and the metrics pane's row (bottom half)
            assert any(name in line for line in lines[:11]), (name, text)
            row = next(line for line in lines[11:] if f"│ {name} " in line)
            assert f"{last[name]['accuracy']:.4f} ± 0.0100" in row
        assert any("best " in line and "on mean" in line for line in lines[11:]), text
