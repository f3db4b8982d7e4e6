"""Summarising a run directory from hand-written event logs: resumed sessions, damage, end reasons."""

import json

import pytest

from femb.training.run_dir import RunDir, RunLock
from femb.training.run_summary import is_run_dir, runs_frame, summarize_run, summarize_runs


def _write_run(folder, events, config='backbone = "iresnet_tiny"\nhead = "cosface"\nsteps = 10\n', tail=""):
    folder.mkdir(parents=True)
    if config is not None:
        (folder / "config.toml").write_text(config)
    lines = "".join(json.dumps(event) + "\n" for event in events)
    (folder / "metrics.jsonl").write_text(lines + tail)
    return folder


def _start(time, start_step=0, total=10):
    return {"event": "start", "time": time, "start_step": start_step, "total_steps": total}


def _step(time, step):
    return {"event": "step", "time": time, "step": step}


def _eval(time, step, accuracy):
    return {"event": "eval", "time": time, "step": step, "accuracy": accuracy}


def _end(time, step, reason):
    return {"event": "end", "time": time, "step": step, "reason": reason}


def test_a_resumed_run_counts_both_sessions_but_not_the_pause_between(tmp_path):
    events = [
        _start(100.0), _step(101.0, 1), _eval(102.0, 1, 0.7), _step(110.0, 2), _end(110.0, 2, "stopped"),
        _start(500.0, start_step=2), _step(501.0, 3), _eval(502.0, 3, 0.9), _eval(503.0, 4, 0.9),
        _end(505.0, 4, "completed"),
    ]  # fmt: skip
    summary = summarize_run(_write_run(tmp_path / "r", events))
    assert (summary.steps_done, summary.steps_planned, summary.status) == (4, 10, "completed")
    assert (summary.best_accuracy, summary.best_step) == (0.9, 3)  # the first step that reached it
    assert summary.started == 100.0 and summary.duration_s == pytest.approx(10.0 + 5.0)
    assert (summary.backbone, summary.head) == ("iresnet_tiny", "cosface")


@pytest.mark.parametrize(
    ("reason", "status"),
    [("completed", "completed"), ("stopped", "stopped"), ("interrupted", "stopped"),
     ("nonfinite", "error"), ("error", "error"), ("from-the-future", "error")],
)  # fmt: skip
def test_end_reasons_fold_into_a_few_statuses(tmp_path, reason, status):
    summary = summarize_run(_write_run(tmp_path / "r", [_start(1.0), _end(2.0, 0, reason)]))
    assert (summary.status, summary.end_reason) == (status, reason)


def test_a_resumed_session_without_an_end_is_not_the_earlier_sessions_end(tmp_path):
    events = [_start(1.0), _end(2.0, 5, "stopped"), _start(3.0, start_step=5), _step(4.0, 6)]
    summary = summarize_run(_write_run(tmp_path / "r", events))
    assert (summary.status, summary.end_reason, summary.steps_done) == ("died", None, 6)


def test_a_held_lock_means_running_and_times_the_session_to_now(tmp_path):
    run = _write_run(tmp_path / "r", [_start(100.0), _step(101.0, 1)])
    with RunLock(RunDir(run)):
        summary = summarize_run(run, now=160.0)
    assert (summary.status, summary.duration_s) == ("running", 60.0)
    assert summarize_run(run).status == "died"  # released: nothing trains it any more


def test_damage_is_missing_information_not_an_error(tmp_path):
    events = [
        {**_start(1.0), "config": {"backbone": "from_start", "head": "arcface"}, "total_steps": "many"},
        {"event": "step", "time": "noon", "step": -3},
        {"event": "eval", "time": 2.0, "step": 1, "accuracy": 7.5},
        ["not", "an", "event"],
    ]
    run = _write_run(tmp_path / "r", events, config="not = [valid", tail='{"event": "end", "re')
    summary = summarize_run(run)
    assert (summary.backbone, summary.head, summary.steps_planned) == ("from_start", "arcface", None)
    assert (summary.steps_done, summary.best_accuracy, summary.status) == (1, None, "died")  # the eval's step


def test_folders_that_are_not_runs_are_skipped_and_the_frame_sorts_by_accuracy(tmp_path):
    _write_run(tmp_path / "a", [_start(1.0), _eval(2.0, 1, 0.6)])
    _write_run(tmp_path / "b", [_start(1.0)])
    _write_run(tmp_path / "c", [_start(1.0), _eval(2.0, 1, 0.8)])
    (tmp_path / "plots").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    assert not is_run_dir(tmp_path / "plots")
    frame = runs_frame(summarize_runs(tmp_path))
    assert list(frame["name"]) == ["c", "a", "b"]
