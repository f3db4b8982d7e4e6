"""One-line errors for the command line: printed to stderr, then a non-zero exit.

Commands raise ``fail(message)`` for what they check themselves. Everything else that reaches
the top is turned into one line by :func:`report_uncaught`, called once, from ``femb_cli.main``:

- ``ValueError`` and ``OSError`` (bad input, a missing or read-only file, a full disk, a file-size
  limit): ``error: <what, naming the file or option>``, exit 2;
- ``MemoryError``: ``error: out of memory: …``, exit 2;
- anything else is a bug in femb: ``error: internal error …`` with the hint to rerun with
  ``FEMB_DEBUG=1`` (or ``femb --debug``), which shows the traceback instead; exit 1;
- a training process that lost its peers (another rank died): its line, exit 75, so that the
  launcher names the rank that failed first, not the ones it took down.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import typer

from femb.errors import one_line

DEBUG_ENV = "FEMB_DEBUG"
BAD_INPUT_EXIT, INTERNAL_ERROR_EXIT = 2, 1
PEER_LOST_EXIT = 75  # EX_TEMPFAIL: this rank is a casualty of another's failure


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` on stderr and return the Exit to raise."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


# A schema field whose flag is not its name with dashes (``head_options`` is given KEY=VALUE).
FLAG_NAMES = {"head_options": "--head-opt"}


def flag(field: str) -> str:
    """The command line's flag of schema field ``field``: ``eval_every`` → ``--eval-every``."""
    return FLAG_NAMES.get(field, "--" + field.replace("_", "-"))


def flag_message(field: str, message: str) -> str:
    """``message`` with the field's name (as a whole word) written as its flag."""
    return re.sub(rf"(?<![\w.-]){re.escape(field)}(?![\w-])", flag(field), message)


def with_flags(error: ValueError, given: set[str] = frozenset(), config_file: Path | None = None) -> str:
    """A library error as the command line says it: a field given as a flag (or not in the config
    file) named by its flag; one that came from the file named by its key, after the file's name."""
    from femb.training.run_dir import ExistingRunError, RunInUseError
    from femb.training.schema import ConfigError

    if isinstance(error, ExistingRunError):
        return (
            f"{flag('run_dir')} {error.path}: already holds a run; continue it with "
            f"`femb train --resume {error.path}`, choose another {flag('run_dir')} or {flag('name')}, "
            "or pass --overwrite to replace it"
        )
    if isinstance(error, RunInUseError):
        return f"{error} (femb stop {error.path})"
    if not isinstance(error, ConfigError) or error.field is None or error.source is not None:
        return one_line(error)
    if config_file is not None and error.field not in given:
        return f"{config_file}: {error.message}"
    return flag_message(error.field, error.message)


def resume_command(event: dict) -> str | None:
    """The command that resumes the run an ``end`` event describes, when it can be resumed
    (``resume_from``; runs written by earlier versions carry the command as ``resume_command``)."""
    run_dir = event.get("resume_from")
    if isinstance(run_dir, str) and run_dir:
        return f"femb train --resume {run_dir}"
    command = event.get("resume_command")
    return command if isinstance(command, str) and command else None


def debug_enabled() -> bool:
    """``FEMB_DEBUG`` set to anything but empty/0/false/no (``femb --debug`` sets it)."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


def report_uncaught(error: BaseException) -> int:
    """Print the one ``error:`` line for an exception no command handled; returns the exit code."""
    from femb.training.runtime import PeerLostError

    if isinstance(error, PeerLostError):
        fail(one_line(error))
        return PEER_LOST_EXIT
    if isinstance(error, ValueError):
        fail(with_flags(error))
        return BAD_INPUT_EXIT
    if isinstance(error, OSError):
        fail(one_line(error))
        return BAD_INPUT_EXIT
    if isinstance(error, MemoryError):
        fail("out of memory: try smaller sizes (--batch-size, --embed-dim, fewer identities)")
        return BAD_INPUT_EXIT
    fail(
        f"internal error: {type(error).__name__}: {one_line(error)} "
        f"(a bug in femb; rerun with {DEBUG_ENV}=1 to see the traceback)",
        code=INTERNAL_ERROR_EXIT,
    )
    return INTERNAL_ERROR_EXIT
