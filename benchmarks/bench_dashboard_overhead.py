"""What the live dashboard costs a training: steps/s with the dashboard attached against without.

The real commands, for the two shapes a user meets: a plain ``femb train`` and ``femb demo``, each
in a real (headless) terminal, tmux 120×40, on a tmux server of its own. Steps/s is read from the
run's own metrics.jsonl (the step events' times), so start-up, export and verification never count.

Two ways to measure, both printed by default:

- ``within``: one training, windows of ``--window`` seconds in ABBA order with the dashboard attached
  (``femb dashboard RUN`` in the terminal) and detached (its terminal closed; the training goes on),
  from ``--warmup`` steps after the first epoch on. The same process, the same warm caches and
  thread placement on both sides, so run-to-run noise drops out; the first ``--settle`` seconds of
  each window are not timed.
- ``runs``: whole runs with the dashboard against ``--no-dashboard``, alternating (plain, dashboard,
  dashboard, plain, …), after ``--warmup`` steps of ``--steps``: the median of ``--repeats`` each.
  ``--against detached`` compares with ``--detach`` instead: the same child process, no dashboard,
  so what remains is the dashboard's own cost, not the process shape's.

Each ratio is attached / without (1.0: no cost; the goal is at least 0.97) with a 95% confidence
interval over the ABBA pairs, so a difference within the machine's noise reads as one. ``within``
also reads the cores the dashboard's processes used while attached (/proc), the most it can take.

    python benchmarks/bench_dashboard_overhead.py --window 20 --pairs 8 --steps 80 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scipy import stats
from terminal import FEMB, close_terminal, cpu_seconds, open_terminal, press, terminal_server

from femb.training.events import read_events


def events(run_dir: Path) -> list[dict]:
    return read_events(run_dir / "metrics.jsonl") if (run_dir / "metrics.jsonl").exists() else []


def has_ended(run_dir: Path) -> bool:
    return any(e.get("event") == "end" for e in events(run_dir))


def rate(timed: list[dict]) -> float:
    """Steps/s between consecutive step events, leaving out the gaps an evaluation or checkpoint took."""
    steps = time_spent = 0.0
    for before, after in zip(timed, timed[1:], strict=False):
        if before.get("event") == after.get("event") == "step":
            steps += after["step"] - before["step"]
            time_spent += after["time"] - before["time"]
    if steps == 0:
        raise RuntimeError(f"too few step events ({len(timed)} events) to time")
    return steps / time_spent


# How a run is shown: the dashboard attached, progress lines in the terminal, or nothing (--detach).
SHOWN_BY = {"dashboard": "--dashboard", "plain": "--no-dashboard", "detached": "--detach"}


def command(shape: str, run_dir: Path, steps: int, shown: str, data: str | None = None) -> list[str]:
    common = ["--steps", str(steps), "--run-dir", str(run_dir), SHOWN_BY[shown]]
    if shape == "demo":
        return [*FEMB, "demo", *common, "-o", f"{run_dir}.onnx"]
    return [*FEMB, "train", *common, "--eval-every", "0", *(["--data", data] if data else [])]


def ratio_summary(pairs: list[tuple[float, float]]) -> str:
    """Mean of attached/without over the pairs, with a 95% t-interval."""
    ratios = [attached / without for without, attached in pairs]
    mean = statistics.fmean(ratios)
    if len(ratios) < 2:
        return f"{mean:.3f}"
    half = stats.t.ppf(0.975, len(ratios) - 1) * statistics.stdev(ratios) / len(ratios) ** 0.5
    return f"{mean:.3f} [{mean - half:.3f}, {mean + half:.3f}]"


def past_first_epoch(timed: list[dict], warmup: int) -> bool:
    """The first epoch renders the synthetic faces (later epochs read them back), so it is slower."""
    start = next((e for e in timed if e.get("event") == "start"), None)
    last = max((e["step"] for e in timed if e.get("event") == "step"), default=0)
    return start is not None and last >= start["steps_per_epoch"] + warmup


def measure_within(shape: str, folder: Path, args) -> tuple[list[tuple[float, float]], str]:
    """(detached, attached) steps/s of ABBA window pairs of one long training, and the cores the
    dashboard used while attached (an upper bound of what it can take from the training)."""
    run_dir = folder / f"{shape}-within"
    open_terminal("train", command(shape, run_dir, 10**6, "dashboard", data=args.train_data))
    try:
        while not past_first_epoch(events(run_dir), args.warmup):
            time.sleep(1)
        close_terminal("train")  # from here on the training runs detached
        rates: dict[bool, list[float]] = {False: [], True: []}
        cores = []
        for attached in [False, True, True, False] * (args.pairs // 2):
            if attached:
                open_terminal("dashboard", [*FEMB, "dashboard", str(run_dir)])
            time.sleep(args.settle)
            start, cpu_start = time.time(), cpu_seconds("dashboard") if attached else 0.0
            time.sleep(args.window)
            end = time.time()
            if attached:
                cores.append((cpu_seconds("dashboard") - cpu_start) / (end - start))
                close_terminal("dashboard")
            value = rate([e for e in events(run_dir) if start <= e["time"] <= end])
            rates[attached].append(value)
            print(f"  {shape} {'attached' if attached else 'detached'} {value:.3f} steps/s", file=sys.stderr)
    finally:
        close_terminal("dashboard")
        close_terminal("train")
        subprocess.run([*FEMB, "stop", str(run_dir), "--wait"], check=False, capture_output=True)
    return list(zip(rates[False], rates[True], strict=True)), f"{statistics.fmean(cores):.4f}"


def measure_run(shape: str, shown: str, folder: Path, index: int, args) -> float:
    """Steps/s of one whole run after its warm-up; the same terminal and polling either way."""
    run_dir = folder / f"{shape}-{shown}-{index}"
    done = run_dir.with_suffix(".done")  # the command has returned (at once, for --detach)
    name = f"{shape}-{index}-{shown}"
    open_terminal(
        name, command(shape, run_dir, args.steps, shown, data=args.train_data), then=f"touch {done}"
    )
    try:
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            ended = has_ended(run_dir)
            if done.exists() and (ended or shown != "detached"):
                break
            if ended and shown == "dashboard":
                press(name, "q")  # a dashboard left open
            time.sleep(1)
    finally:
        close_terminal(name)
        if shown == "detached" and not has_ended(run_dir):
            subprocess.run([*FEMB, "stop", str(run_dir), "--wait"], check=False, capture_output=True)
    timed = events(run_dir)
    start = next(e["time"] for e in timed if e.get("event") == "step" and e["step"] >= args.warmup)
    return rate([e for e in timed if e["time"] >= start])


def measure_runs(shape: str, folder: Path, args) -> tuple[list[tuple[float, float]], str]:
    """(without, dashboard) steps/s of ABBA pairs of whole runs (the dashboard's cores: not read)."""
    rates: dict[str, list[float]] = {args.against: [], "dashboard": []}
    order = [args.against, "dashboard", "dashboard", args.against] * args.repeats
    for index, shown in enumerate(order[: 2 * args.repeats]):
        value = measure_run(shape, shown, folder, index, args)
        rates[shown].append(value)
        print(f"  {shape} {shown} {value:.3f} steps/s", file=sys.stderr)
    return list(zip(rates[args.against], rates["dashboard"], strict=True)), "not measured"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", default=["within", "runs"], choices=["within", "runs"])
    parser.add_argument("--shapes", nargs="+", default=["train", "demo"], choices=["train", "demo"])
    parser.add_argument("--window", type=float, default=20.0, help="within: seconds timed per window")
    parser.add_argument("--settle", type=float, default=3.0, help="within: seconds not timed after a switch")
    parser.add_argument("--pairs", type=int, default=8, help="within: attached/detached window pairs (even)")
    parser.add_argument("--steps", type=int, default=80, help="runs: training steps of each run")
    parser.add_argument("--warmup", type=int, default=10, help="steps not timed (start-up)")
    parser.add_argument("--repeats", type=int, default=3, help="runs: runs of each kind")
    parser.add_argument(
        "--against",
        default="plain",
        choices=["plain", "detached"],
        help="runs: without the dashboard means --no-dashboard (plain) or --detach (the same child process)",
    )
    parser.add_argument("--train-data", help="femb train's --data (default: its own default)")
    parser.add_argument("--timeout", type=float, default=900, help="runs: seconds at most per run")
    args = parser.parse_args(argv)
    if args.against == "detached" and "runs" in args.modes and "demo" in args.shapes:
        parser.error("--against detached: femb demo has no --detach (measure it with --shapes train)")
    rows = []
    with terminal_server(), tempfile.TemporaryDirectory(prefix="femb-overhead-") as tmp:
        for mode in args.modes:
            for shape in args.shapes:
                measure = measure_within if mode == "within" else measure_runs
                rows.append((mode, shape, *measure(shape, Path(tmp), args)))
    header = "without (steps/s) | attached (steps/s) | attached / without [95% CI] | pairs | UI cores"
    print(f"| how | shape | {header} |")
    print("|---|---|---|---|---|---|---|")
    for mode, shape, pairs, ui_cores in rows:
        without = statistics.median(p[0] for p in pairs)
        attached = statistics.median(p[1] for p in pairs)
        how = f"one run, {args.window:g} s windows"
        if mode == "runs":
            how = f"runs of {args.steps} steps, against {SHOWN_BY[args.against]}"
        ratio = ratio_summary(pairs)
        cells = [how, f"femb {shape}", f"{without:.3f}", f"{attached:.3f}", ratio, str(len(pairs)), ui_cores]
        print(f"| {' | '.join(cells)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
