"""A throwaway PostgreSQL server for the test session, started with the machine's pg_ctl.

Used when ``EVENTFOLD_TEST_DATABASE_URL`` is not set. initdb refuses to run as root, so as
root the server runs as the ``postgres`` system user (which PostgreSQL's packages create).
The data directory lives in a temporary directory and is removed at the end.
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
from collections.abc import Iterator
from pathlib import Path


class NoServer(Exception):
    """No throwaway server could be started; the message says why."""


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
