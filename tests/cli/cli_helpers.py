"""What the command-line tests share: the tiny `femb train` options, the one-line error check and
a real terminal (tmux) to drive a command in."""

import os
import subprocess
from pathlib import Path

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


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=False).stdout


class Terminal:
    """A 120×40 tmux session running one shell command; its exit status lands in a file."""

    def __init__(self, tmp_path: Path, name: str, command: list[str]):
        self.session = f"femb-{name}-{tmp_path.name}"[:60]
        self.exit_file = tmp_path / f"{name}.exit"
        # The tmux server's environment is whoever started it first: pass on this one's import path.
        path = f"PYTHONPATH={os.environ['PYTHONPATH']} " if os.environ.get("PYTHONPATH") else ""
        line = f"cd {tmp_path} && {path}{' '.join(command)}; echo $? > {self.exit_file}; sleep 120"
        tmux("new-session", "-d", "-x", "120", "-y", "40", "-s", self.session, line)

    def screen(self) -> str:
        return tmux("capture-pane", "-p", "-t", self.session)

    def keys(self, *keys: str) -> None:
        tmux("send-keys", "-t", self.session, *keys)

    def exit_code(self) -> int:
        assert wait_until(self.exit_file.exists), self.screen()
        return int(self.exit_file.read_text())

    def close(self) -> None:
        tmux("kill-session", "-t", self.session)  # SIGHUP to everything in the terminal
