"""PostgreSQL for tests: a throwaway server started with the machine's pg_ctl, and fresh
databases on any server.

``server_url()`` is the server of ``EVENTFOLD_TEST_DATABASE_URL`` when set, else a throwaway
one. initdb refuses to run as root, so as root the throwaway server runs as the ``postgres``
system user (which PostgreSQL's packages create); its data directory lives in a temporary
directory and is removed at the end. ``fresh_database`` creates a database with a random
name and drops it afterwards, so test runs sharing a server never see each other's rows.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

SERVER_ENV = "EVENTFOLD_TEST_DATABASE_URL"
"""The DSN of a server whose user may create databases; unset: a throwaway server."""

HOW_TO_GET_POSTGRES = (
    f"PostgreSQL tests need a server: set {SERVER_ENV} to a DSN whose user may create "
    "databases (e.g. postgresql://postgres@127.0.0.1:5432/test), or install PostgreSQL "
    "(apt-get install postgresql) so the tests can start a throwaway server with its pg_ctl."
)


class NoServer(Exception):
    """No PostgreSQL server could be had; the message says why and how to get one."""


def _bin_dir() -> Path | None:
    """The newest PostgreSQL installation's bin directory with initdb and pg_ctl."""

    def major(path: str) -> int:
        match = re.search(r"/postgresql/(\d+)/", path)
        return int(match.group(1)) if match else 0

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=major)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb and shutil.which("pg_ctl") else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def throwaway_server() -> Iterator[str]:
    """Start a server on a free port; yield its DSN (user postgres, trust auth)."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        raise NoServer("no PostgreSQL installation (initdb, pg_ctl) was found")
    prefix: list[str] = []
    owner = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            raise NoServer(
                "running as root and there is no 'postgres' system user to run initdb as"
            ) from None
        prefix = ["runuser", "-u", "postgres", "--"]
    workdir = Path(tempfile.mkdtemp(prefix="eventfold-pg-"))
    if owner is not None:
        os.chown(workdir, owner.pw_uid, owner.pw_gid)
    data, log = workdir / "data", workdir / "server.log"
    port = _free_port()

    def run(*command: str) -> None:
        result = subprocess.run(
            [*prefix, *command], capture_output=True, text=True, check=False, timeout=120
        )
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise NoServer(f"{Path(command[0]).name} failed: {' / '.join(tail)}")

    try:
        run(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
            "-E", "UTF8", "--no-sync")
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60",
            "-o", f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start")
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            with contextlib.suppress(NoServer, subprocess.TimeoutExpired):
                run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def server_url() -> Iterator[str]:
    """The DSN of a server whose user may create databases: ``EVENTFOLD_TEST_DATABASE_URL``,
    or a throwaway server for as long as the block runs. Raises ``NoServer`` naming how to
    get one."""
    configured = os.environ.get(SERVER_ENV)
    if configured:
        yield configured
        return
    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(throwaway_server())
        except NoServer as exc:
            raise NoServer(
                f"could not start a throwaway PostgreSQL: {exc}. {HOW_TO_GET_POSTGRES}"
            ) from None
        yield url


async def create_database(server: str) -> str:
    """Create a new, empty database on ``server`` (random name) and return its URL."""
    name = f"eventfold_test_{uuid.uuid4().hex[:12]}"
    await _admin(server, f'CREATE DATABASE "{name}"')
    return make_url(server).set(database=name).render_as_string(hide_password=False)


async def drop_database(url: str) -> None:
    """Drop the database at ``url`` (made by ``create_database``) and its connections."""
    name = make_url(url).database
    await _admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', database="postgres")


@contextlib.asynccontextmanager
async def fresh_database(server: str) -> AsyncIterator[str]:
    """A new, empty database on ``server`` for the block, dropped at its end."""
    url = await create_database(server)
    try:
        yield url
    finally:
        await drop_database(url)


async def _admin(url: str, statement: str, *, database: str | None = None) -> None:
    target = make_url(url).set(drivername="postgresql")
    if database is not None:
        target = target.set(database=database)
    try:
        conn = await asyncpg.connect(target.render_as_string(hide_password=False))
    except (OSError, asyncpg.PostgresError) as exc:
        raise NoServer(f"cannot connect to {target!s}: {exc}. {HOW_TO_GET_POSTGRES}") from exc
    try:
        await conn.execute(statement)
    except asyncpg.PostgresError as exc:
        raise NoServer(f"{statement} failed on {target!s}: {exc}. {HOW_TO_GET_POSTGRES}") from exc
    finally:
        await conn.close()
