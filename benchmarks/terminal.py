"""Real (headless) terminals for the dashboard benchmarks: tmux 120×40 sessions on a tmux server of
their own, so a benchmark never touches the user's sessions and its commands inherit this process's
environment (a server started earlier by someone else would hand them its own)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

FEMB = [sys.executable, "-m", "femb_cli.main"]
TMUX = ["tmux", "-L", "femb-benchmarks"]


@contextlib.contextmanager
def terminal_server() -> Iterator[None]:
    """The server for the block, with a session that stays: a tmux server exits with its last
    session, and a new session racing that exit fails ("server exited unexpectedly")."""
    if shutil.which("tmux") is None:
        print("error: tmux is needed (the dashboard draws in a real terminal)", file=sys.stderr)
        raise SystemExit(2)
    open_terminal("keep", ["sleep", "86400"])
    try:
        yield
    finally:
        subprocess.run([*TMUX, "kill-server"], check=False, capture_output=True)


def open_terminal(name: str, argv: list[str], then: str = "true") -> None:
    """Run ``argv``, then the shell command ``then``, in a new terminal ``name``."""
    line = f"{' '.join(argv)}; {then}"
    subprocess.run([*TMUX, "new-session", "-d", "-x", "120", "-y", "40", "-s", name, line], check=True)


def close_terminal(name: str) -> None:
    """Kill the terminal: its processes get SIGHUP, as when an SSH connection drops."""
    subprocess.run([*TMUX, "kill-session", "-t", name], check=False, capture_output=True)


def screen(name: str) -> str:
    return subprocess.run([*TMUX, "capture-pane", "-p", "-t", name], capture_output=True, text=True).stdout


def press(name: str, keys: str) -> None:
    subprocess.run([*TMUX, "send-keys", "-t", name, keys], check=False)


def cpu_seconds(name: str) -> float:
    """CPU seconds used so far by the processes in terminal ``name`` (its shell and descendants)."""
    shell = subprocess.run(
        [*TMUX, "display-message", "-p", "-t", name, "#{pane_pid}"],
        capture_output=True,
        text=True,
        check=True,
    )
    total, pending = 0.0, [shell.stdout.strip()]
    while pending:
        pid = pending.pop()
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            pending += Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:  # it ended in between
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    return total
