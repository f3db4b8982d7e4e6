"""What the live dashboard costs a training: steps/s with the dashboard attached against --no-dashboard.

The real commands, for the two shapes a user meets: a plain ``femb train`` and ``femb demo``. The
training runs in its own process either way; with the dashboard, the dashboard draws in a real
(headless) terminal, tmux, 120×40, beside it. Steps/s is read from the run's own metrics.jsonl
(the step events' times) after ``--warmup`` steps, so start-up, export and verification do not
count. Runs alternate (plain, dashboard, dashboard, plain, …) so that machine noise hits both
alike; prints the median of ``--repeats`` runs of each and the ratio (the goal: at most 3% slower).

    python benchmarks/bench_dashboard_overhead.py --steps 40 --warmup 10 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from femb.training.events import read_events

FEMB = [sys.executable, "-m", "femb_cli.main"]


def steps_per_s(run_dir: Path, warmup: int) -> float:
    steps = [e for e in read_events(run_dir / "metrics.jsonl") if e.get("event") == "step"]
    timed = [e for e in steps if e["step"] >= warmup]
    if len(timed) < 2:
        raise RuntimeError(f"{run_dir}: too few step events ({len(steps)}) to time")
    return (timed[-1]["step"] - timed[0]["step"]) / (timed[-1]["time"] - timed[0]["time"])


def command(shape: str, run_dir: Path, steps: int, dashboard: bool) -> list[str]:
    flag = "--dashboard" if dashboard else "--no-dashboard"
    if shape == "demo":
        return [
            *FEMB,
            "demo",
            "--steps",
            str(steps),
            "--run-dir",
            str(run_dir),
            "-o",
            f"{run_dir}.onnx",
            flag,
        ]
    return [*FEMB, "train", "--steps", str(steps), "--eval-every", "0", "--run-dir", str(run_dir), flag]


def ended(run_dir: Path) -> bool:
    return any(e.get("event") == "end" for e in read_events(run_dir / "metrics.jsonl"))


def run_in_terminal(argv: list[str], run_dir: Path, timeout: float) -> None:
    """``argv`` in a tmux terminal until its run has ended (then q closes a dashboard left open)."""
    session = f"femb-overhead-{run_dir.name}"
    done = run_dir.with_suffix(".done")
    # The tmux server's environment is whoever started it first: pass on this one's import path.
    path = f"PYTHONPATH={os.environ['PYTHONPATH']} " if os.environ.get("PYTHONPATH") else ""
    line = f"{path}{' '.join(argv)}; touch {done}"
    subprocess.run(["tmux", "new-session", "-d", "-x", "120", "-y", "40", "-s", session, line], check=True)
    try:
        deadline = time.monotonic() + timeout
        while not done.exists() and time.monotonic() < deadline:
            if ended(run_dir):
                subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=False)
            time.sleep(1)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False, capture_output=True)


def measure(shape: str, dashboard: bool, folder: Path, index: int, args) -> float:
    run_dir = folder / f"{shape}-{'dashboard' if dashboard else 'plain'}-{index}"
    argv = command(shape, run_dir, args.steps, dashboard)
    if dashboard:
        run_in_terminal(argv, run_dir, args.timeout)
    else:
        subprocess.run(argv, check=True, capture_output=True, timeout=args.timeout)
    return steps_per_s(run_dir, args.warmup)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=10, help="steps not timed (start-up)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shapes", nargs="+", default=["train", "demo"], choices=["train", "demo"])
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args(argv)
    if shutil.which("tmux") is None:
        print("error: tmux is needed (the dashboard draws in a real terminal)", file=sys.stderr)
        return 2
    results: dict[tuple[str, bool], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="femb-overhead-") as tmp:
        order = [(shape, dashboard) for shape in args.shapes for dashboard in (False, True)]
        for index in range(args.repeats):
            for shape, dashboard in order if index % 2 == 0 else order[::-1]:
                value = measure(shape, dashboard, Path(tmp), index, args)
                results.setdefault((shape, dashboard), []).append(value)
                print(
                    f"  {shape} {'dashboard' if dashboard else 'plain'} {value:.3f} steps/s", file=sys.stderr
                )
    print(f"steps/s after {args.warmup} warm-up steps of {args.steps}, median of {args.repeats} runs each\n")
    print("| shape | --no-dashboard | dashboard attached | dashboard / plain |")
    print("|---|---|---|---|")
    for shape in args.shapes:
        plain = statistics.median(results[shape, False])
        attached = statistics.median(results[shape, True])
        print(f"| femb {shape} | {plain:.3f} | {attached:.3f} | {attached / plain:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
