"""The dashboard drawn before its command has read its options (:mod:`femb_cli.dashboard.starting`):
the messages the command's thread sends it, and what the command prints meanwhile. Mixed into
``DashboardApp``, whose other halves read the run and send it requests."""

from __future__ import annotations

from pathlib import Path

from textual.events import Print
from textual.message import Message

STARTING = "reading the options (importing torch and femb)"


class Attach(Message):
    """From the command's thread: the training has started; follow ``run_dir``."""

    def __init__(self, run_dir: Path, process, title: str, exit_on_end: bool):
        super().__init__()
        self.run_dir, self.process, self.title, self.exit_on_end = run_dir, process, title, exit_on_end


class Release(Message):
    """From the command's thread: it has ended without a training to follow."""


class CommandBeside:
    """Uses ``DashboardApp``'s ``_attach``, ``follow``, ``run_log`` and ``printed``."""

    def on_attach(self, message: Attach) -> None:
        """The command has started the training: follow its run directory from now on."""
        self._attach(message.run_dir, message.process, message.title)
        self.exit_on_end = message.exit_on_end
        self._note = ""
        self.follow()

    def on_release(self, message: Release) -> None:
        """The command ended without a training to show (it refused, or trains without a dashboard)."""
        self.exit()

    def on_print(self, event: Print) -> None:
        """What the command prints while this draws: kept for after, and its lines in the log."""
        text = event.text if isinstance(event.text, str) else bytes(event.text).decode("utf-8", "replace")
        self.printed.append((text, event.stderr))
        for line in text.splitlines():
            if line.strip():
                self.run_log.add(line.rstrip()[:300], "warning" if event.stderr else "info")
