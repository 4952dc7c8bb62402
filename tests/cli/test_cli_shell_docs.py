"""The ``eventfold`` commands of the docs' shell blocks run as printed.

Every line of a ```bash block of README.md, docs/cli.md, docs/example.md and
docs/operations.md that runs ``eventfold`` is run by bash, in order, in a directory where
``python -m examples.shop`` ran one day on ``sqlite:///eventfold.db`` (the docs say so).
What the docs say stands for something is replaced, and only that:

- ``DAY``: the day the run printed on its first line (order ids and correlation ids hold it);
- the PostgreSQL URLs (``db.internal``, ``db``, ``127.0.0.1/shop``): a database of this
  test's own on the test server, and ``--metrics-port 9464`` a free port.

Commands that serve until stopped (``run``, ``events tail`` without ``--count``) are
stopped with SIGINT, as Ctrl-C does, once they printed their first line.
``pip``/``python -m`` lines (installing, the shop itself, benchmarks) are not run here.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from cli_support import ROOT, shell, shell_environment
from sqlalchemy.engine import make_url

PAGES = [
    ROOT / "README.md", ROOT / "docs" / "cli.md", ROOT / "docs" / "example.md",
    ROOT / "docs" / "operations.md", ROOT / "docs" / "lifecycle.md",
]
POSTGRES_URL = re.compile(r"postgresql://\S*(?:db\.internal|@db/|127\.0\.0\.1/shop)\S*")


def shell_commands(page: Path) -> list[str]:
    """The ``eventfold`` command lines of a page's ```bash blocks (continuations joined)."""
    commands: list[str] = []
    in_block = False
    pending = ""
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            in_block = line.strip() == "```bash"
            continue
        if not in_block:
            continue
        pending += line
        if pending.endswith("\\"):
            pending = pending[:-1]
            continue
        words = [w for w in pending.split() if not re.match(r"^[A-Z_]+=", w)]
        if words and words[0] == "eventfold":
            commands.append(pending.strip())
        pending = ""
    return commands


COMMANDS = [(page, command) for page in PAGES for command in shell_commands(page)]


def test_the_pages_have_commands() -> None:
    assert {page for page, _ in COMMANDS} == set(PAGES)
    assert any("checkout-DAY-3" in command for _, command in COMMANDS)


@pytest.fixture(scope="module")
def shop_day(tmp_path_factory: pytest.TempPathFactory, pg_server_url: str) -> Iterator[
    tuple[Path, dict[str, str]]
]:
    """A directory after one day of the shop, and the replacements of the docs' stand-ins."""
    directory = tmp_path_factory.mktemp("shop")
    ran = shell("python -m examples.shop", cwd=directory)
    first = ran.stdout.splitlines()[0] if ran.stdout else ""
    assert ran.returncode == 0, ran.stderr
    day = re.search(r"day (\w+)", first)
    assert day is not None, first
    (directory / "docs").mkdir()  # `catalog > docs/EVENTS.md`
    (directory / "var").mkdir()  # `EVENTFOLD_DATABASE_URL=sqlite:///var/shop.db`
    shutil.copy(directory / "eventfold.db", directory / "var" / "shop.db")
    name = f"eventfold_docs_{uuid.uuid4().hex[:12]}"
    server = make_url(pg_server_url).set(drivername="postgresql")
    admin = server.render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    database = server.set(database=name).render_as_string(hide_password=False)
    try:
        yield directory, {"DAY": day.group(1), "postgresql": database, "9464": str(_free_port())}
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_run(command: str, stand_ins: dict[str, str]) -> str:
    command = re.sub(r"\bDAY\b", stand_ins["DAY"], command)
    command = POSTGRES_URL.sub(stand_ins["postgresql"], command)
    return command.replace("--metrics-port 9464", f"--metrics-port {stand_ins['9464']}")


@pytest.mark.parametrize(("page", "command"), COMMANDS,
                         ids=[f"{page.name}:{command[:60]}" for page, command in COMMANDS])
def test_the_command_runs_as_printed(
    page: Path, command: str, shop_day: tuple[Path, dict[str, str]]
) -> None:
    directory, stand_ins = shop_day
    line = _as_run(command, stand_ins)
    if line != command and stand_ins["postgresql"] in line:
        # The docs' PostgreSQL database: migrated first, as the docs' migrate line does.
        assert shell(f"eventfold --database {stand_ins['postgresql']} migrate",
                     cwd=directory).returncode == 0
    if _serves(line):
        _serves_until_interrupted(line, directory)
        return
    ran = shell(line, cwd=directory)
    assert ran.returncode == 0, (line, ran.stderr)
    assert "error:" not in ran.stderr and "Traceback" not in ran.stderr


def _serves(line: str) -> bool:
    """Whether the command serves until stopped: ``run``, ``ui``, or ``events tail``
    without ``--count`` (comments left out)."""
    words = shlex.split(line, comments=True)
    return "run" in words or "ui" in words or ("tail" in words and "--count" not in words)


def _serves_until_interrupted(line: str, directory: Path) -> None:
    """Start ``line``, wait (bounded) for its first line of output, then Ctrl-C it."""
    process = subprocess.Popen(["bash", "-c", line], cwd=directory, env=shell_environment(),
                               text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               start_new_session=True)
    output = process.stdout
    assert output is not None
    first: list[str] = []
    reader = threading.Thread(target=lambda: first.append(output.readline()))
    reader.start()
    reader.join(timeout=90)
    os.killpg(process.pid, signal.SIGINT)
    try:
        rest, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    printed = "".join(first) + rest
    assert first and first[0].strip(), (line, printed)
    assert "error:" not in printed and "Traceback" not in printed, (line, printed)
    if "|" not in line:  # a pipeline's reader dies of the Ctrl-C too, as in a terminal
        assert process.returncode == 0, (line, printed)
