"""Entry point: the root app (built in :mod:`femb_cli.app`) run with one error line per failure.

``main()`` is the one place where an exception no command handled becomes the ``error:`` line
(see :func:`femb_cli.errors.report_uncaught`); ``femb --debug …`` or ``FEMB_DEBUG=1`` shows the
traceback instead.
"""

from __future__ import annotations

import os
import sys

from femb_cli.app import app
from femb_cli.errors import DEBUG_ENV, debug_enabled, report_uncaught


def main(argv: list[str] | None = None) -> None:
    """Run ``femb`` with ``argv`` (default: ``sys.argv[1:]``); always ends in ``SystemExit``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--debug" in args[: args.index("--") if "--" in args else len(args)]:
        # Accepted anywhere before a bare `--`, not only before the command name.
        args.remove("--debug")
        os.environ[DEBUG_ENV] = "1"
    try:
        app(args=args, prog_name="femb")
    except SystemExit:
        raise
    except Exception as error:  # noqa: BLE001 - the one place that turns them into a line
        if debug_enabled():
            raise  # the full traceback: a library bug is never hidden behind a one-line message
        sys.exit(report_uncaught(error))
    sys.exit(0)


__all__ = ["app", "main"]


if __name__ == "__main__":
    main()
