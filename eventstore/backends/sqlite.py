"""The SQLite event store: the embedded default, one file (or memory) per store.

SQLAlchemy's async engine (aiosqlite) opens and configures the connections and runs the
migrations; the hot paths then use the aiosqlite connections directly with hand-written
SQL. Every trip to aiosqlite's worker thread costs more than the SQL of an append, so a
read is one trip (``execute_fetchall``) and a whole append transaction is one function
run on the writer's thread (see ``_on_thread``).

Writes are serialized: in the process by the one writer connection, whose thread runs one
transaction after another; across processes by SQLite's write lock, taken at the start of
the transaction (``BEGIN IMMEDIATE``) so that the expected-version check and the insert
see the same stream version. Appends that arrive while a transaction is running share the
next one, each in its own savepoint (group commit: one fsync for many appends).

Because writes are serialized, ``transaction_id`` is the first position of the append's
batch: it grows with every append, and ordering the log by ``(transaction_id, position)``
is ordering it by position.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self, TypeVar, cast

import aiosqlite
import sqlalchemy as sa
from alembic import command
from sqlalchemy import event as sa_event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from eventfold.eventstore.archiving import archive_batches, check_archive
from eventfold.eventstore.backends.sqlite_keys import SqliteKeyStore
from eventfold.eventstore.encoding import (
    EncodedEvent,
    StoredFacts,
    check_expected_version,
    decode_rows,
    encode_batch,
    replayed,
)
from eventfold.eventstore.errors import (
    ConcurrencyError,
    ImportRefused,
    InvalidAppend,
    SchemaNotMigrated,
    StoreUnavailable,
    StreamTombstoned,
)
from eventfold.eventstore.event import Event
from eventfold.eventstore.import_batch import (
    StreamRun,
    check_follows_on,
    check_import,
    check_not_tombstoned,
    duplicate_id,
    stored_json,
)
from eventfold.eventstore.instrumentation import traced_append
from eventfold.eventstore.keys import KeyStore
from eventfold.eventstore.lifecycle import (
    LIVE,
    SCAVENGE_BATCH,
    LifeChange,
    OnScavengeProgress,
    Scavenge,
    ScavengeProgress,
    StreamLife,
    check_truncate,
    delete_expected,
    life_changes,
    matches,
)
from eventfold.eventstore.migrate import SCHEMA_HEAD, VERSION_TABLE, alembic_config
from eventfold.eventstore.read_arguments import (
    StreamRead,
    check_list_limit,
    check_log_read,
    check_stream_id_read,
    check_stream_read,
)
from eventfold.eventstore.records import (
    ANY,
    START,
    AppendResult,
    ExpectedVersion,
    GlobalPosition,
    HorizonHolder,
    NewEvent,
    RecordedEvent,
    StreamAppend,
    StreamInfo,
    category_of,
    partition_of,
)
from eventfold.eventstore.registry import EventRegistry
from eventfold.eventstore.schema import (
    events,
    events_archive,
    snapshots,
    stream_lifecycle,
    streams,
)
from eventfold.eventstore.shredder import Forgetting, Shredder
from eventfold.eventstore.stream_appends import (
    CheckedAppend,
    check_appends,
    conflicts,
    in_call_order,
    replayed_call,
)
from eventfold.eventstore.system_events import (
    SYSTEM_EVENT_TYPES,
    StreamDeleted,
    StreamTruncated,
)
from eventfold.eventstore.typed_stream import TypedStream, typed_stream
from eventfold.eventstore.urls import masked

_EVENTS = events.name
_STREAMS = streams.name
_LIFECYCLE = stream_lifecycle.name
_INT32_MAX = 2**31 - 1

# The envelope columns in RecordedEvent's field order, so a row maps onto it by position.
_COLUMNS = (
    "event_id, stream_id, stream_version, transaction_id, position, event_type, "
    "schema_version, data, metadata, recorded_at"
)
_FOLD_COLUMNS = "stream_version, position, event_type, schema_version, data"
"""What a fold reads of each event (see ``TypedStream``): no envelope, no metadata."""

# One statement both bumps the stream's version and tells the writer where the log ends:
# the new version minus the batch size is the version the expected-version check needs,
# and the last position gives the batch its positions. Running it first, under the write
# lock, saves a separate SELECT; on a version mismatch the transaction is rolled back.
_UPSERT_STREAM = (
    f"INSERT INTO {_STREAMS} (stream_id, category, version, updated_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (stream_id) DO UPDATE SET version = version + excluded.version, "
    "updated_at = excluded.updated_at "
    "RETURNING version, {last_position}"
)
_LAST_POSITION = f"(SELECT coalesce(max(position), 0) FROM {_EVENTS})"
# The migrated table is AUTOINCREMENT, so positions of archived (deleted) tail events are
# never handed out again: the last position is the larger of the sequence and the rows.
_LAST_POSITION_AUTOINCREMENT = (
    f"max({_LAST_POSITION}, coalesce((SELECT seq FROM sqlite_sequence "
    f"WHERE name = '{_EVENTS}'), 0))"
)
# Positions are given explicitly (the write lock makes head + n safe); the unique index on
# event_id turns a re-append into an IntegrityError, which is the idempotency slow path.
_INSERT_EVENT = (
    f"INSERT INTO {_EVENTS} (position, transaction_id, event_id, stream_id, stream_version, "
    "event_type, schema_version, data, metadata, recorded_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_HEAD = (
    f"SELECT transaction_id, position FROM {_EVENTS} "
    "ORDER BY transaction_id DESC, position DESC LIMIT 1"
)
_STREAM_VERSION = f"SELECT version FROM {_STREAMS} WHERE stream_id = ?"
_STREAM_LIFE = (
    f"SELECT readable_from, deleted_version, hard FROM {_LIFECYCLE} WHERE stream_id = ?"
)
_READABLE_FROM = f"SELECT readable_from FROM {_LIFECYCLE} WHERE stream_id = ?"
# A deletion hides everything up to its own event; a truncation never un-hides.
_DELETE_LIFE = (
    f"INSERT INTO {_LIFECYCLE} (stream_id, readable_from, deleted_version, hard) "
    "VALUES (?, ?, ?, ?) ON CONFLICT (stream_id) DO UPDATE SET "
    "readable_from = excluded.readable_from, deleted_version = excluded.deleted_version, "
    "hard = excluded.hard, updated_at = CURRENT_TIMESTAMP"
)
_TRUNCATE_LIFE = (
    f"INSERT INTO {_LIFECYCLE} (stream_id, readable_from) VALUES (?, ?) "
    "ON CONFLICT (stream_id) DO UPDATE SET "
    "readable_from = max(readable_from, excluded.readable_from), updated_at = CURRENT_TIMESTAMP"
)
_SYSTEM_TYPES = ", ".join(f"'{name}'" for name in sorted(SYSTEM_EVENT_TYPES))
_SCAVENGE_PENDING = (
    f"SELECT stream_id, readable_from, scavenged_below FROM {_LIFECYCLE} "
    "WHERE scavenged_below < readable_from ORDER BY stream_id"
)
# The store's own events stay: a subscriber that has not read them yet still learns of
# the deletion or truncation.
_SCAVENGE_COUNT = (
    f"SELECT count(*) FROM {_EVENTS} WHERE stream_id = ? AND stream_version >= ? "
    f"AND stream_version < ? AND event_type NOT IN ({_SYSTEM_TYPES})"
)
_SCAVENGE_EVENTS = (
    f"DELETE FROM {_EVENTS} WHERE position IN (SELECT position FROM {_EVENTS} "
    f"WHERE stream_id = ? AND stream_version < ? AND event_type NOT IN ({_SYSTEM_TYPES}) "
    "LIMIT ?)"
)
# The log's order is (transaction_id, position), and on SQLite that is position order:
# writes are serialized and a batch's transaction_id is its first position, so both grow
# together. Walking the rowid (position) range reads the table in place instead of going
# through the log-order index row by row (about twice as fast); the row-value test keeps
# the result exactly "after (transaction_id, position)".
_READ_ALL = (
    f"SELECT {_COLUMNS} FROM {_EVENTS} "
    "WHERE position > ? AND (transaction_id, position) > (?, ?){types} "
    "ORDER BY position LIMIT ?"
)
_READ_EVENT = f"SELECT {_COLUMNS} FROM {_EVENTS} WHERE event_id = ?"
# No index serves the metadata half (unlike PostgreSQL's on metadata->>'correlation_id'):
# a trace is a diagnosis, and a scan of the table is what it costs here.
_READ_CORRELATION = (
    f"SELECT {_COLUMNS} FROM {_EVENTS} "
    "WHERE json_extract(metadata, '$.correlation_id') = ? OR event_id = ? ORDER BY position"
)

# The archive (``archive_stream``): a stream's hot versions, then a batch's move, one short
# write transaction each; merged reads UNION both tables, whose log order is position order.
_ARCHIVE = events_archive.name
_HOT_VERSIONS = (
    f"SELECT min(stream_version), max(stream_version) FROM {_EVENTS} WHERE stream_id = ?"
)
_ARCHIVE_COPY = (
    f"INSERT INTO {_ARCHIVE} ({_COLUMNS}) SELECT {_COLUMNS} FROM {_EVENTS} "
    "WHERE stream_id = ? AND stream_version >= ? AND stream_version < ?"
)
_ARCHIVE_DELETE = (
    f"DELETE FROM {_EVENTS} WHERE stream_id = ? AND stream_version >= ? AND stream_version < ?"
)
# What a deletion or truncation hid stays hidden here too.
_READ_STREAM_WITH_ARCHIVE = (
    f"SELECT {_COLUMNS} FROM {_ARCHIVE} WHERE stream_id = ? "
    f"AND stream_version >= coalesce(({_READABLE_FROM}), 1) UNION ALL "
    f"SELECT {_COLUMNS} FROM {_EVENTS} WHERE stream_id = ? "
    f"AND stream_version >= coalesce(({_READABLE_FROM}), 1) ORDER BY stream_version"
)
# A scavenge removes the hidden archived events as well (the store's own events stay).
_ARCHIVE_SCAVENGE_COUNT = (
    f"SELECT count(*) FROM {_ARCHIVE} WHERE stream_id = ? AND stream_version >= ? "
    f"AND stream_version < ? AND event_type NOT IN ({_SYSTEM_TYPES})"
)
_ARCHIVE_SCAVENGE = (
    f"DELETE FROM {_ARCHIVE} WHERE position IN (SELECT position FROM {_ARCHIVE} "
    f"WHERE stream_id = ? AND stream_version < ? AND event_type NOT IN ({_SYSTEM_TYPES}) "
    "LIMIT ?)"
)
_READ_ALL_WITH_ARCHIVE = (
    f"SELECT * FROM (SELECT {_COLUMNS} FROM {_ARCHIVE} "
    "WHERE position > ? ORDER BY position LIMIT ?) UNION ALL "
    f"SELECT * FROM (SELECT {_COLUMNS} FROM {_EVENTS} "
    "WHERE position > ? ORDER BY position LIMIT ?) ORDER BY position LIMIT ?"
)

# recorded_at is stored as UTC text in SQLAlchemy's own SQLite DATETIME format, so
# SQLAlchemy-typed reads of the table agree and text order is time order.
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


class SqliteEventStore:
    """The EventStore protocol on SQLite (``sqlite:///path.db``, ``sqlite://`` in memory).

    Open it with ``await SqliteEventStore.open(url, registry)`` or, better,
    ``eventfold.eventstore.connect(url, registry)``.
    """

    def __init__(
        self,
        registry: EventRegistry,
        url: str,
        engine: AsyncEngine,
        writer: AsyncConnection,
        readers: list[AsyncConnection] | None,
        *,
        poll_interval: float,
        autoincrement: bool,
    ) -> None:
        self.registry = registry
        self.url = url
        self._engine = engine
        self._connections = [writer, *(readers or [])]
        # Appends need no lock of their own: each is one function on the writer's worker
        # thread, which runs them one after another; SQLite's lock orders other processes.
        self._writer: aiosqlite.Connection = _driver(writer)
        # None in memory: the one connection is also the reader; a read is one statement on
        # its worker thread, so it runs between appends, never inside one.
        self._readers: asyncio.Queue[aiosqlite.Connection] | None = None
        if readers is not None:
            self._readers = asyncio.Queue()
            for reader in readers:
                self._readers.put_nowait(_driver(reader))
        self._last_position = (
            _LAST_POSITION_AUTOINCREMENT if autoincrement else _LAST_POSITION
        )
        self._upsert_stream = _UPSERT_STREAM.format(last_position=self._last_position)
        self._poll_interval = poll_interval
        self._appended = asyncio.Event()
        self._pending: list[_Pending] = []
        self._committer: asyncio.Task[None] | None = None
        self._closed = False
        keys = SqliteKeyStore(self._fetch, self._write_keys)
        # An in-memory database is private to its store: its keys are cached apart.
        database = url if readers is not None else f"{url}#{uuid.uuid4()}"
        self._shredder = Shredder(registry, keys, keys.sealed_streams, database=database)

    @property
    def keys(self) -> KeyStore:
        return self._shredder.keys

    @classmethod
    async def open(
        cls,
        url: str,
        registry: EventRegistry,
        *,
        busy_timeout: float = 5.0,
        poll_interval: float = 0.05,
        readers: int = 2,
        synchronous: str = "FULL",
    ) -> SqliteEventStore:
        """Open the store at a ``sqlite:///path.db`` URL (``sqlite://`` is in memory).

        ``busy_timeout`` is how long (seconds) an append waits for another process's write
        lock; ``poll_interval`` how often ``wait_for_events`` looks for other processes'
        appends; ``readers`` how many connections serve reads; ``synchronous`` is SQLite's
        durability setting (``FULL``: every commit survives power loss; ``NORMAL``: faster,
        a power cut may lose the last commits but never corrupts the file).

        Raises ``StoreUnavailable`` when the file cannot be opened and
        ``SchemaNotMigrated`` when its schema is not at ``SCHEMA_HEAD`` (run
        ``eventfold migrate``). An in-memory database is new and private to the store, so
        the store runs the migrations on it itself.
        """
        shown = masked(url)
        sa_url = _parse_url(url, shown)
        if synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise ValueError(
                f"synchronous={synchronous!r} is not a SQLite synchronous setting: "
                "use 'FULL' (the default) or 'NORMAL'"
            )
        if readers < 1:
            raise ValueError(f"readers={readers}: a store needs at least one read connection")
        in_memory = sa_url.database in (None, "", ":memory:")
        if in_memory:
            # One connection, shared: a second would be a second, empty database.
            engine = create_async_engine(sa_url, poolclass=StaticPool)
        else:
            engine = create_async_engine(
                sa_url, pool_size=readers + 1, pool_reset_on_return=None
            )
        _configure(engine, busy_timeout, synchronous.upper())
        connections: list[AsyncConnection] = []
        try:
            writer = await engine.connect()
            connections.append(writer)
            if in_memory:
                await writer.run_sync(_upgrade_to_head)
                await writer.commit()
                reader_connections = None
            else:
                await _check_schema(_driver(writer), shown)
                reader_connections = []
                for _ in range(readers):
                    reader = await engine.connect()
                    connections.append(reader)
                    reader_connections.append(reader)
            autoincrement = await _is_autoincrement(_driver(writer))
        except (DBAPIError, sqlite3.Error, OSError) as exc:
            await _discard(engine, connections)
            raise StoreUnavailable(shown, _reason(exc, sa_url.database)) from exc
        except BaseException:
            await _discard(engine, connections)
            raise
        return cls(
            registry, shown, engine, writer, reader_connections, poll_interval=poll_interval,
            autoincrement=autoincrement,
        )

    # --- writing -------------------------------------------------------------------------

    @traced_append
    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent | Event],
        *,
        expected_version: ExpectedVersion = ANY,
    ) -> AppendResult:
        """Append a batch atomically (see ``EventStore.append``)."""
        expected = check_expected_version(expected_version)
        batch = encode_batch(self.registry, stream_id, events)
        self._check_open()
        batch = await self._shredder.seal(batch)
        done: asyncio.Future[AppendResult | _Refused] = (
            asyncio.get_running_loop().create_future()
        )
        self._pending.append((stream_id, batch, expected, done))
        if self._committer is None:
            self._committer = asyncio.create_task(self._commit_pending())
        try:
            outcome = await done
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc
        except ValueError as exc:  # aiosqlite's "no active connection"
            raise self._unavailable(exc) from exc
        if isinstance(outcome, AppendResult):
            return outcome
        actual, stored, refusal = outcome
        # A retried batch that already went in is neither a conflict nor a refusal.
        replay = _replayed(stream_id, batch, stored)
        if replay is not None:
            return replay
        if refusal == _TOMBSTONE:
            raise StreamTombstoned(stream_id, actual)
        if refusal is None:
            raise ConcurrencyError(stream_id, expected, actual)
        # No id of the batch is stored, so another constraint refused it: a trigger of the
        # user's, or a streams row out of step with the events.
        raise StoreUnavailable(
            self.url,
            f"the database refused the append to {stream_id!r} ({refusal}); nothing was "
            f"written. Check triggers on the events table and that {_STREAMS}.version "
            "matches the stream's last event",
        )

    async def append_streams(self, appends: Sequence[StreamAppend]) -> list[AppendResult]:
        """Append to several streams as one unit (see ``EventStore.append_streams``): one
        ``BEGIN IMMEDIATE`` transaction on the writer's thread, in turn with appends."""
        parts = check_appends(self.registry, appends)
        self._check_open()
        sealed = [
            dataclasses.replace(part, batch=await self._shredder.seal(part.batch))
            for part in parts
        ]
        try:
            outcome = await _on_thread(
                self._writer, _append_streams, _sqlite(self._writer), self._upsert_stream,
                sealed,
            )
        except (sqlite3.Error, ValueError) as exc:  # ValueError: "no active connection"
            raise self._unavailable(exc) from exc
        if isinstance(outcome, dict):
            self._appended.set()
            self._appended = asyncio.Event()
            return in_call_order(appends, outcome)
        actual, stored, refusal, lives = outcome
        replay = replayed_call(sealed, [
            _stored_facts(part.batch, rows) for part, rows in zip(sealed, stored, strict=True)
        ])
        if replay is not None:
            return in_call_order(appends, replay)
        conflict = conflicts(sealed, actual, lives)
        if conflict is not None:
            raise conflict
        raise StoreUnavailable(
            self.url,
            f"the database refused the append to streams {sorted(actual)} ({refusal}); "
            f"nothing was written. Check triggers on the events table and that "
            f"{_STREAMS}.version matches each stream's last event",
        )

    async def import_events(self, records: Sequence[RecordedEvent]) -> None:
        """Store recorded events as they are (see ``EventStore.import_events``): one
        transaction on the writer's thread, in turn with appends."""
        runs = check_import(records)
        self._check_open()
        if not records:
            return
        rows = [
            (record.event_id.hex, record.stream_id, record.stream_version, record.event_type,
             record.schema_version, stored_json(record.data), stored_json(record.metadata),
             record.recorded_at.astimezone(UTC).strftime(_TIME_FORMAT))
            for record in records
        ]
        changes = life_changes(
            (record.stream_id, record.stream_version, record.event_type, record.data)
            for record in records
        )
        try:
            await _on_thread(
                self._writer, _import_rows, _sqlite(self._writer), self._last_position, rows,
                runs, changes,
            )
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc
        except ValueError as exc:
            if isinstance(exc, ImportRefused):
                raise
            raise self._unavailable(exc) from exc  # aiosqlite's "no active connection"
        self._appended.set()
        self._appended = asyncio.Event()

    async def _commit_pending(self) -> None:
        """Write the waiting appends, a group per transaction, until none is left.

        Group commit: appends that arrive while a transaction is on the writer's thread
        wait and then go together in the next one, each in its own savepoint, so one
        commit (one fsync) serves them all while each stays atomic and independent. A lone
        append goes at once, so nobody waits for company.
        """
        try:
            while self._pending:
                group = self._pending[:_MAX_GROUP]
                del self._pending[:_MAX_GROUP]
                try:
                    outcomes = await _on_thread(
                        self._writer, _append_group, _sqlite(self._writer),
                        self._upsert_stream, [item[:3] for item in group],
                    )
                except (sqlite3.Error, ValueError) as exc:
                    # Nothing of the group was written; each appender hears why.
                    for *_, done in group:
                        if not done.done():
                            done.set_exception(exc)
                    continue
                except BaseException:
                    # The committer itself is cancelled (the loop is shutting down): the
                    # appenders must not wait for ever.
                    for *_, done in self._pending + group:
                        done.cancel()
                    self._pending.clear()
                    raise
                for (*_, done), outcome in zip(group, outcomes, strict=True):
                    if not done.done():
                        done.set_result(outcome)
                if any(isinstance(outcome, AppendResult) for outcome in outcomes):
                    self._appended.set()
                    self._appended = asyncio.Event()
        finally:
            self._committer = None

    # --- reading -------------------------------------------------------------------------

    async def read_stream(
        self,
        stream_id: str,
        *,
        from_version: int | None = None,
        to_version: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
        as_of: datetime | None = None,
    ) -> list[RecordedEvent]:
        """Events of one stream (see ``EventStore.read_stream``)."""
        read = check_stream_read(stream_id, from_version, to_version, backwards, limit, as_of)
        rows = await self._stream_rows(read, _COLUMNS)
        return self.registry.upcast_all(await self._shredder.reveal(_records(rows)))

    async def read_typed_stream(
        self,
        stream_id: str,
        *,
        from_version: int | None = None,
        to_version: int | None = None,
        as_of: datetime | None = None,
        skip_unknown: bool = False,
    ) -> TypedStream:
        """The typed events of one stream (see ``EventStore.read_typed_stream``)."""
        read = check_stream_read(stream_id, from_version, to_version, False, None, as_of)
        rows = await self._stream_rows(read, _FOLD_COLUMNS)

        async def records(first: int, last: int) -> list[RecordedEvent]:
            return await self.read_stream(
                stream_id, from_version=first, to_version=last, as_of=as_of
            )

        readable = await self._fetch(_READABLE_FROM, (read.stream_id,))
        return await typed_stream(
            self.registry, self._shredder, read.stream_id, rows, records, skip_unknown,
            readable_from=int(readable[0][0]) if readable else 1,
        )

    async def _stream_rows(self, read: StreamRead, columns: str) -> list[Any]:
        # Events before readable_from are deleted or truncated (docs/lifecycle.md).
        sql = [
            f"SELECT {columns} FROM {_EVENTS} "
            "WHERE stream_id = ? AND stream_version BETWEEN "
            f"max(?, coalesce(({_READABLE_FROM}), 1)) AND ?"
        ]
        params: list[Any] = [read.stream_id, read.low, read.stream_id, read.high]
        if read.as_of is not None:
            sql.append("AND recorded_at <= ?")
            params.append(read.as_of.astimezone(UTC).strftime(_TIME_FORMAT))
        sql.append("ORDER BY stream_version DESC" if read.backwards else "ORDER BY stream_version")
        if read.limit is not None:
            sql.append("LIMIT ?")
            params.append(read.limit)
        return await self._fetch(" ".join(sql), params)

    async def read_all(
        self,
        *,
        after: GlobalPosition = START,
        limit: int = 1000,
        event_types: Collection[str] | None = None,
        partition: tuple[int, int] | None = None,
    ) -> list[RecordedEvent]:
        """The next batch of the global log after ``after`` (see ``EventStore.read_all``)."""
        read = check_log_read(after, limit, event_types, partition)
        params: list[Any] = [read.after[1], read.after[0], read.after[1]]
        types = ""
        if read.event_types is not None:
            wanted = list(self.registry.stored_types(read.event_types))
            if not wanted:
                return []
            types = f" AND event_type IN ({', '.join('?' * len(wanted))})"
            params.extend(wanted)
        params.append(read.limit)
        if read.partition is None:
            rows = await self._fetch(_READ_ALL.format(types=types), params)
            return self.registry.upcast_all(await self._shredder.reveal(_records(rows)))
        # SQLite has no MD5: the partition is kept here, reading on until the batch is full.
        index, count = read.partition
        kept: list[Any] = []
        while len(kept) < read.limit:
            rows = await self._fetch(_READ_ALL.format(types=types), params)
            kept += [row for row in rows if partition_of(row[1], count) == index]
            if len(rows) < read.limit:
                break
            last = rows[-1]
            params[0:3] = [last[4], last[3], last[4]]
        return self.registry.upcast_all(
            await self._shredder.reveal(_records(kept[: read.limit]))
        )

    async def head(self) -> GlobalPosition:
        """The position of the last event (``START`` when the log is empty)."""
        rows = await self._fetch(_HEAD, ())
        return GlobalPosition(*rows[0]) if rows else START

    async def committed_head(self) -> GlobalPosition:
        """Every committed event is visible here: the same as ``head``."""
        return await self.head()

    async def stream_version(self, stream_id: str) -> int:
        """The stream's version (0 when it has no events)."""
        rows = await self._fetch(_STREAM_VERSION, (check_stream_id_read(stream_id),))
        return int(rows[0][0]) if rows else 0

    async def list_streams(
        self, *, category: str | None = None, after: str | None = None, limit: int = 100
    ) -> list[StreamInfo]:
        """Streams ordered by id, optionally of one category, after a stream id."""
        # A stream deleted by its last event reads as absent (docs/lifecycle.md).
        sql = [
            f"SELECT stream_id, version, updated_at FROM {_STREAMS} AS s WHERE NOT EXISTS "
            f"(SELECT 1 FROM {_LIFECYCLE} AS l WHERE l.stream_id = s.stream_id "
            "AND l.deleted_version = s.version)"
        ]
        params: list[Any] = []
        if category is not None:
            sql.append("AND category = ?")
            params.append(category)
        if after is not None:
            sql.append("AND stream_id > ?")
            params.append(after)
        sql.append("ORDER BY stream_id LIMIT ?")
        params.append(check_list_limit(limit))
        rows = await self._fetch(" ".join(sql), params)
        return [StreamInfo(row[0], row[1], _parse_time(row[2])) for row in rows]

    async def stream_life(self, stream_id: str) -> StreamLife:
        """The stream's deletions and truncations (see ``EventStore.stream_life``)."""
        return _life_of(await self._fetch(_STREAM_LIFE, (check_stream_id_read(stream_id),)))

    async def read_event(self, event_id: uuid.UUID) -> list[RecordedEvent]:
        """The event with this id (see ``EventStore.read_event``)."""
        rows = await self._fetch(_READ_EVENT, (event_id.hex,))
        return self.registry.upcast_all(await self._shredder.reveal(_records(rows)))

    async def read_correlation(self, correlation_id: str) -> list[RecordedEvent]:
        """The events of one correlation (see ``EventStore.read_correlation``)."""
        rows = await self._fetch(
            _READ_CORRELATION, (correlation_id, _event_id_text(correlation_id))
        )
        return self.registry.upcast_all(await self._shredder.reveal(_records(rows)))

    async def delete_stream(
        self, stream_id: str, *, expected_version: int | None = None, hard: bool = False
    ) -> AppendResult:
        """Append ``StreamDeleted`` and hide the stream, in one transaction (see
        ``EventStore.delete_stream``)."""
        return await self._change_life(
            stream_id, StreamDeleted(hard=hard), delete_expected(expected_version),
            lambda version: (_DELETE_LIFE, (stream_id, version + 1, version, hard)),
        )

    async def truncate_stream(
        self, stream_id: str, before: int, *, expected_version: int | None = None
    ) -> AppendResult:
        """Append ``StreamTruncated`` and hide the events before ``before``, in one
        transaction (see ``EventStore.truncate_stream``)."""
        expected = delete_expected(expected_version)
        check_truncate(stream_id, before, _INT32_MAX)  # its type and least value, at once

        def change(version: int) -> tuple[str, tuple[Any, ...]]:
            check_truncate(stream_id, before, version - 1)
            return _TRUNCATE_LIFE, (stream_id, before)

        return await self._change_life(
            stream_id, StreamTruncated(before=before), expected, change
        )

    async def _change_life(
        self,
        stream_id: str,
        event: Event,
        expected: ExpectedVersion,
        change: Callable[[int], tuple[str, tuple[Any, ...]]],
    ) -> AppendResult:
        check_stream_id_read(stream_id)
        batch = encode_batch(self.registry, stream_id, [event])
        self._check_open()
        try:
            outcome = await _on_thread(
                self._writer, _append_and_change, _sqlite(self._writer), self._upsert_stream,
                stream_id, batch, expected, change,
            )
        except (sqlite3.Error, ValueError) as exc:
            if isinstance(exc, InvalidAppend):
                raise
            raise self._unavailable(exc) from exc
        if isinstance(outcome, AppendResult):
            self._appended.set()
            self._appended = asyncio.Event()
            return outcome
        actual, _, refusal = outcome
        if refusal == _TOMBSTONE:
            raise StreamTombstoned(stream_id, actual)
        raise ConcurrencyError(stream_id, expected, actual)

    async def scavenge(
        self, *, dry_run: bool = False, on_progress: OnScavengeProgress | None = None
    ) -> Scavenge:
        """Remove the hidden events, a batch per transaction (see ``EventStore.scavenge``)."""
        pending = await self._fetch(_SCAVENGE_PENDING, ())
        counts: dict[str, int] = {}
        for stream_id, readable_from, scavenged_below in pending:
            [(count,)] = await self._fetch(
                _SCAVENGE_COUNT, (stream_id, scavenged_below, readable_from)
            )
            [(archived,)] = await self._fetch(
                _ARCHIVE_SCAVENGE_COUNT, (stream_id, scavenged_below, readable_from)
            )
            count += archived
            if count:
                counts[stream_id] = int(count)
        if dry_run:
            return Scavenge(True, counts)
        total = sum(counts.values())
        removed = 0
        for stream_id, readable_from, _ in pending:
            while True:  # the archive's first: the stream counts as scavenged once both are
                gone = await self._write_keys(
                    functools.partial(
                        _archive_scavenge_batch, (stream_id, readable_from, SCAVENGE_BATCH)
                    )
                )
                removed += gone
                if gone and on_progress is not None:
                    on_progress(ScavengeProgress(removed, total, stream_id))
                if gone < SCAVENGE_BATCH:
                    break
            while True:
                gone = await self._write_keys(
                    functools.partial(_scavenge_batch, stream_id=stream_id, below=readable_from)
                )
                removed += gone
                if gone and on_progress is not None:
                    on_progress(ScavengeProgress(removed, total, stream_id))
                if gone < SCAVENGE_BATCH:
                    break
        return Scavenge(False, counts)

    async def horizon_holders(self) -> list[HorizonHolder]:
        """Readers see every committed event on SQLite: nothing holds them back."""
        return []

    async def wait_for_events(self, after: GlobalPosition, timeout: float) -> bool:
        """Wait until the log has events after ``after`` or the timeout passes.

        Appends through this store wake the waiter at once; other processes' appends
        (and other store instances') are seen by polling every ``poll_interval``.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            # Take the wake-up event before looking, so an append that lands between the
            # look and the wait still wakes us.
            appended = self._appended
            if await self.head() > after:
                return True
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            with suppress(TimeoutError):
                await asyncio.wait_for(appended.wait(), min(remaining, self._poll_interval))

    async def archive_stream(self, stream_id: str, *, before: int | None = None) -> int:
        """Move events of the stream to the archive (see ``EventStore.archive_stream``),
        one write transaction per batch, so appends wait for one batch at most."""
        stream_id, before = check_archive(stream_id, before)
        rows = await self._fetch(_HOT_VERSIONS, (stream_id,))
        first, last = rows[0]
        if first is None:
            return 0
        moved = 0
        for low, high in archive_batches(first, last, before):
            batch = functools.partial(_archive_batch, (stream_id, low, high))
            moved += await self._write_keys(batch)
        return moved

    async def read_stream_with_archive(self, stream_id: str) -> list[RecordedEvent]:
        """The stream's archived and hot events (see ``EventStore.read_stream_with_archive``)."""
        stream_id = check_stream_id_read(stream_id)
        rows = await self._fetch(
            _READ_STREAM_WITH_ARCHIVE, (stream_id, stream_id, stream_id, stream_id)
        )
        return self.registry.upcast_all(await self._shredder.reveal(_records(rows)))

    async def read_all_with_archive(
        self, *, after: GlobalPosition = START, limit: int = 1000
    ) -> list[RecordedEvent]:
        """The whole log after ``after`` (see ``EventStore.read_all_with_archive``)."""
        read = check_log_read(after, limit, None, None)
        position = read.after[1]
        rows = await self._fetch(
            _READ_ALL_WITH_ARCHIVE,
            (position, read.limit, position, read.limit, read.limit),
        )
        return self.registry.upcast_all(await self._shredder.reveal(_records(rows)))

    async def forget(self, subject: str, *, dry_run: bool = False) -> Forgetting:
        """Destroy a data subject's key (see ``EventStore.forget``)."""
        return await self._shredder.forget(subject, dry_run=dry_run)

    async def _write_keys(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run a key store's short transaction on the writer's thread, between appends."""
        self._check_open()
        try:
            return await _on_thread(self._writer, fn, _sqlite(self._writer))
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc
        except ValueError as exc:  # aiosqlite's "no active connection"
            raise self._unavailable(exc) from exc

    async def _fetch(self, sql: str, params: Iterable[Any]) -> list[Any]:
        """Run one read statement on a reader connection and return all its rows."""
        self._check_open()
        try:
            async with self._reading() as conn:
                return list(await conn.execute_fetchall(sql, params))
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc
        except ValueError as exc:  # aiosqlite's "no active connection"
            raise self._unavailable(exc) from exc

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[aiosqlite.Connection]:
        if self._readers is None:
            yield self._writer
            return
        conn = await self._readers.get()
        try:
            yield conn
        finally:
            self._readers.put_nowait(conn)

    # --- lifecycle -----------------------------------------------------------------------

    async def close(self) -> None:
        """Close the connections; the store cannot be used afterwards."""
        if self._closed:
            return
        self._closed = True
        if self._committer is not None:
            # Appends already accepted are written (or refused) before the connections go.
            await asyncio.shield(self._committer)
        # aiosqlite closes a connection after the work already queued on it: an append in
        # flight finishes first.
        await _discard(self._engine, self._connections)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailable(self.url, "the store was closed; open a new one")

    def _unavailable(self, exc: Exception) -> StoreUnavailable:
        reason = str(exc)
        if "locked" in reason or "busy" in reason:
            reason += " (another process held the write lock longer than busy_timeout)"
        if self._closed:
            reason = "the store was closed; open a new one"
        return StoreUnavailable(self.url, reason)


def _archive_scavenge_batch(arguments: tuple[str, int, int], db: sqlite3.Connection) -> int:
    """Remove up to a batch of a stream's hidden archived events in one transaction."""
    db.execute("BEGIN IMMEDIATE")
    try:
        gone = db.execute(_ARCHIVE_SCAVENGE, arguments).rowcount
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return int(gone)


def _archive_batch(versions: tuple[str, int, int], db: sqlite3.Connection) -> int:
    """Copy a stream's versions ``[low, high)`` to the archive and delete them from the
    events table, in one transaction; how many moved (none when another archive of the
    stream moved them first)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute(_ARCHIVE_COPY, versions)
        moved = db.execute(_ARCHIVE_DELETE, versions).rowcount
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return int(moved)


# --- the append transaction ------------------------------------------------------------

_Refused = tuple[int, list[Any], str | None]
"""What a write that did not happen reports: the stream's actual version, the stored rows
of the batch's event ids (for the idempotency check), and the refusing constraint, if any."""


def _append_group(
    db: sqlite3.Connection,
    upsert_stream: str,
    appends: list[tuple[str, list[EncodedEvent], ExpectedVersion]],
) -> list[AppendResult | _Refused]:
    """Appends in one transaction, run on the connection's worker thread.

    ``BEGIN IMMEDIATE`` takes SQLite's write lock first (waiting up to the busy timeout),
    so no other process can change a stream between its version check and its insert.
    With several appends, each runs in a savepoint: one that is refused is rolled back
    alone and the others commit. Any other error rolls the whole group back.
    """
    # The stream's updated_at is the batch's recorded_at, as in every backend.
    stamp = datetime.now(UTC).strftime(_TIME_FORMAT)
    alone = len(appends) == 1
    outcomes: list[AppendResult | _Refused] = []
    db.execute("BEGIN IMMEDIATE")
    try:
        for stream_id, batch, expected in appends:
            if not alone:
                db.execute("SAVEPOINT eventfold_append")
            try:
                outcome = _append_one(db, upsert_stream, stream_id, batch, expected, stamp)
            except sqlite3.IntegrityError as exc:
                # Most often a unique event_id: a retried batch, or ids reused by mistake.
                outcome = (-1, [], str(exc))
            if not isinstance(outcome, AppendResult):
                if alone:
                    db.rollback()
                else:
                    db.execute("ROLLBACK TO eventfold_append")
                outcome = (outcome[0], _stored_rows(db, batch), outcome[2])
            if not alone:
                db.execute("RELEASE eventfold_append")
            outcomes.append(outcome)
        if db.in_transaction:
            db.commit()
    except BaseException:
        if db.in_transaction:
            db.rollback()
        raise
    return outcomes


_StreamsRefused = tuple[dict[str, int], list[list[Any]], str | None, dict[str, StreamLife]]
"""What an ``append_streams`` that did not happen reports: each stream's actual version,
the stored rows of each part's event ids, the refusing constraint, if any, and the lives
of the streams ever deleted or truncated."""


def _append_streams(
    db: sqlite3.Connection, upsert_stream: str, parts: list[CheckedAppend]
) -> dict[str, AppendResult] | _StreamsRefused:
    """Every part in one transaction, run on the writer's thread, under one transaction
    id (the call's first position). One part refused rolls them all back; what the caller
    needs to say why is read under the same write lock first."""
    stamp = datetime.now(UTC).strftime(_TIME_FORMAT)
    written: dict[str, AppendResult] = {}
    refused = False
    refusal: str | None = None
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute("SAVEPOINT eventfold_streams")
        for part in parts:
            transaction_id = next(iter(written.values())).transaction_id if written else None
            try:
                outcome = _append_one(
                    db, upsert_stream, part.stream_id, part.batch, part.expected, stamp,
                    transaction_id,
                )
            except sqlite3.IntegrityError as exc:
                refused, refusal = True, str(exc)
                break
            if isinstance(outcome, AppendResult):
                written[part.stream_id] = outcome
            else:
                refused = True  # the other parts still run, to name every conflict
        if not refused:
            db.commit()
            return written
        db.execute("ROLLBACK TO eventfold_streams")
        marks = ", ".join("?" * len(parts))
        actual = {part.stream_id: 0 for part in parts}
        actual.update(db.execute(
            f"SELECT stream_id, version FROM {_STREAMS} WHERE stream_id IN ({marks})",
            [part.stream_id for part in parts],
        ).fetchall())
        stored = [_stored_rows(db, part.batch) for part in parts]
        lives = {part.stream_id: _life(db, part.stream_id) for part in parts}
        db.rollback()
        return actual, stored, refusal, lives
    except BaseException:
        if db.in_transaction:
            db.rollback()
        raise


def _append_one(
    db: sqlite3.Connection,
    upsert_stream: str,
    stream_id: str,
    batch: list[EncodedEvent],
    expected: ExpectedVersion,
    stamp: str,
    transaction_id: int | None = None,
) -> AppendResult | _Refused:
    """One append inside the open transaction; a refusal is for the caller to roll back.
    Its transaction id is its first position unless it joins a call's (``transaction_id``)."""
    size = len(batch)
    ((version, head),) = db.execute(
        upsert_stream, (stream_id, category_of(stream_id), size, stamp)
    ).fetchall()
    actual = int(version) - size
    life = _life(db, stream_id)
    if life.hard:
        return actual, [], _TOMBSTONE
    if not matches(expected, actual, life):
        return actual, [], None
    first = int(head) + 1
    transaction = first if transaction_id is None else transaction_id
    db.executemany(
        _INSERT_EVENT,
        [
            (first + offset, transaction, item.event_id.hex, stream_id, actual + offset + 1,
             item.event_type, item.schema_version, item.data, item.metadata, stamp)
            for offset, item in enumerate(batch)
        ],
    )
    return AppendResult(stream_id, actual + size, first, first + size - 1, transaction)


_TOMBSTONE = "the stream's tombstone"
"""The refusal of an append to a hard-deleted stream."""


def _life(db: sqlite3.Connection, stream_id: str) -> StreamLife:
    """The stream's deletions and truncations (``LIVE`` when none)."""
    return _life_of(db.execute(_STREAM_LIFE, (stream_id,)).fetchall())


def _life_of(rows: list[Any]) -> StreamLife:
    """The life in ``_STREAM_LIFE``'s rows (``LIVE`` when none)."""
    if not rows:
        return LIVE
    readable_from, deleted_version, hard = rows[0]
    return StreamLife(int(readable_from), deleted_version, bool(hard))


def _append_and_change(
    db: sqlite3.Connection,
    upsert_stream: str,
    stream_id: str,
    batch: list[EncodedEvent],
    expected: ExpectedVersion,
    change: Callable[[int], tuple[str, tuple[Any, ...]]],
) -> AppendResult | _Refused:
    """A deletion's or truncation's event and the stream's new life, in one transaction
    on the writer's thread: ``change(version)`` gives the statement that records it."""
    stamp = datetime.now(UTC).strftime(_TIME_FORMAT)
    db.execute("BEGIN IMMEDIATE")
    try:
        outcome = _append_one(db, upsert_stream, stream_id, batch, expected, stamp)
        if not isinstance(outcome, AppendResult):
            db.rollback()
            return outcome
        db.execute(*change(outcome.version))
        db.commit()
    except BaseException:
        if db.in_transaction:
            db.rollback()
        raise
    return outcome


def _life_statement(change: LifeChange) -> tuple[str, tuple[Any, ...]]:
    """The statement that records a deletion or truncation in the stream's life."""
    if change.hard is not None:
        return _DELETE_LIFE, (change.stream_id, change.version + 1, change.version, change.hard)
    return _TRUNCATE_LIFE, (change.stream_id, change.before)


def _scavenge_batch(db: sqlite3.Connection, *, stream_id: str, below: int) -> int:
    """Remove up to ``SCAVENGE_BATCH`` hidden events of a stream in one transaction; once
    none is left, its snapshots of hidden versions too, and mark it scavenged."""
    db.execute("BEGIN IMMEDIATE")
    try:
        gone = db.execute(_SCAVENGE_EVENTS, (stream_id, below, SCAVENGE_BATCH)).rowcount
        if gone < SCAVENGE_BATCH:
            db.execute(
                f"DELETE FROM {snapshots.name} WHERE stream_id = ? AND version < ?",
                (stream_id, below - 1),
            )
            db.execute(
                f"UPDATE {_LIFECYCLE} SET scavenged_below = max(scavenged_below, ?) "
                "WHERE stream_id = ?", (below, stream_id),
            )
        db.commit()
    except BaseException:
        if db.in_transaction:
            db.rollback()
        raise
    return int(gone)


# An import sets each stream's version to its last imported event's (the versions were
# checked to follow on under the write lock).
_IMPORT_STREAM = (
    f"INSERT INTO {_STREAMS} (stream_id, category, version, updated_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version, "
    "updated_at = excluded.updated_at"
)
_IMPORT_CHUNK = 500
"""Stream ids per ``IN (...)`` lookup, well below SQLite's limit of bound parameters."""


def _import_rows(
    db: sqlite3.Connection, last_position: str, rows: list[tuple[Any, ...]],
    runs: dict[str, StreamRun], changes: list[LifeChange],
) -> None:
    """One import transaction, run on the writer's thread: the streams' versions are
    checked under the write lock, then the rows go in after the last position, the whole
    batch under one transaction id (its first position, as an append's), and the
    deletions and truncations among them take effect."""
    db.execute("BEGIN IMMEDIATE")
    try:
        ids = list(runs)
        stored: dict[str, int] = {}
        tombstones: dict[str, int] = {}
        for start in range(0, len(ids), _IMPORT_CHUNK):
            chunk = ids[start:start + _IMPORT_CHUNK]
            for stream_id, version, tombstone in db.execute(
                f"SELECT s.stream_id, s.version, CASE WHEN l.hard THEN l.deleted_version END "
                f"FROM {_STREAMS} AS s LEFT JOIN {_LIFECYCLE} AS l USING (stream_id) "
                f"WHERE s.stream_id IN ({', '.join('?' * len(chunk))})", chunk,
            ).fetchall():
                stored[stream_id] = version
                if tombstone is not None:
                    tombstones[stream_id] = tombstone
        check_not_tombstoned(runs, tombstones)
        check_follows_on(runs, stored)
        ((head,),) = db.execute(f"SELECT {last_position}").fetchall()
        first = int(head) + 1
        try:
            db.executemany(
                _INSERT_EVENT,
                [(first + offset, first, *row) for offset, row in enumerate(rows)],
            )
        except sqlite3.IntegrityError:
            db.rollback()  # what is stored, not what this batch inserted before failing
            raise _stored_already(db, rows) from None
        last_rows = {row[1]: row for row in rows}
        db.executemany(_IMPORT_STREAM, [
            (stream_id, category_of(stream_id), row[2], row[7])
            for stream_id, row in last_rows.items()
        ])
        for change in changes:
            db.execute(*_life_statement(change))
        db.commit()
    except BaseException:
        if db.in_transaction:
            db.rollback()
        raise


def _stored_already(db: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> ImportRefused:
    """The refusal of the first imported row whose event id is stored already."""
    for row in rows:
        if db.execute(f"SELECT 1 FROM {_EVENTS} WHERE event_id = ?", (row[0],)).fetchall():
            return duplicate_id(uuid.UUID(row[0]), row[1])
    return ImportRefused(uuid.UUID(rows[0][0]), rows[0][1], "the database refused the batch")


def _stored_rows(db: sqlite3.Connection, batch: list[EncodedEvent]) -> list[Any]:
    """The stored envelope facts of the batch's event ids (none in the common case)."""
    marks = ", ".join("?" * len(batch))
    return db.execute(
        f"SELECT event_id, stream_id, stream_version, event_type, position, transaction_id, "
        f"schema_version, data, metadata FROM {_EVENTS} WHERE event_id IN ({marks})",
        [item.event_id.hex for item in batch],
    ).fetchall()


def _replayed(stream_id: str, batch: list[EncodedEvent], rows: list[Any]) -> AppendResult | None:
    """``replayed`` over the rows of ``_stored_rows``."""
    return replayed(stream_id, batch, _stored_facts(batch, rows))


def _stored_facts(batch: list[EncodedEvent], rows: list[Any]) -> list[StoredFacts | None]:
    """The rows of ``_stored_rows`` lined up with the batch (None: that id is not stored)."""
    by_id = {row[0]: StoredFacts(*row[1:]) for row in rows}
    return [by_id.get(item.event_id.hex) for item in batch]


_Pending = tuple[
    str, list[EncodedEvent], ExpectedVersion, "asyncio.Future[AppendResult | _Refused]"
]
"""An append waiting for the committer: stream, batch, expected version, its outcome."""

_MAX_GROUP = 64
"""At most this many appends share a transaction, to bound how long one holds the lock."""

_T = TypeVar("_T")


def _sqlite(conn: aiosqlite.Connection) -> sqlite3.Connection:
    """The sqlite3 connection inside aiosqlite's, to be used on its worker thread only."""
    return conn._conn


async def _on_thread(
    conn: aiosqlite.Connection, fn: Callable[..., _T], *args: Any
) -> _T:
    """Run ``fn(*args)`` on the connection's worker thread, in turn with its other work.

    aiosqlite gives each connection one worker thread and runs every call there, in order;
    each public method is one trip to that thread, and a trip costs more than the SQL of an
    append (a thread wake-up each way). An append is a whole transaction, so it goes as one
    function through ``Connection._execute``, the queue every public method uses (private
    but unchanged since aiosqlite 0.1): one trip instead of four, and a cancelled caller
    cannot leave a transaction half done, since the function runs to its end regardless.
    """
    execute = cast(Callable[..., Awaitable[_T]], conn._execute)
    return await execute(fn, *args)


# --- opening -----------------------------------------------------------------------------


def _parse_url(url: str, shown: str) -> sa.URL:
    try:
        sa_url = make_url(url)
    except ArgumentError as exc:
        raise StoreUnavailable(shown, f"not a SQLite URL: {exc}") from exc
    if sa_url.get_backend_name() != "sqlite" or sa_url.get_driver_name() not in {
        "pysqlite", "aiosqlite",
    }:
        raise StoreUnavailable(
            shown, "not a SQLite URL: use sqlite:///path.db (or sqlite:// for memory)"
        )
    return sa_url.set(drivername="sqlite+aiosqlite")


def _configure(engine: AsyncEngine, busy_timeout: float, synchronous: str) -> None:
    """Install the per-connection settings and SQLAlchemy's documented BEGIN recipe."""

    @sa_event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let nothing but our own statements begin transactions: sqlite3's implicit BEGIN
        # is DEFERRED, which would take the write lock too late for the version check.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # The busy timeout first: switching to WAL itself may wait for a lock.
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute(f"PRAGMA synchronous = {synchronous}")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @sa_event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # SQLAlchemy-level transactions (schema work) begin explicitly, since the driver no
        # longer does; the append path issues BEGIN IMMEDIATE itself.
        conn.exec_driver_sql("BEGIN")


async def _check_schema(conn: aiosqlite.Connection, shown: str) -> None:
    """Raise ``SchemaNotMigrated`` unless the file's schema is at ``SCHEMA_HEAD``."""
    rows = list(await conn.execute_fetchall(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?", (VERSION_TABLE,)
    ))
    current = None
    if rows:
        versions = list(await conn.execute_fetchall(f"SELECT version_num FROM {VERSION_TABLE}"))
        current = str(versions[0][0]) if versions else None
    if current != SCHEMA_HEAD:
        raise SchemaNotMigrated(shown, current, SCHEMA_HEAD)


def _upgrade_to_head(connection: sa.Connection) -> None:
    """Run the shipped migrations on this connection (an in-memory database is new)."""
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def _is_autoincrement(conn: aiosqlite.Connection) -> bool:
    """Whether the events table numbers positions from ``sqlite_sequence``."""
    rows = list(await conn.execute_fetchall(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (_EVENTS,)
    ))
    return bool(rows) and "AUTOINCREMENT" in str(rows[0][0]).upper()


async def _discard(engine: AsyncEngine, connections: list[AsyncConnection]) -> None:
    for connection in connections:
        # A broken connection cannot close cleanly; disposing the engine is what is left.
        with suppress(DBAPIError, sqlite3.Error, ValueError):
            await connection.close()
    await engine.dispose()


def _driver(connection: AsyncConnection) -> aiosqlite.Connection:
    """The aiosqlite connection under a SQLAlchemy connection, for the hot paths."""
    raw = connection.sync_connection
    assert raw is not None
    driver = raw.connection.driver_connection
    assert isinstance(driver, aiosqlite.Connection)
    return driver


def _reason(exc: BaseException, database: str | None) -> str:
    orig = getattr(exc, "orig", None) or exc
    reason = str(orig)
    if "unable to open" in reason:
        reason += (
            f" ({database!r}: check that its directory exists and this user may write there)"
        )
    elif "readonly" in reason:
        reason += f" ({database!r}: this user may not write to the file or its directory)"
    return reason


# --- rows and values ---------------------------------------------------------------------


def _records(rows: list[Any]) -> list[RecordedEvent]:
    """Rows in ``_COLUMNS`` order to records, each row's JSON decoded on its own.

    Row by row (``decode_rows``), so a damaged cell cannot shift data between events (as
    decoding the batch's cells joined into one array would) and cannot fail its
    neighbours: its record comes back marked ``corrupt``.
    """
    data, metadata, corrupt = decode_rows(rows, 7)
    to_uuid = uuid.UUID
    out: list[RecordedEvent] = []
    append = out.append
    last_text = ""
    last_time = datetime.min
    for index, row in enumerate(rows):
        text = row[9]
        # A batch shares one timestamp: parse it once per run of equal stamps.
        if text != last_text:
            last_text = text
            last_time = _parse_time(text)
        append(
            RecordedEvent(
                to_uuid(int=int(row[0], 16)), row[1], row[2], row[3], row[4], row[5], row[6],
                data[index], metadata[index], last_time, corrupt[index],
            )
        )
    return out


def _event_id_text(text: str) -> str | None:
    """How the event id ``text`` names is stored (32 hex digits), or None if it is no UUID."""
    try:
        return uuid.UUID(text).hex
    except ValueError:
        return None


def _parse_time(text: str) -> datetime:
    """Stored UTC text back to an aware datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


