"""The benchmark database: creating it, emptying its tables, and the baselines' table.

The benchmark owns one database (``eventfold_bench`` by default). It refuses the ``test``
database, where other people's test suites keep their own rows.
"""

from __future__ import annotations

import contextlib
from typing import cast

import asyncpg
from sqlalchemy.engine import URL, make_url

from benchmarks.workload import BenchmarkError
from eventfold.eventstore.migrate import migrate

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/eventfold_bench"
"""Where ``python -m benchmarks`` runs unless told otherwise."""

FORBIDDEN_DATABASES = frozenset({"test", "postgres", "template0", "template1"})
"""Databases the benchmark never empties: shared test data and the server's own."""

BASELINE_TABLE = "bench_events"
"""The raw baselines' table, shaped as in ``shared/workloads.md``."""

BASELINE_DDL = f"""
CREATE TABLE IF NOT EXISTS {BASELINE_TABLE} (
    global_position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id text NOT NULL,
    version int NOT NULL,
    event_type text NOT NULL,
    data jsonb NOT NULL,
    metadata jsonb NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream_id, version)
)
"""


def _parse(url: str) -> URL:
    try:
        return make_url(url)
    except Exception as exc:
        raise BenchmarkError(
            f"{url!r} is not a database URL: use e.g. {DEFAULT_DSN}"
        ) from exc


def store_url(url: str) -> str:
    """The URL as eventfold's ``connect`` takes it (``postgresql://...``)."""
    return _parse(url).set(drivername="postgresql").render_as_string(hide_password=False)


def asyncpg_dsn(url: str) -> str:
    """The URL as asyncpg takes it (no ``+driver`` part)."""
    return store_url(url)


def database_name(url: str) -> str:
    """The database named by the URL; refuses the ones the benchmark must not empty."""
    name = _parse(url).database
    if not name:
        raise BenchmarkError(f"the URL names no database: add one, e.g. {DEFAULT_DSN}")
    if name in FORBIDDEN_DATABASES:
        raise BenchmarkError(
            f"refusing to benchmark in database {name!r}: the benchmark empties its tables; "
            "name a database of its own, e.g. eventfold_bench"
        )
    return name


async def ensure_database(url: str) -> None:
    """Create the URL's database if it does not exist (connecting to ``postgres`` to do so)."""
    name = database_name(url)
    admin = _parse(url).set(drivername="postgresql", database="postgres")
    conn = await asyncpg.connect(admin.render_as_string(hide_password=False))
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            try:
                # Identifiers cannot be bind parameters; quote_ident makes the name safe.
                quoted = await conn.fetchval("SELECT quote_ident($1)", name)
                await conn.execute(f"CREATE DATABASE {quoted}")
            except asyncpg.DuplicateDatabaseError:
                pass  # created concurrently by another run: just as good
    finally:
        await conn.close()


async def drop_database(url: str) -> None:
    """Drop the URL's database (used by the smoke test for its throw-away database)."""
    name = database_name(url)
    admin = _parse(url).set(drivername="postgresql", database="postgres")
    conn = await asyncpg.connect(admin.render_as_string(hide_password=False))
    try:
        quoted = await conn.fetchval("SELECT quote_ident($1)", name)
        await conn.execute(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
    finally:
        await conn.close()


async def server_version(url: str) -> str:
    """The server's ``version()`` string."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return cast(str, await conn.fetchval("SELECT version()"))
    finally:
        await conn.close()


async def migrate_store(url: str) -> None:
    """Prepare eventfold's schema at ``url`` (a no-op when it is already there)."""
    await migrate(url)


async def empty_store_tables(url: str) -> None:
    """Empty every eventfold table at ``url`` and restart its identities, then checkpoint."""
    from eventfold.eventstore.schema import metadata

    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        present = [
            table.name
            for table in metadata.sorted_tables
            if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table.name)
        ]
        if present:
            await conn.execute(f"TRUNCATE {', '.join(present)} RESTART IDENTITY")
        await _checkpoint(conn)
    finally:
        await conn.close()


async def empty_baseline_table(url: str) -> None:
    """Create the baselines' table if needed, empty it, then checkpoint."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute(BASELINE_DDL)
        await conn.execute(f"TRUNCATE {BASELINE_TABLE} RESTART IDENTITY")
        await _checkpoint(conn)
    finally:
        await conn.close()


async def _checkpoint(conn: asyncpg.Connection) -> None:
    # Flush the previous run's dirty pages now, so a checkpoint does not land in the middle
    # of the next measured run and penalize whichever side happens to be running.
    # Without superuser (or pg_checkpoint) rights runs are just a little noisier.
    with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
        await conn.execute("CHECKPOINT")
