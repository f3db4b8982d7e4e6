"""The `femb` command: one Typer sub-app or command function per module, joined here.

The command modules register nothing on import; :func:`build_app` joins them explicitly, so a
missing or broken command module is an import error, never a silently absent command.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

import femb
from femb_cli.dashboard_cmd import dashboard_command
from femb_cli.data import data_app
from femb_cli.demo import demo_command
from femb_cli.embed import embed_command
from femb_cli.export import export_app
from femb_cli.info import info_command
from femb_cli.runs import runs_command
from femb_cli.train import train_command, train_epilog
from femb_cli.verify import verify_app


def _version(value: bool) -> None:
    if value:
        typer.echo(f"femb {femb.__version__}")
        raise typer.Exit()


def _debug(value: bool) -> None:
    if value:
        os.environ["FEMB_DEBUG"] = "1"  # read by femb_cli.main when an exception reaches the top


def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            callback=_debug,
            is_eager=True,
            help="Show the Python traceback of an unexpected error (also: FEMB_DEBUG=1).",
        ),
    ] = False,
) -> None:
    """femb: train → export → verify face embeddings."""


def build_app() -> typer.Typer:
    """A fresh root ``femb`` app with every command joined (commands listed before groups)."""
    root_app = typer.Typer(
        name="femb",
        help="Train face-embedding networks with angular-margin heads, export them to ONNX, verify them.",
        no_args_is_help=True,
        pretty_exceptions_show_locals=False,
        add_completion=False,
    )
    root_app.callback()(root)
    root_app.command("info")(info_command)
    root_app.command("train", epilog=train_epilog())(train_command)
    root_app.command("dashboard")(dashboard_command)
    root_app.command("runs")(runs_command)
    root_app.command("demo")(demo_command)
    root_app.command("embed")(embed_command)
    root_app.add_typer(export_app, name="export")
    root_app.add_typer(verify_app, name="verify")
    root_app.add_typer(data_app, name="data")
    return root_app


app = build_app()
