"""The database the runner keeps its books and read models in: transactions, the clock.

Every write transaction of the runner goes through ``Database.transaction()``. On SQLite it
begins IMMEDIATE (the write lock up front, waiting for other processes within the busy
timeout instead of failing on a lock upgrade) and the runner's own transactions take turns
on an in-process lock, so they never busy-wait for each other. The memory store's private
in-memory SQLite database has a single connection, so its reads take that lock too (query
it through ``Database(engine).reading()`` while a runner works on it). On PostgreSQL transactions
run concurrently; the checkpoint row lock orders them where it matters.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from eventfold.eventstore.dialect import Dialect
from eventfold.eventstore.engine import is_sqlite_ready
from eventfold.eventstore.protocol import EventStore
from eventfold.eventstore.urls import same_database

_sqlite_locks: weakref.WeakKeyDictionary[sa.Engine, asyncio.Lock] = weakref.WeakKeyDictionary()


class Database(Dialect):
    """An engine on the store's database, with the runner's transaction discipline and
    what differs between its dialects (``Dialect``)."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine.dialect.name)
        self.engine = engine
        # A private in-memory SQLite database lives on one shared connection: every use of
        # it, reads included, must take turns.
        self.single_connection = self.sqlite and engine.url.database in (None, "", ":memory:")
        if self.sqlite and not is_sqlite_ready(engine):
            raise ValueError(
                "create the SQLite engine with eventfold.eventstore.engine.create_engine(url): it "
                "sets up explicit transactions, savepoints and the busy timeout"
            )

    def holds(self, store: EventStore) -> bool:
        """Whether this is the store's own database, not read models kept apart from it."""
        return same_database(store.url, self.engine.url.render_as_string(hide_password=True))

    def waits_outside(self, store: EventStore) -> bool:
        """Whether appending to ``store`` must happen outside this database's write
        transactions: on SQLite (a transaction holds the whole file) and whenever the store
        is another database (a transaction here never waits on another database)."""
        return self.serial_writes or not self.holds(store)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a write transaction, committed when the block ends normally."""
        if not self.sqlite:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._lock(), self.engine.connect() as conn:
            await conn.execution_options(sqlite_begin="IMMEDIATE")
            async with conn.begin():
                yield conn

    @asynccontextmanager
    async def reading(self, *, autocommit: bool = False) -> AsyncIterator[AsyncConnection]:
        """A connection for reads (a deferred transaction on SQLite, no write lock).

        ``autocommit`` ends each statement's transaction with the statement on PostgreSQL,
        for reads interleaved with waits on something else (another database): no
        transaction stays open between them."""
        if self.single_connection:
            async with self._lock(), self.engine.connect() as conn:
                yield conn
            return
        async with self.engine.connect() as conn:
            if autocommit and not self.sqlite:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
            yield conn

    def _lock(self) -> asyncio.Lock:
        return _sqlite_locks.setdefault(self.engine.sync_engine, asyncio.Lock())

    def now(self) -> sa.ColumnElement[float]:
        """The database clock in seconds since the epoch (one clock for all machines)."""
        if self.sqlite:
            return sa.literal_column("((julianday('now') - 2440587.5) * 86400.0)", sa.Float)
        return sa.literal_column("extract(epoch from clock_timestamp())::float8", sa.Float)

    def quote(self, name: str) -> str:
        """An identifier quoted for this database."""
        return str(self.engine.dialect.identifier_preparer.quote(name))
