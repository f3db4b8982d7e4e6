"""What the command-line tests share: the tiny `femb train` options and the one-line error check."""

# A net and a data set small enough that `femb train` takes seconds.
TINY_TRAIN = [
    "--backbone",
    "iresnet_tiny",
    "--embed-dim",
    "16",
    "--data",
    "synthetic:6",
    "--val",
    "synthetic:6",
    "--batch-size",
    "16",
    "--no-dashboard",
    "--warmup-steps",
    "2",
]


def assert_one_line_error(result, code: int = 2) -> str:
    """A CliRunner result that failed with exactly one `error:` line and no traceback; the line."""
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def wait_until(predicate, timeout: float = 120.0, interval: float = 0.2) -> bool:
    """Poll ``predicate`` until it holds (True) or ``timeout`` seconds pass (False)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def steps_done(run_dir) -> int:
    """The last step a run's metrics.jsonl has an event for (0 before the first)."""
    from femb.training.events import read_events

    return max((e["step"] for e in read_events(run_dir / "metrics.jsonl") if e["event"] == "step"), default=0)
