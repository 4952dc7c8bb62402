"""``create_engine(url)``: a SQLAlchemy async engine on a store URL, for read models and
bookkeeping tables (projection checkpoints, leases, parked events).

``postgresql://`` becomes ``postgresql+asyncpg://`` and ``sqlite:///`` becomes
``sqlite+aiosqlite:///``; ``memory://`` (the memory store keeps no tables) gets a private
in-memory SQLite database on one shared connection, with the projection runner's tables.

SQLite connections are set up as the SQLite store sets up its own: WAL (readers never wait
for the writer), a busy timeout, and transactions begun explicitly by SQLAlchemy, so that
savepoints work and a transaction may ask for the write lock up front with
``connection.execution_options(sqlite_begin="IMMEDIATE")`` (a deferred transaction that
reads and then writes can fail at once with "database is locked" instead of waiting), and
a read of one statement may skip its BEGIN with ``sqlite_begin="NONE"``.
"""

from __future__ import annotations

import weakref
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from eventfold.eventstore.errors import StoreUnavailable
from eventfold.eventstore.urls import (
    masked,
    parse_database_url,
    scheme_of,
    sqlite_file,
    unsupported_scheme,
)

_configured: weakref.WeakSet[sa.Engine] = weakref.WeakSet()


def sqlalchemy_url(url: str) -> str:
    """The async SQLAlchemy URL of a store URL: ``postgresql://`` -> ``postgresql+asyncpg://``,
    ``sqlite:///`` -> ``sqlite+aiosqlite:///`` (whose directory must exist)."""
    if scheme_of(url) == "memory":
        raise StoreUnavailable(
            masked(url), "migrations run on postgresql:// or sqlite:/// URLs only (a "
            "memory:// store lives in its process and creates its tables itself)"
        )
    if scheme_of(url) not in {"postgresql", "postgres", "sqlite"}:
        raise unsupported_scheme(url)
    parsed = parse_database_url(url)
    if parsed.get_backend_name() == "sqlite":
        sqlite_file(url)  # its directory must exist
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    else:
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


def create_engine(url: str, *, busy_timeout: float = 30.0, **options: Any) -> AsyncEngine:
    """An async engine on the database of the store at ``url``.

    ``busy_timeout`` (SQLite) is how long a write waits for another connection's write lock.
    Other keyword arguments go to SQLAlchemy's ``create_async_engine`` (pool size, echo...).
    Dispose of the engine (``await engine.dispose()``) when done.
    """
    if url.split(":", 1)[0].lower() == "memory":
        # One connection, shared: every new connection to ":memory:" would be a new database.
        engine = create_async_engine("sqlite+aiosqlite://", poolclass=StaticPool, **options)
    else:
        engine = create_async_engine(sqlalchemy_url(url), **options)
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine, busy_timeout)
    return engine


def is_sqlite_ready(engine: AsyncEngine) -> bool:
    """Whether a SQLite engine came from ``create_engine`` (explicit BEGIN, savepoints)."""
    return engine.sync_engine in _configured


def _memory_schema() -> list[str]:
    from sqlalchemy.dialects import sqlite

    from eventfold.eventstore.schema import checkpoints, leases, parked_events

    dialect = sqlite.dialect()
    statements: list[str] = []
    for table in (checkpoints, parked_events, leases):
        statements.append(str(sa.schema.CreateTable(table, if_not_exists=True).compile(
            dialect=dialect
        )))
        statements.extend(
            str(sa.schema.CreateIndex(index, if_not_exists=True).compile(dialect=dialect))
            for index in table.indexes
        )
    return statements


def _configure_sqlite(engine: AsyncEngine, busy_timeout: float) -> None:
    memory = engine.url.database in (None, "", ":memory:")

    @sa_event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # sqlite3's own implicit BEGIN is DEFERRED and skips SAVEPOINT: let SQLAlchemy begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            if not memory:
                cursor.execute("PRAGMA journal_mode = WAL")
            else:
                # Nothing migrates a private in-memory database: give it the runner's tables.
                for statement in _memory_schema():
                    cursor.execute(statement)
        finally:
            cursor.close()

    @sa_event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin")
        if mode == "NONE":
            return  # one statement, atomic by itself (Dialect.one_statement)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if mode == "IMMEDIATE" else "BEGIN")

    _configured.add(engine.sync_engine)
