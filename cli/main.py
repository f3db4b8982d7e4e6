"""Entry point: the root app (built in :mod:`femb_cli.app`) run with one error line per failure.

``main()`` is the one place where an exception no command handled becomes the ``error:`` line
(see :func:`femb_cli.errors.report_uncaught`); ``femb --debug …`` or ``FEMB_DEBUG=1`` shows the
traceback instead.

The app (every command, and so torch) is imported when it runs, not with this module: ``femb
train`` with the dashboard draws it first (:mod:`femb_cli.dashboard.starting`).
"""

from __future__ import annotations

import os
import sys

from femb_cli.errors import DEBUG_ENV, debug_enabled, report_uncaught


def main(argv: list[str] | None = None) -> None:
    """Run ``femb`` with ``argv`` (default: ``sys.argv[1:]``); always ends in ``SystemExit``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--debug" in args[: args.index("--") if "--" in args else len(args)]:
        # Accepted anywhere before a bare `--`, not only before the command name.
        args.remove("--debug")
        os.environ[DEBUG_ENV] = "1"
    from femb_cli.dashboard.starting import dashboard_first, train_with_dashboard_first

    if dashboard_first(args):
        _leave(train_with_dashboard_first(args))
    from femb_cli.app import app

    try:
        app(args=args, prog_name="femb")
    except SystemExit as done:
        _leave(done.code)
    except Exception as error:  # noqa: BLE001 - the one place that turns them into a line
        if debug_enabled():
            raise  # the full traceback: a library bug is never hidden behind a one-line message
        _leave(report_uncaught(error))
    _leave(0)


def _leave(code) -> None:
    """Exit with ``code``; a worker started by torchrun's agent skips the interpreter's teardown.

    By then the worker has written and closed every file and passed the last barrier; what is
    left is torch.distributed's and the loaders' destructors, which can wait on a peer that has
    already gone. The agent waits for each worker's exit, so such a wait hung the whole run.
    """
    if os.environ.get("TORCHELASTIC_RUN_ID") is not None:
        if isinstance(code, str):
            print(code, file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code if isinstance(code, int) else (0 if code is None else 1))
    sys.exit(code)


__all__ = ["app", "main"]  # noqa: F822 - app: from __getattr__ below


def __getattr__(name: str):
    if name == "app":  # ``from femb_cli.main import app``: the app, built on first use
        from femb_cli.app import app

        return app
    raise AttributeError(f"module 'femb_cli.main' has no attribute {name!r}")


if __name__ == "__main__":
    main()
