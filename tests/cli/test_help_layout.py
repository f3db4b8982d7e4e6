"""Every command's `--help` reads well in an 80-column terminal.

No description cut short with '…', no `<bool>` type shown on an on/off flag, no
Python `<list[str]>` as a repeatable option's placeholder, no type or metavar
on `--version`, and no line wider than the terminal.
"""

import re

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


def _written_ellipses(path: list[str]) -> int:
    """How many '…' the command's own help texts hold (a range written '1e-6 … 1e-1', say)."""
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    texts = [param.help or "" for param in command.params] + [command.help or "", command.epilog or ""]
    return sum(text.count("…") for text in texts)


@pytest.mark.parametrize("path", COMMANDS, ids=lambda path: " ".join(path) or "femb")
def test_help_fits_80_columns_without_truncation_or_bool_metavar(path):
    text = _help(path)
    assert text.count("…") <= _written_ellipses(path), text  # any other '…' is a cut word
    assert "<bool>" not in text, text
    assert "<list[" not in text and "<dict[" not in text, text  # a Python type is no placeholder
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


def _commands_with_params(command, path=()):
    yield list(path), command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _commands_with_params(sub, (*path, name))


def test_brackets_in_help_texts_are_shown_as_written():
    # Rich markup would swallow `[plot]` in `pip install femb[plot]` or a `[val]` table name.
    checked = 0
    for path, command in _commands_with_params(typer.main.get_command(app)):
        texts = [param.help or "" for param in command.params] + [command.help or ""]
        words = {word for text in texts for word in re.findall(r"\S*\[[^\]\s]+\]\S*", text)}
        if not words:
            continue
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "250", "TERMINAL_WIDTH": "250"})
        shown = " ".join(result.output.split())
        for word in words:
            assert word.strip(".,;:()") in shown, (path, word)
            checked += 1
    assert checked > 0
