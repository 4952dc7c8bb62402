"""Every failure is one clear line on stderr and a non-zero exit code, never a traceback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cli_support import Invoke, one_error_line

from eventfold.cli import execution
from eventfold.cli.execution import EXIT_NOT_MIGRATED, EXIT_UNAVAILABLE


@pytest.mark.parametrize("command", [["streams", "list"], ["streams", "show", "Cart-1"],
                                     ["events", "tail", "--count", "1"]])
def test_an_unmigrated_database_names_the_migrate_command(
    invoke: Invoke, sqlite_url: str, command: list[str]
) -> None:
    result = invoke("--database", sqlite_url, *command)
    assert result.exit_code == EXIT_NOT_MIGRATED
    line = one_error_line(result)
    assert "no eventfold schema" in line
    assert f"run `eventfold migrate --database {sqlite_url}`" in line


def test_an_unreachable_postgres_is_one_line_naming_the_url_without_password(
    invoke: Invoke,
) -> None:
    url = "postgresql://app:s3cret@127.0.0.1:1/shop"  # nothing listens on port 1
    result = invoke("--database", url, "streams", "list")
    assert result.exit_code == EXIT_UNAVAILABLE
    line = one_error_line(result)
    assert "postgresql://app:***@127.0.0.1:1/shop is unavailable" in line
    assert "s3cret" not in result.stderr


def test_migrate_on_an_unreachable_postgres_is_one_line(invoke: Invoke) -> None:
    result = invoke("--database", "postgresql://postgres@127.0.0.1:1/shop", "migrate")
    assert result.exit_code == EXIT_UNAVAILABLE
    assert "is unavailable" in one_error_line(result)


@pytest.mark.parametrize("url", ["nonsense", "mysql://root@127.0.0.1/db", "http://example"])
def test_a_url_eventfold_does_not_know_is_one_line(invoke: Invoke, url: str) -> None:
    result = invoke("--database", url, "streams", "list")
    assert result.exit_code == EXIT_UNAVAILABLE
    assert "not a database URL eventfold knows" in one_error_line(result)


def test_the_environment_variable_chooses_the_database(invoke: Invoke, sqlite_url: str) -> None:
    result = invoke("streams", "list", env={"EVENTFOLD_DATABASE_URL": sqlite_url})
    assert result.exit_code == EXIT_NOT_MIGRATED
    assert sqlite_url in one_error_line(result)


def test_the_option_wins_over_the_environment(invoke: Invoke, seeded_url: str) -> None:
    result = invoke("--database", seeded_url, "streams", "list", "--json",
                    env={"EVENTFOLD_DATABASE_URL": "postgresql://x@127.0.0.1:1/y"})
    assert result.exit_code == 0, result.stderr


def test_the_console_script_prints_one_line_and_debug_adds_the_traceback(
    sqlite_url: str,
) -> None:
    """Through the installed entry point, as a user runs it."""
    env = {**os.environ, "EVENTFOLD_DATABASE_URL": sqlite_url}
    command = [sys.executable, "-c", "from eventfold.cli import main; main()"]
    plain = subprocess.run([*command, "streams", "list"], env=env, capture_output=True,
                           text=True, timeout=60, check=False)
    assert plain.returncode == EXIT_NOT_MIGRATED
    assert plain.stderr.startswith("error: ") and plain.stderr.count("\n") == 1
    assert "Traceback" not in plain.stderr

    debug = subprocess.run([*command, "--debug", "streams", "list"], env=env,
                           capture_output=True, text=True, timeout=60, check=False)
    assert debug.returncode == EXIT_NOT_MIGRATED
    assert "Traceback" in debug.stderr
    assert debug.stderr.rstrip().splitlines()[-1].startswith("error: ")


def test_usage_errors_exit_with_2(invoke: Invoke) -> None:
    result = invoke("streams", "list", "--limit", "0")
    assert result.exit_code == 2
    assert "Traceback" not in result.stderr


def test_docs_list_every_exit_code() -> None:
    """docs/cli.md's table of exit codes and the code agree."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()
    documented = {int(code) for code in re.findall(r"^\| (\d+) \|", page, flags=re.M)}
    defined = {value for name, value in vars(execution).items() if name.startswith("EXIT_")
               and isinstance(value, int)}
    assert documented == defined | {0}
