"""The `femb` command: one Typer sub-app per module, joined here."""

from __future__ import annotations

import os
from typing import Annotated

import typer

import femb

app = typer.Typer(
    name="femb",
    help="Train face-embedding networks with angular-margin heads, export them to ONNX, verify them.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"femb {femb.__version__}")
        raise typer.Exit()


def _debug(value: bool) -> None:
    if value:
        os.environ["FEMB_DEBUG"] = "1"  # read by femb_cli.main when an exception reaches the top


@app.callback()
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
