"""The command line's edges: options where users put them, hints that run as printed, a
reader that goes away, missing databases and files, and exit codes as documented."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from cli_support import ROOT, Invoke, hinted_commands, one_error_line, shell
from sqlalchemy.engine import make_url

from eventfold.cli.execution import EXIT_NOT_MIGRATED, EXIT_UNAVAILABLE

APP = "cli_app:app"


def test_database_and_app_are_accepted_after_the_command(
    invoke: Invoke, seeded_url: str
) -> None:
    result = invoke("streams", "list", "--database", seeded_url, "--json")
    assert result.exit_code == 0, result.stderr
    assert "Cart-1" in result.stdout
    shown = invoke("streams", "show", "Cart-1", "-d", seeded_url, "--app", APP)
    assert shown.exit_code == 0, shown.stderr


def test_migrate_takes_database_after_the_command(invoke: Invoke, sqlite_url: str) -> None:
    assert invoke("migrate", "--database", sqlite_url).exit_code == 0
    assert invoke("--database", sqlite_url, "streams", "list").exit_code == 0


def test_version(invoke: Invoke) -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"eventfold {importlib.metadata.version('eventfold')}"


def test_the_migrate_hint_runs_as_printed(invoke: Invoke, sqlite_url: str, tmp_path: Path) -> None:
    line = one_error_line(invoke("--database", sqlite_url, "streams", "list"))
    [hint] = hinted_commands(line)
    ran = shell(hint, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert invoke("--database", sqlite_url, "streams", "list").exit_code == 0


def test_a_hint_never_prints_a_masked_password_as_if_it_ran(invoke: Invoke) -> None:
    """With the password masked, a printed URL would not connect: the hint names the
    command and leaves the URL to the user."""
    from eventfold.eventstore import SchemaNotMigrated

    message = str(SchemaNotMigrated("postgresql://app:***@db/shop", None, "0004"))
    assert "***" not in " ".join(hinted_commands(message))
    assert "`eventfold migrate` with the same --database URL" in message


def test_a_broken_pipe_exits_quietly(seeded_url: str) -> None:
    """``eventfold events tail --json | head -1``: the reader goes away; no message."""
    command = [sys.executable, "-c", "from eventfold.cli import main; main()",
               "--database", seeded_url, "events", "tail", "--from-start", "--json"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader is gone before the first event is written
    try:
        code = process.wait(timeout=60)
    finally:
        process.kill()
    stderr = process.stderr.read()
    process.stderr.close()
    assert code == 0, stderr
    assert "error" not in stderr and "Traceback" not in stderr and "Exception" not in stderr


@pytest.mark.parametrize("command", [["streams", "list"], ["migrate"]])
def test_a_sqlite_file_in_a_missing_directory_is_one_line(
    tmp_path: Path, command: list[str]
) -> None:
    ran = shell(f"eventfold --database sqlite:///nodir/x.db {' '.join(command)}", cwd=tmp_path)
    assert ran.returncode == EXIT_UNAVAILABLE
    assert ran.stderr.count("\n") == 1, ran.stderr
    assert "the directory 'nodir' of the SQLite file does not exist" in ran.stderr
    assert "mkdir -p nodir" in ran.stderr


@pytest.mark.parametrize("command", [["streams", "list"], ["streams", "show", "Cart-1"],
                                     ["events", "tail", "--count", "1"], ["events", "trace", "x"]])
def test_read_only_commands_do_not_create_a_missing_sqlite_file(
    invoke: Invoke, sqlite_url: str, command: list[str]
) -> None:
    result = invoke("--database", sqlite_url, *command)
    assert result.exit_code == EXIT_NOT_MIGRATED
    assert not Path(make_url(sqlite_url).database or "").exists()


@pytest.fixture
def missing_pg_url(pg_server_url: str) -> Iterator[str]:
    """A database name the server does not have yet (dropped after the test if created)."""
    name = f"eventfold_missing_{uuid.uuid4().hex[:12]}"
    server = make_url(pg_server_url).set(drivername="postgresql")
    yield server.set(database=name).render_as_string(hide_password=False)
    admin = server.render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_missing_postgres_database_gets_a_createdb_hint_that_runs(
    invoke: Invoke, missing_pg_url: str, tmp_path: Path
) -> None:
    for command in (["migrate"], ["streams", "list"]):
        result = invoke("--database", missing_pg_url, *command)
        assert result.exit_code == EXIT_UNAVAILABLE
        line = one_error_line(result)
        assert "does not exist on its PostgreSQL server" in line
        assert "check that the server runs" not in line
    createdb, migrate = hinted_commands(line)
    assert createdb.startswith("createdb ") and migrate.startswith("eventfold migrate ")
    for hint in (createdb, migrate):
        ran = shell(hint, cwd=tmp_path)
        assert ran.returncode == 0, (hint, ran.stderr)
    assert invoke("--database", missing_pg_url, "streams", "list").exit_code == 0


def _exit_code_table() -> dict[int, str]:
    page = (ROOT / "docs" / "cli.md").read_text()
    return {int(code): meaning
            for code, meaning in re.findall(r"^\| (\d+) \| (.+) \|$", page, flags=re.M)}


@pytest.mark.parametrize(("phrase", "args"), [
    ("no such stream", ["streams", "show", "Cart-404"]),
    ("correlation id to trace", ["events", "trace", "no-such-id"]),
    ("aggregate category", ["-a", APP, "snapshots", "take", "Wishlist-9"]),
    ("no such stream, aggregate", ["-a", APP, "snapshots", "take", "Cart-404"]),
    ("projection, parked event", ["-a", APP, "projections", "reset", "nothing"]),
    ("schema is missing", ["--database", "sqlite:///{tmp}/new.db", "streams", "list"]),
    ("not one eventfold knows", ["--database", "mysql://h/db", "streams", "list"]),
    ("no application where one is needed", ["catalog"]),
])
def test_exit_codes_are_those_of_the_documented_table(
    invoke: Invoke, seeded_url: str, tmp_path: Path, phrase: str, args: list[str]
) -> None:
    """Each case exits with the code of the row of docs/cli.md's table that names it."""
    [code] = [code for code, meaning in _exit_code_table().items() if phrase in meaning]
    args = [arg.replace("{tmp}", str(tmp_path)) for arg in args]
    if "--database" not in args:
        args = ["--database", seeded_url, *args]
    result = invoke(*args)
    assert result.exit_code == code, (phrase, result.stderr)
    one_error_line(result)

