"""Every command's `--help` reads well in an 80-column terminal.

No description cut short with '…', no `<bool>` type shown on an on/off flag, no type or metavar
on `--version`, and no line wider than the terminal.
"""

import pytest
import typer
from typer.testing import CliRunner

from femb_cli.app import app

runner = CliRunner()


def _command_paths(command, path=()):
    yield list(path)
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _command_paths(sub, (*path, name))


COMMANDS = list(_command_paths(typer.main.get_command(app)))


def _help(path: list[str]) -> str:
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "80", "TERMINAL_WIDTH": "80"})
    assert result.exit_code == 0, result.output
    return result.output


def test_every_command_is_checked():
    names = {" ".join(path) for path in COMMANDS}
    assert {"", "train", "demo", "export onnx", "verify pairs", "data pack", "runs"} <= names


@pytest.mark.parametrize("path", COMMANDS, ids=lambda path: " ".join(path) or "femb")
def test_help_fits_80_columns_without_truncation_or_bool_metavar(path):
    text = _help(path)
    assert "…" not in text, text
    assert "<bool>" not in text, text
    assert max(len(line) for line in text.splitlines()) <= 80, text


def test_version_and_help_rows_show_no_metavar():
    rows = [line.strip("│ ").split() for line in _help([]).splitlines()]
    version = next(row for row in rows if row and row[0] == "--version")
    assert version == ["--version", "Print", "the", "version", "and", "exit."]
    help_row = next(row for row in rows if row and row[0] == "--help")
    assert help_row[1] == "Show"


def test_a_long_unbroken_word_in_an_option_help_wraps_instead_of_ending_in_an_ellipsis():
    from typing import Annotated

    from femb_cli.app import tidy_help_layout

    tidy_help_layout()
    word = "exports/a-rather-long-run-name-that-cannot-break.onnx"
    probe = typer.Typer()

    @probe.command()
    def main(
        size: Annotated[int, typer.Option(min=1, help="A number.")] = 1,
        output: Annotated[str, typer.Option(help=f"The file (default: {word}).")] = "",
    ) -> None:
        """A probe."""

    result = runner.invoke(probe, ["--help"], env={"COLUMNS": "80", "TERMINAL_WIDTH": "80"})
    assert "…" not in result.output
    tail = "".join(line.rstrip(" │").rsplit(" ", 1)[-1] for line in result.output.splitlines())
    assert word in tail, result.output
