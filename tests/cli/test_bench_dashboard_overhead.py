"""benchmarks/bench_dashboard_overhead.py: how it times steps, its interval, and a real short run."""

from __future__ import annotations

import shutil

import pytest


def test_rate_leaves_out_the_gaps_of_checkpoints_and_evaluations(benchmark):
    bench = benchmark("bench_dashboard_overhead")
    timed = [
        {"event": "step", "step": 10, "time": 0.0},
        {"event": "step", "step": 11, "time": 0.5},
        {"event": "checkpoint", "step": 11, "time": 5.0},  # 4.5 s of writing: not training speed
        {"event": "step", "step": 12, "time": 5.5},
        {"event": "eval", "step": 12, "time": 20.0},
        {"event": "step", "step": 13, "time": 20.5},
        {"event": "step", "step": 14, "time": 21.0},
    ]
    assert bench.rate(timed) == pytest.approx(2 / 1.0)  # 10→11 and 13→14: two steps in one second
    with pytest.raises(RuntimeError, match="too few step events"):
        bench.rate(timed[:1])


def test_windows_begin_after_the_first_epoch(benchmark):
    bench = benchmark("bench_dashboard_overhead")
    start = {"event": "start", "steps_per_epoch": 75}
    steps = [{"event": "step", "step": n} for n in range(1, 80)]
    assert not bench.past_first_epoch(steps, warmup=3)  # no start event yet
    assert not bench.past_first_epoch([start, *steps[:77]], warmup=3)
    assert bench.past_first_epoch([start, *steps[:78]], warmup=3)


def test_ratio_summary_is_the_mean_ratio_with_a_t_interval(benchmark):
    bench = benchmark("bench_dashboard_overhead")
    pairs = [(2.0, 2.0), (2.0, 2.2), (2.0, 1.8)]  # ratios 1.0, 1.1, 0.9: mean 1, sd 0.1
    half = 4.303 * 0.1 / 3**0.5  # t(0.975, 2 degrees of freedom)
    assert bench.ratio_summary(pairs) == f"1.000 [{1 - half:.3f}, {1 + half:.3f}]"
    assert bench.ratio_summary([(2.0, 1.5)]) == "0.750"


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_within_one_run_attaches_and_detaches_the_dashboard(benchmark, capsys):
    """The quick version, for real: a `femb train` whose terminal is closed after its warm-up goes on
    training detached while `femb dashboard` comes and goes; every window has steps to time."""
    bench = benchmark("bench_dashboard_overhead")
    args = ["--modes", "within", "--shapes", "train", "--window", "3", "--settle", "1", "--pairs", "2"]
    assert bench.main([*args, "--warmup", "3", "--train-data", "synthetic:20"]) == 0
    captured = capsys.readouterr()
    windows = [line.split() for line in captured.err.splitlines() if line.startswith("  train ")]
    assert [w[1] for w in windows] == ["detached", "attached", "attached", "detached"]
    assert all(float(w[2]) > 0 for w in windows)
    row = next(line for line in captured.out.splitlines() if "femb train" in line)
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[:2] == ["one run, 3 s windows", "femb train"] and cells[5] == "2"
    assert 0 < float(cells[6]) < 0.5  # the dashboard's cores while attached: drawing, not idle, not spinning


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_whole_runs_against_the_detached_child(benchmark, capsys):
    """``--against detached``: whole runs with the dashboard against the same child process alone
    (`femb train --detach`, which returns at once: its run is waited for to its end event)."""
    bench = benchmark("bench_dashboard_overhead")
    args = ["--modes", "runs", "--shapes", "train", "--steps", "8", "--warmup", "2", "--repeats", "1"]
    assert bench.main([*args, "--against", "detached", "--train-data", "synthetic:20"]) == 0
    captured = capsys.readouterr()
    runs = [line.split() for line in captured.err.splitlines() if line.startswith("  train ")]
    assert [r[1] for r in runs] == ["detached", "dashboard"] and all(float(r[2]) > 0 for r in runs)
    row = next(line for line in captured.out.splitlines() if "femb train" in line)
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[:2] == ["runs of 8 steps, against --detach", "femb train"] and cells[5] == "1"
