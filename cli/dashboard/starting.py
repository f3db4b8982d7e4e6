"""`femb train` with the dashboard draws first, then reads its options.

Reading the options imports torch and femb (the heads declare their options on their classes),
which takes over a second: drawn after that, the dashboard would leave the terminal blank as long.
So when the command will show the dashboard, the dashboard is drawn at once, with nothing but the
torch-free modules imported, and the command itself runs in a thread beside it, exactly as it
runs without one: options read and checked, run directory prepared, training child started. It
then hands the dashboard the run directory and the child (:func:`attach`), and the dashboard
follows it the same way ``femb dashboard RUN`` does. What the command prints meanwhile shows in
the dashboard's log and is printed again, in order, once the dashboard has closed; a command that
refuses its options closes the dashboard and prints its ``error:`` line.

``q`` or Ctrl-C before the training has started cancels it: the command starts no training and
removes the run directory it had just made.
"""

from __future__ import annotations

import os
import sys
import threading

# Options after which `femb train` shows no dashboard, whatever the terminal.
NO_DASHBOARD_FLAGS = ("--no-dashboard", "--detach", "--help")
CANCELLED_EXIT = 130

_current: DashboardFirst | None = None


def shows_dashboard(asked: bool | None) -> bool:
    """Whether `femb train` shows the dashboard: ``--dashboard``/``--no-dashboard`` as ``asked``,
    else when stdout is a terminal; never in a training child or a torchrun worker (they train)."""
    from femb_cli.run_training import CHILD_ENV

    if os.environ.get(CHILD_ENV) or os.environ.get("TORCHELASTIC_RUN_ID") is not None:
        return False
    return sys.stdout.isatty() if asked is None else asked


def dashboard_first(args: list[str]) -> bool:
    """Whether ``femb ARGS`` is `femb train` showing the dashboard (:func:`shows_dashboard`, read
    from the words before they are parsed)."""
    if not args or args[0] != "train" or _current is not None:
        return False
    words = args[: args.index("--")] if "--" in args else args
    if any(word in NO_DASHBOARD_FLAGS for word in words):
        return False
    return shows_dashboard(True if "--dashboard" in words else None)


def current() -> DashboardFirst | None:
    """The dashboard already on screen for this command, if it was drawn first."""
    return _current


class DashboardFirst:
    """The dashboard on screen and the command running beside it, in a thread."""

    def __init__(self, args: list[str]):
        from femb_cli.dashboard import create_dashboard_app

        self.args = args
        self.app = create_dashboard_app(follow_run_dir=None, when_drawn=self._start_command)
        self.closed = threading.Event()  # the dashboard has closed and the terminal is the command's again
        self.attached = False
        self.code: int | str | None = None
        self._thread = threading.Thread(target=self._command, name="femb-train-command", daemon=True)

    def run(self) -> int | str | None:
        """Draw, run the command beside the dashboard; the command's exit code."""
        try:
            self.app.run()
        finally:
            self.closed.set()
            self._print_again()
        if self._thread.ident is None:  # the dashboard failed before its first frame: Textual said why
            return self.app.return_code or 1
        if self.app.cancelled and not self.attached:
            print(
                "cancelled before the training started: waiting for the command to give up…", file=sys.stderr
            )
        self._thread.join()
        if self.app.cancelled and not self.attached:
            return CANCELLED_EXIT
        return self.code

    def attach(self, run_dir, process, title: str, exit_on_end: bool):
        """From the command: follow this training. Returns the dashboard once it has closed, or
        None when it had closed before (cancelled: the caller stops what it started)."""
        from femb_cli.dashboard.command_beside import Attach

        if self.closed.is_set() or not self.app.post_message(
            Attach(run_dir.path, process, title, exit_on_end)
        ):
            return None
        self.attached = True
        self.closed.wait()
        return self.app

    @property
    def cancelled(self) -> bool:
        return self.app.cancelled

    def _start_command(self) -> None:
        self._thread.start()

    def _command(self) -> None:
        from femb_cli.main import main

        try:
            main(self.args)
        except SystemExit as done:
            self.code = done.code
        finally:
            if not self.attached:
                self._release()

    def _release(self) -> None:
        """The command ended without a training to follow: close the dashboard, give back the terminal."""
        from femb_cli.dashboard.command_beside import Release

        if not self.closed.is_set() and self.app.post_message(Release()):
            self.closed.wait()

    def _print_again(self) -> None:
        for text, to_stderr in self.app.printed:
            (sys.stderr if to_stderr else sys.stdout).write(text)
        sys.stdout.flush()
        sys.stderr.flush()


def train_with_dashboard_first(args: list[str]) -> int | str | None:
    """``femb train ARGS`` with the dashboard drawn first; the command's exit code."""
    global _current
    _current = DashboardFirst(args)
    try:
        return _current.run()
    finally:
        _current = None
