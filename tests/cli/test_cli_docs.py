"""docs/cli.md's table of commands and the command line agree, command for command and
option for option."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer.main

from eventfold.cli import app

PAGE = Path(__file__).resolve().parents[2] / "docs" / "cli.md"

SHARED = {"--help", "--app", "-a", "--database", "-d"}
"""Options every command of a kind has, documented once above the table."""


def commands(group: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every leaf command, by its path of names (duck-typed: Typer may vendor click)."""
    for name in group.list_commands(None):
        command = group.get_command(None, name)
        assert command is not None
        if hasattr(command, "list_commands"):
            yield from commands(command, (*prefix, name))
        else:
            yield (*prefix, name), command


def documented_rows() -> dict[tuple[str, ...], str]:
    """The command table's rows, by the command's path of names."""
    rows = {}
    for line in PAGE.read_text().splitlines():
        match = re.match(r"^\| `eventfold ([a-z][a-z -]*?)(?: [A-Z\[].*)?` \|", line)
        if match:
            rows[tuple(match.group(1).split())] = line
    return rows


def test_every_command_is_documented_with_all_its_options() -> None:
    defined = dict(commands(typer.main.get_command(app)))
    rows = documented_rows()
    assert set(rows) == set(defined), "docs/cli.md's command table is out of step"
    for path, command in defined.items():
        options = {
            name for param in command.params if param.param_type_name == "option"
            for name in param.opts if name.startswith("--")
        } - SHARED
        missing = sorted(option for option in options if option not in rows[path])
        assert not missing, f"`eventfold {' '.join(path)}` row lacks {missing}"
