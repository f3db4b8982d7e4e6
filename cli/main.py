"""Entry point: importing the command modules registers them on the shared Typer app."""

from __future__ import annotations

import importlib

from femb_cli.app import app

# Each module adds its commands (or a sub-app) to `app` when imported.
COMMAND_MODULES = ("info", "train", "dashboard_cmd", "export", "verify", "demo", "data", "embed")

for _name in COMMAND_MODULES:
    try:
        importlib.import_module(f"femb_cli.{_name}")
    except ModuleNotFoundError as error:  # a command module not written yet
        if error.name != f"femb_cli.{_name}":
            raise


def main() -> None:
    app()


__all__ = ["app", "main"]


if __name__ == "__main__":
    main()
