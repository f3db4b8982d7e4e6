"""The dashboard's state, without Textual: folding events, curves, formatting."""

from __future__ import annotations

import pytest

from femb_cli.dashboard.state import (
    EMA_BETA,
    MAX_POINTS,
    RunState,
    Series,
    config_summary,
    format_duration,
    integer_ticks,
    one_line_summary,
    status_word,
)


def test_series_stays_bounded_and_keeps_the_shape():
    series = Series()
    for step in range(1, 3 * MAX_POINTS + 1):
        series.add(step, float(step))
    assert len(series) <= MAX_POINTS
    assert series.xs[0] == 1 and series.xs == sorted(series.xs)
    assert all(x == y for x, y in zip(series.xs, series.ys, strict=True))
    xs, _ = series.thinned(100)
    assert len(xs) <= 102 and xs[-1] == series.xs[-1]


def test_ema_is_debiased_and_skips_missing_losses():
    state = RunState()
    state.apply({"event": "step", "step": 1, "loss": 10.0, "lr": 0.1})
    assert state.loss_ema == pytest.approx(10.0)  # no pull towards zero at the start
    state.apply({"event": "step", "step": 2, "loss": 0.0, "lr": 0.1})
    assert state.loss_ema == pytest.approx(EMA_BETA * 10 * (1 - EMA_BETA) / (1 - EMA_BETA**2))
    state.apply({"event": "step", "step": 3, "loss": None, "lr": 0.1})  # NaN written as null
    assert len(state.loss_curve) == 2 and state.step == 3


def test_events_fold_into_best_pause_end_and_resume():
    state = RunState()
    state.apply({"event": "start", "total_steps": 10, "config": {}, "device": "cpu", "run_name": "r"})
    state.apply({"event": "eval", "step": 5, "accuracy": 0.9, "is_best": True})
    state.apply({"event": "eval", "step": 10, "accuracy": 0.8, "is_best": False})
    assert state.best_eval["step"] == 5 and state.last_eval["step"] == 10
    state.apply({"event": "pause", "paused": True, "step": 10})
    assert status_word(state) == "paused"
    state.apply({"event": "end", "step": 10, "reason": "stopped", "message": ""})
    assert status_word(state) == "stopped" and state.progress == 1.0
    state.apply({"event": "start", "total_steps": 20, "start_step": 10, "config": {}})  # --resume
    assert not state.ended and status_word(state) == "running" and len(state.accuracy_curve) == 2
    state.apply({"event": "something-new"})  # files from a later version still load


def test_config_summary_tolerates_a_bare_fit():
    state = RunState()
    state.apply({"event": "start", "config": {}, "device": "cpu", "batch_size": 16, "total_steps": 3})
    assert dict(config_summary(state)) == {"batch": "16", "device": "cpu", "steps": "3"}
    assert one_line_summary(state) == "batch 16 · cpu"


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [(1, 200, [50, 100, 150, 200]), (0, 3, [0, 1, 2, 3]), (5, 5, [5]), (1000, 51000, [20000, 40000])],
)
def test_integer_ticks(low, high, expected):
    assert integer_ticks(low, high) == expected


def test_format_duration():
    assert (format_duration(None), format_duration(65), format_duration(3 * 3600 + 120)) == (
        "–",
        "1m05s",
        "3h02m",
    )


def test_config_summary_shows_any_heads_options_from_the_config():
    """A head the dashboard has never heard of: its options come from the run's config table."""
    state = RunState()
    config = {"head": "frobface", "head_options": {"q": 0.7, "mode": "wide", "plus": True, "bad": [1]}}
    state.apply({"event": "start", "config": config})
    assert dict(config_summary(state))["head"] == "frobface q=0.7 mode=wide plus=true"
    state.apply({"event": "start", "config": {"head": "cosface", "head_options": "s=3"}})  # not a table
    assert dict(config_summary(state))["head"] == "cosface m=0.35"  # the head's own defaults


def test_config_summary_shows_processes_weights_and_partial_fc():
    state = RunState()
    weights = "/models/arcface_torch/ms1mv3_arcface_r50_fp16/backbone.pth"
    config = {"head": "arcface", "head_options": {"s": 64.0}, "init_backbone": weights, "sample_rate": 0.1}
    state.apply({"event": "start", "config": config, "world_size": 2, "device": "cpu"})
    rows = dict(config_summary(state))
    assert rows["processes"] == "2"
    assert rows["head"] == "arcface s=64 m=0.5 easy_margin=false Partial FC r=0.1"
    assert rows["weights"].startswith("…") and rows["weights"].endswith("r50_fp16/backbone.pth")
    assert len(rows["weights"]) <= 29
    assert "Partial FC r=0.1" in one_line_summary(state)

    from femb_cli.dashboard.widgets import metrics_text

    state.apply({"event": "step", "step": 1, "loss": 1.0, "images_per_s": 2048.0})
    assert "2,048.0 img/s 2 procs" in metrics_text(state).plain  # the global figure, said so

    # One process, no fine-tuning, the full head: none of the three rows.
    state.apply({"event": "start", "config": {"head": "arcface", "sample_rate": 1.0}, "world_size": 1})
    rows = dict(config_summary(state))
    assert "processes" not in rows and "weights" not in rows
    assert rows["head"] == "arcface m=0.5 easy_margin=false"  # the head's own defaults, as used
