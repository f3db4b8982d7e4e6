"""How soon `femb train` shows its dashboard: seconds from the command to the first frame.

The real command in a real (headless) terminal, tmux 120×40, polled every 10 ms: the first frame is
the first capture showing the dashboard's key bar. For scale, the same run's first step (its step
event's time) and what importing torch alone takes on this machine, each the median of
``--repeats`` runs. The goal: the first frame under 2 s.

    python benchmarks/bench_dashboard_start.py --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from terminal import FEMB, close_terminal, open_terminal, screen, terminal_server

from femb.training.events import read_events

DRAWN = "Stop / quit"  # the key bar, at the bottom of every frame


def one_start(run_dir: Path, timeout: float) -> tuple[float, float]:
    """(seconds to the first frame, seconds to the first step event) of one `femb train`."""
    session = f"femb-start-{run_dir.name}"
    argv = [*FEMB, "train", "--steps", "3", "--eval-every", "0", "--run-dir", str(run_dir), "--dashboard"]
    started = time.time()
    open_terminal(session, argv)
    try:
        deadline = time.monotonic() + timeout
        while DRAWN not in screen(session):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no dashboard within {timeout} s:\n{screen(session)}")
            time.sleep(0.01)
        drawn = time.time() - started
        while not any(e.get("event") == "step" for e in read_events(run_dir / "metrics.jsonl")):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no step within {timeout} s")
            time.sleep(0.1)
        first_step = next(e for e in read_events(run_dir / "metrics.jsonl") if e.get("event") == "step")
        return drawn, first_step["time"] - started
    finally:
        close_terminal(session)
        subprocess.run([*FEMB, "stop", str(run_dir)], check=False, capture_output=True)


def torch_import_s() -> float:
    code = "import time; t = time.perf_counter(); import torch; print(time.perf_counter() - t)"
    return float(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args(argv)
    frames, steps, imports = [], [], []
    with terminal_server(), tempfile.TemporaryDirectory(prefix="femb-start-") as tmp:
        for index in range(args.repeats):
            drawn, first_step = one_start(Path(tmp) / f"run{index}", args.timeout)
            frames.append(drawn)
            steps.append(first_step)
            imports.append(torch_import_s())
            print(f"  run {index}: first frame {drawn:.2f} s, first step {first_step:.2f} s", file=sys.stderr)
    print(f"`femb train` in tmux 120×40, median of {args.repeats} runs (min–max)\n")
    print("| from the command to | seconds |")
    print("|---|---|")
    for label, values in (
        ("the dashboard's first frame", frames),
        ("the first step (mobilefacenet_fast, batch 64)", steps),
        ("(importing torch alone, for scale)", imports),
    ):
        print(f"| {label} | {statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
