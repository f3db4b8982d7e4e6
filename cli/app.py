"""The `femb` command: one Typer sub-app or command function per module, joined here.

The command modules register nothing on import; :func:`build_app` joins them explicitly, so a
missing or broken command module is an import error, never a silently absent command.
"""

from __future__ import annotations

import os
import re
from typing import Annotated

import typer
import typer.core
import typer.rich_utils
from rich.markup import escape
from rich.text import Text

import femb
from femb_cli.dashboard_cmd import dashboard_command
from femb_cli.data import data_app
from femb_cli.data_align import align_command, ijb_synthetic_command
from femb_cli.demo import demo_command
from femb_cli.embed import embed_command
from femb_cli.export import export_app
from femb_cli.info import info_command
from femb_cli.runs import runs_command
from femb_cli.stop import stop_command
from femb_cli.train import train_command, train_epilog
from femb_cli.verify import verify_app
from femb_cli.verify_ijb import ijb_command


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


def _type_column_without_flags(option: typer.core.TyperOption, ctx) -> str | None:
    """The type column of ``--help``: empty for an on/off flag (``<bool>`` tells a user nothing)."""
    if option.is_flag and option.metavar is None:
        return None
    shown = _typer_display_type_rich(option, ctx)
    if shown and option.metavar is None:  # a repeatable option shows its item's type, not Python's list[...]
        shown = re.sub(r"<list\[(\w+)\]>", lambda match: f"<{match.group(1).lower()}>", shown)
    return shown


def _help_text_folded(**kwargs):
    """An option's help cell whose long words wrap instead of ending in '…' at 80 columns."""
    cell = _typer_parameter_help(**kwargs)
    for item in getattr(cell, "renderables", []):
        if isinstance(item, Text):
            item.overflow = "fold"
    return cell


class _Folding:
    """A Typer highlighter whose text wraps a word too long for its column instead of cutting it."""

    def __init__(self, highlighter) -> None:
        self.highlighter = highlighter

    def __call__(self, text):
        styled = self.highlighter(text)
        if isinstance(styled, Text):
            styled.overflow = "fold"
        return styled


def _plain_text(*, text: str, style: str = "", markup_mode):
    """Help texts are plain text: the ``[plot]`` of ``pip install femb[plot]`` is not a Rich style."""
    if markup_mode == "rich":
        text = escape(text)
    return _typer_make_rich_text(text=text, style=style, markup_mode=markup_mode)


# Older Typer releases (before the type column) lack these; there is nothing to adjust then.
_typer_display_type_rich = getattr(typer.core.TyperOption, "display_type_rich", None)
_typer_parameter_help = getattr(typer.rich_utils, "_get_parameter_help", None)
_typer_make_rich_text = getattr(typer.rich_utils, "_make_rich_text", None)


def tidy_help_layout() -> None:
    """Make every command's ``--help`` read well at 80 columns (Typer's rich layout, adjusted):
    no type on flags, long words (flags and help) wrapped rather than cut, brackets in help texts
    kept as text.

    Typer exposes no setting for these, so its renderers are wrapped once here;
    tests/cli/test_help_layout.py renders every command's help at 80 columns to hold it.
    """
    if _typer_display_type_rich is not None:
        typer.core.TyperOption.display_type_rich = _type_column_without_flags
    if _typer_parameter_help is not None:
        typer.rich_utils._get_parameter_help = _help_text_folded
    if _typer_make_rich_text is not None:
        typer.rich_utils._make_rich_text = _plain_text
    for name in ("highlighter", "negative_highlighter", "types_highlighter"):
        current = getattr(typer.rich_utils, name, None)
        if current is not None and not isinstance(current, _Folding):
            setattr(typer.rich_utils, name, _Folding(current))


def build_app() -> typer.Typer:
    """A fresh root ``femb`` app with every command joined (commands listed before groups)."""
    tidy_help_layout()
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
    root_app.command("stop")(stop_command)
    root_app.command("demo")(demo_command)
    root_app.command("embed")(embed_command)
    root_app.add_typer(export_app, name="export")
    verify_app.command("ijb")(ijb_command)
    data_app.command("align")(align_command)
    data_app.command("ijb-synthetic")(ijb_synthetic_command)
    root_app.add_typer(verify_app, name="verify")
    root_app.add_typer(data_app, name="data")
    return root_app


app = build_app()
