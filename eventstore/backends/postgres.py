"""The PostgreSQL event store: asyncpg, prepared statements, one round trip per append.

Why it is shaped so (docs/operations.md has the long version):

- An append is one ``INSERT ... SELECT`` in its own implicit transaction: no function, no
  BEGIN/COMMIT, and one row written per event, nothing else. The statement reads the
  stream's last version (one probe of the unique ``(stream_id, stream_version)`` index),
  inserts nothing unless it is the expected one, and numbers the batch after it. Two writers
  that expect the same version both try to insert the same ``(stream_id, stream_version)``:
  the unique index makes the second wait for the first and fail if the first commits. No
  table lock, no row lock that writers of other streams could meet.
- Appends that wait at the same time share that statement and its transaction, each with
  its own check and result (group commit, ``postgres_group``); the rules below hold per
  append, and a member the group could not write goes again alone.
- When nothing was written (a version mismatch, a lost race, or a replayed batch whose
  event ids are stored), one more query tells them apart: the original result for a
  replay, ``ConcurrencyError`` with the actual version, or, when the stream is where the
  append expects it (a lost race of ``ANY``), one more try behind an exclusive lock on the
  stream that no other append can race. Appends share that lock's shared mode when it is
  free, so the common case stays one statement.
- Every event records its writer's ``pg_current_xact_id()``. The global log is read in
  ``(transaction_id, position)`` order and only below the horizon (``pg_snapshot_xmin``,
  not counting transactions of other databases: ``horizon.VISIBLE_BELOW``): a transaction
  that took a lower position but commits later is still running below that line, so a
  reader waits for it instead of passing over it.
- ``wait_for_events`` LISTENs; appends NOTIFY after commit from a separate connection,
  coalesced, never inside the append's transaction (a NOTIFY there takes a cluster-wide lock
  at commit that serializes every notifying writer).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import uuid
from collections.abc import AsyncIterable, Callable, Collection, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Self

import asyncpg

from eventfold.eventstore.archiving import archive_batches, check_archive
from eventfold.eventstore.backends import postgres_archive
from eventfold.eventstore.backends.postgres_driver import (
    ConnectionCache,
    asyncpg_dsn,
    connect,
    is_unavailable,
    session_settings,
    unavailable,
)
from eventfold.eventstore.backends.postgres_group import (
    APPEND_GROUP,
    GROUP_EVENTS,
    GroupCommit,
    Outcome,
    PendingAppend,
    group_arguments,
    rows_by_stream,
)
from eventfold.eventstore.backends.postgres_keys import PostgresKeyStore
from eventfold.eventstore.backends.postgres_lifecycle import (
    DELETE_LIFE,
    IMPORTED_CHANGES,
    SCAVENGE_COUNT,
    SCAVENGE_EVENTS,
    SCAVENGE_PENDING,
    SCAVENGE_SNAPSHOTS,
    SCAVENGED,
    TOMBSTONE,
    TRUNCATE_LIFE,
    hidden,
    life_of,
    readable_from,
    version_check,
)
from eventfold.eventstore.backends.postgres_streams import (
    APPEND_STREAMS,
    APPEND_STREAMS_LOCKED,
    streams_arguments,
)
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
)
from eventfold.eventstore.event import Event
from eventfold.eventstore.horizon import VISIBLE_BELOW, check_horizon, horizon_holders
from eventfold.eventstore.import_batch import (
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
    check_open,
    check_truncate,
    delete_expected,
    life_changes,
    matches,
)
from eventfold.eventstore.migrate import SCHEMA_HEAD, VERSION_TABLE
from eventfold.eventstore.read_arguments import (
    check_list_limit,
    check_log_read,
    check_stream_id_read,
    check_stream_read,
)
from eventfold.eventstore.records import (
    ANY,
    NO_STREAM,
    START,
    STREAM_EXISTS,
    AppendResult,
    ExpectedVersion,
    GlobalPosition,
    HorizonHolder,
    NewEvent,
    RecordedEvent,
    StreamAppend,
    StreamInfo,
)
from eventfold.eventstore.registry import EventRegistry
from eventfold.eventstore.shredder import Forgetting, Shredder
from eventfold.eventstore.stream_appends import (
    CheckedAppend,
    check_appends,
    conflicts,
    in_call_order,
    replayed_call,
)
from eventfold.eventstore.system_events import StreamDeleted, StreamTruncated
from eventfold.eventstore.typed_stream import TypedStream, typed_stream
from eventfold.eventstore.urls import masked

NOTIFY_CHANNEL = "eventfold_events"
"""The LISTEN/NOTIFY channel appends announce themselves on."""
_NOTIFY_INTERVAL = 0.005
"""Least seconds between two notifications of one store."""

_INT4_MAX = 2**31 - 1
_EVENT_ID_CONSTRAINT = "eventfold_events_event_id_key"
_STREAM_VERSION_CONSTRAINT = "eventfold_events_stream_version"
# The stream's last version, from the unique (stream_id, stream_version) index: the append
# writes only when it lies within [$2, $3] (exact version: both are it; NO_STREAM: 0, 0;
# STREAM_EXISTS: 1, max; ANY: 0, max). A concurrent writer that took the same versions makes
# the insert wait for it and fail on the unique index if it commits.
_STREAM_LAST = (
    "SELECT coalesce(max(stream_version), 0) AS version "
    "FROM eventfold_events WHERE stream_id = $1"
)

# Every append takes a shared, transaction-scoped advisory lock on its stream (keyed by the
# stream id's 64-bit hash), only if it is free right now, in its one statement: appends of
# one stream share it and run side by side, one round trip each, as long as nobody holds or
# waits for the exclusive lock of the serialized path below. Once a writer waits there, an
# append that arrives writes nothing and queues behind it instead (see ``append``), so the
# serialized writer cannot lose to newcomers for ever. The lock is tried once per
# statement, in the materialized head (a try per row could fail halfway through a batch),
# before any row is inserted, and is held until the append commits.
_TRY_SHARED = "pg_try_advisory_xact_lock_shared(hashtextextended($1, 0))"

# The serialized path: the exclusive lock waits for every append of the stream in flight to
# commit, and keeps new ones out (their try above fails). The insert that follows in the
# same transaction takes its snapshot after the lock, so it sees every earlier append and
# no other append of the stream can race it. Another stream sharing the hash only waits.
# The transaction has no id while it waits for the lock, so it holds no reader back.
_LOCK_STREAM = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"

# The head also carries the stream's deletion (``postgres_lifecycle``): one primary-key
# probe of eventfold_stream_lifecycle, which finds no row for a stream never deleted.
_HEAD_OF_STREAM = f"""
WITH head AS MATERIALIZED (
    SELECT coalesce(max(stream_version), 0) AS version, {{free}} AS free,
           {life_of("$1")} AS deleted
    FROM eventfold_events WHERE stream_id = $1
)"""
_STREAM_CHECK = version_check("head.version", "head.deleted", "$2", "$3")

# One event (most appends): plain parameters, no arrays to build and take apart.
_APPEND_ONE_ROW = f"""{_HEAD_OF_STREAM}
INSERT INTO eventfold_events
    (stream_id, stream_version, event_id, event_type, schema_version, data, metadata)
SELECT $1, head.version + 1, $4::uuid, $5::text, $6::integer, $7::jsonb, $8::jsonb
FROM head
WHERE {_STREAM_CHECK} AND head.free
RETURNING stream_version, position, transaction_id::text::bigint
"""

# A batch: one row per array element. The sort keeps positions in version order (the
# identity is drawn row by row as the rows are inserted). The JSON arrives as text encoded
# once by the client; transaction_id defaults to pg_current_xact_id().
_APPEND_ROWS = f"""{_HEAD_OF_STREAM}
INSERT INTO eventfold_events
    (stream_id, stream_version, event_id, event_type, schema_version, data, metadata)
SELECT $1, head.version + b.ord::integer, b.event_id, b.event_type, b.schema_version,
       b.data, b.metadata
FROM head,
     unnest($4::uuid[], $5::text[], $6::integer[], $7::jsonb[], $8::jsonb[])
         WITH ORDINALITY AS b(event_id, event_type, schema_version, data, metadata, ord)
WHERE {_STREAM_CHECK} AND head.free
ORDER BY b.ord
RETURNING stream_version, position, transaction_id::text::bigint
"""

_APPEND_ONE = _APPEND_ONE_ROW.format(free=_TRY_SHARED)
_APPEND_BATCH = _APPEND_ROWS.format(free=_TRY_SHARED)
# The same for a transaction that holds the exclusive lock already (a try of the shared
# lock would fail there whenever another writer queues for the exclusive one).
_APPEND_ONE_LOCKED = _APPEND_ONE_ROW.format(free="true")
_APPEND_BATCH_LOCKED = _APPEND_ROWS.format(free="true")

# After an append wrote nothing: which of the batch's ids are stored, and the stream's
# version, in one snapshot. One index lookup per id whatever plan gets cached (a scalar
# subquery per element cannot turn into a join that scans the table).
_SETTLE = f"""
SELECT (SELECT ROW(e.stream_id, e.stream_version, e.event_type, e.position,
                   e.transaction_id::text::bigint, e.schema_version, e.data::text,
                   e.metadata::text)
        FROM eventfold_events AS e WHERE e.event_id = b.id),
       ({_STREAM_LAST}),
       {life_of("$1")}
FROM unnest($2::uuid[]) WITH ORDINALITY AS b(id, ord)
ORDER BY b.ord
"""

_STREAM_VERSION = _STREAM_LAST
_READABLE_FROM = "SELECT readable_from FROM eventfold_stream_lifecycle WHERE stream_id = $1"
_STREAM_LIFE = """
SELECT readable_from, deleted_version, hard FROM eventfold_stream_lifecycle WHERE stream_id = $1
"""

# Read statements are prepared, one round trip each, and after five runs PostgreSQL caches
# a generic plan. Planned on an empty or small table it is a sequential scan (the cheapest
# plan there, and harmless); the store's ANALYZE once its writes grew the table tenfold
# (``_analyze``), or autovacuum's, makes every session plan again, on the indexes
# (tests/postgres/test_read_plans.py).

# JSON leaves as text and is parsed once in Python; xid8 leaves as bigint (no asyncpg codec).
_COLUMNS = (
    "event_id, stream_id, stream_version, transaction_id::text::bigint, position, "
    "event_type, schema_version, data::text, metadata::text, recorded_at"
)

# Events before the stream's readable_from are deleted or truncated (docs/lifecycle.md): a
# primary-key probe, evaluated once, raises the index range's low end.
_READ_FORWARDS = f"""
SELECT {_COLUMNS} FROM eventfold_events
WHERE stream_id = $1 AND stream_version >= greatest($2, {readable_from("$1")})
  AND stream_version <= $3
  AND ($4::timestamptz IS NULL OR recorded_at <= $4)
ORDER BY stream_version LIMIT $5
"""

_READ_BACKWARDS = f"""
SELECT {_COLUMNS} FROM eventfold_events
WHERE stream_id = $1 AND stream_version <= $2
  AND stream_version >= greatest($3, {readable_from("$1")})
  AND ($4::timestamptz IS NULL OR recorded_at <= $4)
ORDER BY stream_version DESC LIMIT $5
"""

# What a fold reads of each event (see ``TypedStream``): no envelope, no metadata.
_READ_FOR_FOLD = f"""
SELECT stream_version, position, event_type, schema_version, data::text FROM eventfold_events
WHERE stream_id = $1 AND stream_version >= greatest($2, {readable_from("$1")})
  AND stream_version <= $3
  AND ($4::timestamptz IS NULL OR recorded_at <= $4)
ORDER BY stream_version
"""

# The global log: strictly after the reader's position, and only below the oldest running
# transaction that could write events (VISIBLE_BELOW, evaluated once per statement), so
# that an event committing later with a lower position is not passed over. Both conditions
# are index conditions on (transaction_id, position). ORDER BY names the
# table's columns qualified: a bare ``transaction_id`` would mean the output column
# ``transaction_id::text::bigint``, which no index orders, and every batch would sort the
# whole rest of the log.
_READ_ALL = f"""
SELECT {_COLUMNS} FROM eventfold_events
WHERE (transaction_id, position) > ($1::text::xid8, $2)
  AND transaction_id < {VISIBLE_BELOW}
ORDER BY eventfold_events.transaction_id, eventfold_events.position LIMIT $3
"""

_READ_ALL_OF_TYPES = f"""
SELECT {_COLUMNS} FROM eventfold_events
WHERE (transaction_id, position) > ($1::text::xid8, $2)
  AND transaction_id < {VISIBLE_BELOW}
  AND event_type = ANY($4::text[])
ORDER BY eventfold_events.transaction_id, eventfold_events.position LIMIT $3
"""

# One partition of the log (partitioned subscribers): the streams whose id's MD5 begins
# with four bytes that, as a big-endian number modulo $5, make $6 - what
# ``records.partition_of`` computes in Python. The other partitions' rows are dropped here,
# not decoded and shipped to a reader that would drop them. $4 NULL: every type.
# The partition test sits in a CASE so the planner takes it to keep half the rows (its
# default for a boolean expression) rather than 1 in 200 (its default for an equality on an
# expression it has no statistics of): with that estimate it walks the log-order index and
# stops at the LIMIT, where the smaller one made it fetch the whole rest of the log and sort
# it for every page.
_READ_ALL_OF_PARTITION = f"""
SELECT {_COLUMNS} FROM eventfold_events
WHERE (transaction_id, position) > ($1::text::xid8, $2)
  AND transaction_id < {VISIBLE_BELOW}
  AND ($4::text[] IS NULL OR event_type = ANY($4::text[]))
  AND CASE WHEN ('x' || substr(md5(stream_id), 1, 8))::bit(32)::bigint % $5::int = $6::int
           THEN true ELSE false END
ORDER BY eventfold_events.transaction_id, eventfold_events.position LIMIT $3
"""

_HEAD = f"""
SELECT transaction_id::text::bigint, position FROM eventfold_events
WHERE transaction_id < {VISIBLE_BELOW}
ORDER BY eventfold_events.transaction_id DESC, eventfold_events.position DESC LIMIT 1
"""

# The last committed event, visible to readers or not (see committed_head).
_COMMITTED_HEAD = """
SELECT transaction_id::text::bigint, position FROM eventfold_events
ORDER BY eventfold_events.transaction_id DESC, eventfold_events.position DESC LIMIT 1
"""

_READ_EVENT = f"SELECT {_COLUMNS} FROM eventfold_events WHERE event_id = $1"

# A conversation's events by the expression index on metadata->>'correlation_id', plus the
# event that started it (by the unique index on event_id). Committed events above the
# readers' horizon are included: a trace is a diagnosis, not a subscription. A UNION of
# the two lookups, not one WHERE with OR: planned on an empty table, the OR walked the
# whole log-order index and filtered each row.
_READ_CORRELATION = f"""
SELECT * FROM (
    SELECT {_COLUMNS} FROM eventfold_events WHERE metadata->>'correlation_id' = $1
    UNION
    SELECT {_COLUMNS} FROM eventfold_events WHERE event_id = $2::uuid
) AS conversation
ORDER BY transaction_id, position
"""

# Streams are the distinct stream ids of the events table: a skip scan over the unique
# (stream_id, stream_version) index (one probe per stream, not per event), then each
# stream's last event. A stream deleted by its last event reads as absent and is left out
# (``hidden``: a primary-key probe of eventfold_stream_lifecycle). The recursive part runs
# only as far as the LIMIT reads, so hidden streams in between keep the page full.
_LIST_STREAMS = f"""
WITH RECURSIVE ids(stream_id) AS (
    (SELECT e.stream_id FROM eventfold_events AS e
     WHERE e.stream_id >= $1 {{upper}} ORDER BY e.stream_id LIMIT 1)
    UNION ALL
    SELECT (SELECT e.stream_id FROM eventfold_events AS e
            WHERE e.stream_id > ids.stream_id {{upper}} ORDER BY e.stream_id LIMIT 1)
    FROM ids WHERE ids.stream_id IS NOT NULL
)
SELECT ids.stream_id, head.stream_version, head.recorded_at
FROM ids CROSS JOIN LATERAL (
    SELECT e.stream_version, e.recorded_at FROM eventfold_events AS e
    WHERE e.stream_id = ids.stream_id ORDER BY e.stream_version DESC LIMIT 1
) AS head
WHERE NOT {hidden("ids.stream_id", "head.stream_version")}
LIMIT $2
"""
_LIST_ALL_STREAMS = _LIST_STREAMS.format(upper="")
_LIST_STREAMS_BELOW = _LIST_STREAMS.format(upper="AND e.stream_id < $3")

# One stream's last event, unless it deleted the stream (as in ``_LIST_STREAMS``).
_STREAM_HEAD = f"""
SELECT head.stream_version, head.recorded_at FROM (
    SELECT e.stream_version, e.recorded_at FROM eventfold_events AS e
    WHERE e.stream_id = $1 ORDER BY e.stream_version DESC LIMIT 1
) AS head
WHERE NOT {hidden("$1", "head.stream_version")}
"""


# Import: the streams' versions, checked under the transaction's own snapshot before the
# COPY (one probe of the unique (stream_id, stream_version) index per stream; unnest keeps
# the plan an index lookup per element).
_STORED_VERSIONS = """
SELECT s.stream_id, (SELECT max(e.stream_version) FROM eventfold_events AS e
                     WHERE e.stream_id = s.stream_id),
       (SELECT l.deleted_version FROM eventfold_stream_lifecycle AS l
        WHERE l.stream_id = s.stream_id AND l.hard)
FROM unnest($1::text[]) AS s(stream_id)
"""
# The columns an import writes with COPY; position (the identity) and transaction_id
# (pg_current_xact_id()) take their defaults, row by row in the order sent, so the batch
# lies after everything committed before it, in the order of its source.
_ANALYZE_AFTER = 1_000
"""Rows written (appended or imported) after which the store analyzes the events table,
when they grew it at least tenfold since its last statistics: see ``_analyze``."""
_TABLE_ROWS = "SELECT reltuples FROM pg_class WHERE oid = 'eventfold_events'::regclass"
"""The planner's idea of the events table's size (-1: never analyzed)."""
_IMPORT_COLUMNS = (
    "event_id", "stream_id", "stream_version", "event_type", "schema_version", "data",
    "metadata", "recorded_at",
)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool reset that sends nothing: the store never changes session state on pooled
    connections, and asyncpg's default reset would cost a round trip per append."""


class PostgresEventStore:
    """The event store on PostgreSQL. Open it with ``await PostgresEventStore.open(url, registry)``
    (or ``eventfold.eventstore.connect(url, registry)``)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        registry: EventRegistry,
        url: str,
        *,
        poll_interval: float = 0.5,
        group_commit: bool = True,
    ) -> None:
        self.registry = registry
        self.url = masked(url)
        self._raw_url = url
        self._pool = pool
        self._connections = ConnectionCache(pool)
        self._poll_interval = poll_interval
        self._waiters: set[asyncio.Event] = set()
        self._listener: asyncpg.Connection | None = None
        self._listener_lock = asyncio.Lock()
        self._notifier: asyncpg.Connection | None = None
        self._notify_task: asyncio.Task[None] | None = None
        self._notify_pending = False
        self._closed = False
        keys = PostgresKeyStore(self._fetch)
        self._shredder = Shredder(registry, keys, keys.sealed_streams, database=url)
        self._unanalyzed = 0
        self._analyzed_rows = 0.0
        self._analysis: asyncio.Task[None] | None = None
        self._groups = (
            GroupCommit(self._send_group, pool.get_max_size())
            if group_commit
            else None
        )

    @property
    def keys(self) -> KeyStore:
        return self._shredder.keys

    @classmethod
    async def open(
        cls,
        url: str,
        registry: EventRegistry,
        *,
        min_size: int = 1,
        max_size: int = 10,
        idle_in_transaction_timeout: float = 60.0,
        poll_interval: float = 0.5,
        check_schema: bool = True,
        group_commit: bool = True,
    ) -> Self:
        """Connect a pool and check the database is fit to serve.

        ``idle_in_transaction_timeout`` (seconds, 0 = off) ends sessions that sit in an open
        transaction, which would hold every reader of the global log back.
        ``poll_interval`` bounds how long ``wait_for_events`` waits between checks when no
        notification comes. ``group_commit`` sends appends that wait at the same time
        together, one statement and one transaction per group (docs/operations.md); turn it
        off to send each append alone. Raises ``StoreUnavailable`` when the server cannot be
        reached, ``SchemaNotMigrated`` when the schema is not at ``SCHEMA_HEAD`` and
        ``TransactionHorizonError`` when stored transaction ids lie beyond the server's.
        """
        shown = masked(url)
        try:
            pool = await asyncpg.create_pool(
                asyncpg_dsn(url),
                min_size=min_size,
                max_size=max_size,
                server_settings=session_settings(idle_in_transaction_timeout),
                reset=_keep_session,
            )
        except Exception as exc:
            if is_unavailable(exc):
                raise unavailable(shown, exc) from exc
            raise
        store = cls(pool, registry, url, poll_interval=poll_interval, group_commit=group_commit)
        try:
            if check_schema:
                await store._check_fit()
        except BaseException:
            await pool.close()
            raise
        return store

    @property
    def pool(self) -> asyncpg.Pool:
        """The store's asyncpg pool, for components that share its database (its sessions
        keep the server's planner settings)."""
        return self._pool

    async def _check_fit(self) -> None:
        try:
            async with self._pool.acquire() as conn:
                try:
                    current = await conn.fetchval(f"SELECT version_num FROM {VERSION_TABLE}")
                except asyncpg.UndefinedTableError:
                    current = None
                if current != SCHEMA_HEAD:
                    raise SchemaNotMigrated(self.url, current, SCHEMA_HEAD)
                await check_horizon(conn, self.url)
                self._analyzed_rows = max(0.0, float(await conn.fetchval(_TABLE_ROWS)))
        except Exception as exc:
            if is_unavailable(exc):
                raise unavailable(self.url, exc) from exc
            raise

    # -- writing -------------------------------------------------------------------------

    @traced_append
    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent | Event],
        *,
        expected_version: ExpectedVersion = ANY,
    ) -> AppendResult:
        """Append a batch atomically in one round trip (see ``EventStore.append``)."""
        expected = check_expected_version(expected_version)
        batch = encode_batch(self.registry, stream_id, events)
        if isinstance(expected, int) and expected > _INT4_MAX:
            # Versions are int4: no stream can be there, and the driver could not send it.
            raise ConcurrencyError(stream_id, expected, await self.stream_version(stream_id))
        batch = await self._shredder.seal(batch)
        query, args = append_statement(stream_id, batch, expected)
        rows = None
        # A batch of more than half a group could not share its group with another as
        # large: it already spreads its transaction over its events, and goes alone at once.
        if self._groups is not None and len(batch) <= GROUP_EVENTS // 2:
            low, high = _version_bounds(expected)
            pending = PendingAppend(stream_id, batch, low, high, query, args)
            rows = await self._groups.append(pending)
        if rows is None:
            rows = await self._insert([stream_id], query, args)
        if not rows:
            return await self._append_contended(stream_id, batch, expected, args)
        self._announce()
        if self._grew(len(rows)) and self._analysis is None:
            self._analysis = asyncio.create_task(self._analyze_aside())
        return _result(stream_id, rows)

    async def _append_contended(
        self,
        stream_id: str,
        batch: list[EncodedEvent],
        expected: ExpectedVersion,
        args: tuple[Any, ...],
    ) -> AppendResult:
        """The slow path, after the one-statement append wrote nothing: its version did
        not match, a concurrent writer took the same versions, a serialized writer holds
        the stream's lock, or (some of) the batch's ids are stored.

        When the stream turns out to be where the append expects it after all (always so
        for ANY), the append goes again behind the stream's exclusive lock, where no other
        append can race it: a lost race costs a few round trips, never a failure. ANY and
        STREAM_EXISTS go there at once (they almost never conflict for good, and the
        locked try meets a replay as well); an exact version asks first, as its lost race
        is most often a conflict that no lock would cure.
        """
        if expected is not ANY and expected is not STREAM_EXISTS:
            replay, _ = await self._settle(stream_id, batch, expected)
            if replay is not None:
                return replay
        statement = _APPEND_ONE_LOCKED if len(batch) == 1 else _APPEND_BATCH_LOCKED
        rows = await self._insert([stream_id], statement, args, locked=True)
        if rows:
            self._announce()
            return _result(stream_id, rows)
        replay, actual = await self._settle(stream_id, batch, expected)
        if replay is not None:
            return replay
        # Behind the lock no append can have taken the versions, and none of the ids is
        # stored: something else keeps the rows out. Not an outage, and not worth a retry.
        raise InvalidAppend(
            f"the database wrote nothing for the append to {stream_id!r} (at version "
            f"{actual}, as expected) and no other append explains it: check triggers and "
            "rules on eventfold_events, and programs that insert events without the "
            "stream's lock; nothing was written"
        )

    async def _insert(
        self, stream_ids: Sequence[str], query: str, args: tuple[Any, ...], *,
        locked: bool = False,
    ) -> list[asyncpg.Record]:
        """Run an append statement for these streams (``locked``: in a transaction that
        first takes each stream's exclusive lock, in the order given - stream id order, so
        that two calls sharing streams queue alike and cannot deadlock): the inserted rows,
        or none when it wrote nothing or a unique index refused the batch (its versions or
        its event ids are taken)."""
        conn = await self._take()
        try:
            if locked:
                async with conn.transaction():
                    for stream_id in stream_ids:
                        await conn.execute(_LOCK_STREAM, stream_id)
                    rows: list[asyncpg.Record] = await conn.fetch(query, *args)
            else:
                rows = await conn.fetch(query, *args)
        except asyncpg.UniqueViolationError as exc:
            self._connections.give(conn)
            if exc.constraint_name not in (_EVENT_ID_CONSTRAINT, _STREAM_VERSION_CONSTRAINT):
                raise
            return []
        except asyncpg.DataError as exc:
            self._connections.give(conn)
            streams = repr(stream_ids[0]) if len(stream_ids) == 1 else f"streams {stream_ids}"
            raise InvalidAppend(
                f"the database rejected the append to {streams}: {exc}; nothing was written"
            ) from exc
        except BaseException as exc:
            raise await self._failed(conn, exc) from exc
        self._connections.give(conn)
        return rows

    async def _send_group(self, group: list[PendingAppend]) -> list[Outcome]:
        """Send a group of appends (see ``postgres_group``): each member's rows, its error,
        or None when it must go again alone."""
        if len(group) == 1:
            [item] = group
            try:
                return [await self._insert([item.stream_id], item.query, item.args)]
            except Exception as exc:
                return [exc]
        try:
            conn = await self._connections.take()
        except Exception as exc:
            if is_unavailable(exc):
                return [unavailable(self.url, exc) for _ in group]
            raise
        try:
            rows: list[asyncpg.Record] = await conn.fetch(APPEND_GROUP, *group_arguments(group))
        except BaseException as exc:
            await self._failed(conn, exc)
            if not isinstance(exc, Exception):
                raise
            if is_unavailable(exc):
                return [unavailable(self.url, exc) for _ in group]
            # A unique index, a refused value, ...: maybe one member's fault, so each
            # goes alone and meets only its own fate.
            return [None for _ in group]
        self._connections.give(conn)
        return rows_by_stream(group, rows)

    async def append_streams(self, appends: Sequence[StreamAppend]) -> list[AppendResult]:
        """Append to several streams as one unit in one statement (see
        ``EventStore.append_streams`` and ``postgres_streams``)."""
        parts = check_appends(self.registry, appends)
        sealed = [
            dataclasses.replace(part, batch=await self._shredder.seal(part.batch))
            for part in parts
        ]
        # Versions are int4: a larger expected version matches no stream (-1 never does).
        bounds = [
            (-1, -1) if isinstance(part.expected, int) and part.expected > _INT4_MAX
            else _version_bounds(part.expected)
            for part in sealed
        ]
        args = streams_arguments(sealed, bounds)
        stream_ids = [part.stream_id for part in sealed]
        rows = await self._insert(stream_ids, APPEND_STREAMS, args)
        if not rows:
            # Nothing written: a conflict, a lost race, a stream's lock taken, or a replay.
            # As for ``append``'s slow path: when every stream is where its part expects
            # it, the call goes again behind every stream's exclusive lock.
            replay = await self._settle_streams(sealed)
            if replay is not None:
                return in_call_order(appends, replay)
            rows = await self._insert(stream_ids, APPEND_STREAMS_LOCKED, args, locked=True)
        if not rows:
            replay = await self._settle_streams(sealed)
            if replay is not None:
                return in_call_order(appends, replay)
            raise InvalidAppend(
                f"the database wrote nothing for the append to streams "
                f"{[part.stream_id for part in sealed]} (each as expected) and no other "
                "append explains it: check triggers and rules on eventfold_events; nothing "
                "was written"
            )
        self._announce()
        if self._grew(len(rows)) and self._analysis is None:
            self._analysis = asyncio.create_task(self._analyze_aside())
        written: dict[str, list[asyncpg.Record]] = {part.stream_id: [] for part in sealed}
        for row in rows:
            written[row[3]].append(row)
        return in_call_order(appends, {
            stream_id: _result(stream_id, stream_rows) for stream_id, stream_rows in written.items()
        })

    async def _settle_streams(
        self, parts: Sequence[CheckedAppend]
    ) -> dict[str, AppendResult] | None:
        """After an ``append_streams`` wrote nothing: the original results when the whole
        call is stored as it was sent, None when none of it is and every stream is where
        its part expects it; ``StreamsConflict`` naming every stream that is not."""
        stored: list[list[StoredFacts | None]] = []
        actual: dict[str, int] = {}
        lives: dict[str, StreamLife] = {}
        conn = await self._take()
        try:
            # One snapshot for every part: a concurrent call is seen whole or not at all.
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                for part in parts:
                    rows = await conn.fetch(
                        _SETTLE, part.stream_id, [item.event_id for item in part.batch]
                    )
                    actual[part.stream_id] = int(rows[0][1])
                    lives[part.stream_id] = _life(rows[0][2])
                    stored.append(
                        [None if row[0] is None else StoredFacts(*row[0]) for row in rows]
                    )
        except BaseException as exc:
            failure = await self._failed(conn, exc)
            if failure is exc:
                raise
            raise failure from exc
        self._connections.give(conn)
        replay = replayed_call(parts, stored)
        if replay is None and (conflict := conflicts(parts, actual, lives)) is not None:
            raise conflict
        return replay

    async def _settle(
        self, stream_id: str, batch: list[EncodedEvent], expected: ExpectedVersion
    ) -> tuple[AppendResult | None, int]:
        """After an append wrote nothing: the original result when the whole batch is
        stored as it was sent (None when none of it is; ``DuplicateEventId`` otherwise,
        the memory backend's rule), and the stream's version; ``ConcurrencyError`` when
        that is not the expected one."""
        rows = await self._fetch(_SETTLE, stream_id, [item.event_id for item in batch])
        actual = int(rows[0][1])
        life = _life(rows[0][2])
        stored = [None if row[0] is None else StoredFacts(*row[0]) for row in rows]
        replay = replayed(stream_id, batch, stored)
        if replay is None:
            check_open(stream_id, life, actual)
            if not matches(expected, actual, life):
                raise ConcurrencyError(stream_id, expected, actual)
        return replay, actual

    async def import_events(self, records: Sequence[RecordedEvent]) -> None:
        """Store recorded events as they are (see ``EventStore.import_events``): one
        transaction, the rows sent with ``COPY``.

        The rows get this database's positions and its own transaction id, like an
        append's, so the log keeps the horizon's guarantee: a reader tailing the store sees
        the batch after everything before it, and nothing of it before it commits.
        """
        runs = check_import(records)
        if not records:
            return
        rows = [
            (record.event_id, record.stream_id, record.stream_version, record.event_type,
             record.schema_version, stored_json(record.data), stored_json(record.metadata),
             record.recorded_at)
            for record in records
        ]
        conn = await self._take()
        try:
            async with conn.transaction():
                stored = await conn.fetch(_STORED_VERSIONS, list(runs))
                check_not_tombstoned(runs, {row[0]: row[2] for row in stored if row[2] is not None})
                check_follows_on(runs, {row[0]: row[1] for row in stored if row[1]})
                await conn.copy_records_to_table(
                    "eventfold_events", records=rows, columns=_IMPORT_COLUMNS
                )
                await _apply_changes(conn, life_changes(
                    (record.stream_id, record.stream_version, record.event_type, record.data)
                    for record in records
                ))
        except asyncpg.UniqueViolationError as exc:
            self._connections.give(conn)
            raise await self._import_refused(records, exc) from exc
        except ImportRefused:
            self._connections.give(conn)
            raise
        except BaseException as exc:
            failure = await self._failed(conn, exc)
            if failure is exc:
                raise
            raise failure from exc
        self._connections.give(conn)
        self._announce()
        if self._grew(len(rows)):
            await self._analyze()

    async def import_copied(self, copied: AsyncIterable[bytes]) -> int:
        """Store events sent as a binary ``COPY`` of another PostgreSQL store's import
        columns (``postgres_copy`` streams them), as ``import_events`` stores records: one
        transaction, this database's positions and transaction id. Returns the rows
        written; an event already stored raises the server's ``UniqueViolationError``."""
        conn = await self._take()
        try:
            async with conn.transaction():
                status = await conn.copy_to_table(
                    "eventfold_events", source=copied, columns=_IMPORT_COLUMNS,
                    format="binary",
                )
                imported = await conn.fetch(IMPORTED_CHANGES)
                await _apply_changes(conn, life_changes(
                    (row[0], row[1], row[2], json.loads(row[3])) for row in imported
                ))
        except BaseException as exc:
            failure = await self._failed(conn, exc)
            if failure is exc:
                raise
            raise failure from exc
        self._connections.give(conn)
        written = int(status.split()[-1])
        self._announce()
        if self._grew(written) and self._analysis is None:
            self._analysis = asyncio.create_task(self._analyze_aside())
        return written

    def _grew(self, written: int) -> bool:
        """Count rows this store wrote; True once they grew the table tenfold since its
        last statistics (and by at least ``_ANALYZE_AFTER`` rows)."""
        self._unanalyzed += written
        return self._unanalyzed >= max(_ANALYZE_AFTER, 9 * self._analyzed_rows)

    async def _analyze_aside(self) -> None:
        """``_analyze`` beside the appends that grew the table: none of them waits for it,
        and a failure only leaves the statistics to autovacuum."""
        try:
            await self._analyze()
        except (StoreUnavailable, asyncpg.PostgresError):
            pass
        finally:
            self._analysis = None

    async def _analyze(self) -> None:
        """Refresh the planner's statistics of the events table once this store's writes
        grew it tenfold.

        Writes outrun autovacuum's analyze (it looks once a minute): until then the planner
        takes the table for as small as it last saw it. Prepared statements' cached generic
        plans, made while the table was empty or small, scan the whole table on every
        append, and reads of the log sort all of it for every page. New statistics make
        every session plan again. Analyzing takes no lock that appends or reads wait for."""
        conn = await self._take()
        try:
            await conn.execute("ANALYZE eventfold_events")
            rows = await conn.fetchval(_TABLE_ROWS)
        except BaseException as exc:
            failure = await self._failed(conn, exc)
            if failure is exc:
                raise
            raise failure from exc
        self._connections.give(conn)
        self._unanalyzed = 0
        self._analyzed_rows = max(0.0, float(rows))

    async def _import_refused(
        self, records: Sequence[RecordedEvent], exc: asyncpg.UniqueViolationError
    ) -> ImportRefused:
        """Which event of a refused import broke which rule."""
        if exc.constraint_name == _EVENT_ID_CONSTRAINT:
            rows = await self._fetch(
                "SELECT event_id FROM eventfold_events WHERE event_id = ANY($1::uuid[])",
                [record.event_id for record in records],
            )
            stored = {row[0] for row in rows}
            for record in records:
                if record.event_id in stored:
                    return duplicate_id(record.event_id, record.stream_id)
        first = records[0]
        return ImportRefused(first.event_id, first.stream_id, f"the database refused it ({exc})")

    # -- reading -------------------------------------------------------------------------

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
        if backwards:
            rows = await self._fetch(
                _READ_BACKWARDS, read.stream_id, read.high, read.low, read.as_of, read.limit
            )
        else:
            rows = await self._fetch(
                _READ_FORWARDS, read.stream_id, read.low, read.high, read.as_of, read.limit
            )
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
        rows = await self._fetch(_READ_FOR_FOLD, read.stream_id, read.low, read.high, read.as_of)

        async def records(first: int, last: int) -> list[RecordedEvent]:
            return await self.read_stream(
                stream_id, from_version=first, to_version=last, as_of=as_of
            )

        # A load must know whether the stream was deleted or truncated after the snapshot
        # it starts from: when the first row is not the version asked for, one primary-key
        # probe says (``TypedStream.readable_from``).
        readable = 1
        if not rows or rows[0][0] != read.low:
            row = await self._read_row(_READABLE_FROM, read.stream_id)
            readable = 1 if row is None else int(row[0])
        return await typed_stream(
            self.registry, self._shredder, read.stream_id, rows, records, skip_unknown,
            readable_from=readable,
        )

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
        transaction_id, position = read.after
        types = None if read.event_types is None else list(
            self.registry.stored_types(read.event_types)
        )
        if read.partition is not None:
            rows = await self._fetch(
                _READ_ALL_OF_PARTITION, str(transaction_id), position, read.limit, types,
                read.partition[1], read.partition[0],
            )
        elif types is None:
            rows = await self._fetch(_READ_ALL, str(transaction_id), position, read.limit)
        else:
            rows = await self._fetch(
                _READ_ALL_OF_TYPES, str(transaction_id), position, read.limit, types,
            )
        return self.registry.upcast_all(await self._shredder.reveal(_records(rows)))

    async def head(self) -> GlobalPosition:
        """The last position readers can see (``START`` when none)."""
        row = await self._read_row(_HEAD)
        return START if row is None else GlobalPosition(row[0], row[1])

    async def committed_head(self) -> GlobalPosition:
        """The last committed event's position, though an older open transaction may still
        hide it from readers (see ``EventStore.committed_head``)."""
        row = await self._read_row(_COMMITTED_HEAD)
        return START if row is None else GlobalPosition(row[0], row[1])

    async def stream_version(self, stream_id: str) -> int:
        """The stream's version (0 when it has no events)."""
        check_stream_id_read(stream_id)
        row = await self._read_row(_STREAM_VERSION, stream_id)
        assert row is not None
        return int(row[0])

    async def list_streams(
        self, *, category: str | None = None, after: str | None = None, limit: int = 100
    ) -> list[StreamInfo]:
        """Streams ordered by id (byte order), optionally of one category, after an id."""
        limit = check_list_limit(limit)
        # Byte order (the column's C collation): the least id above `after` is `after`
        # followed by the least character text can hold.
        low = "" if after is None else after + "\x01"
        found: list[StreamInfo] = []
        if category is None:
            rows = await self._fetch(_LIST_ALL_STREAMS, low, limit)
        elif "-" in category or limit == 0:
            return []  # a category is the part of an id before its first "-"
        else:
            # The category's streams: the id that is the category itself, then the ids
            # that start with "<category>-" (a range: "-" is followed by "." in bytes).
            if category >= low:
                head = await self._read_row(_STREAM_HEAD, category)
                if head is not None:
                    found.append(StreamInfo(category, head[0], head[1]))
            prefix = category + "-"
            rows = await self._fetch(
                _LIST_STREAMS_BELOW, max(low, prefix), limit - len(found), category + "."
            )
        found.extend(StreamInfo(row[0], row[1], row[2]) for row in rows)
        return found

    async def stream_life(self, stream_id: str) -> StreamLife:
        """The stream's deletions and truncations (see ``EventStore.stream_life``)."""
        row = await self._read_row(_STREAM_LIFE, check_stream_id_read(stream_id))
        return LIVE if row is None else StreamLife(row[0], row[1], row[2])

    async def read_event(self, event_id: uuid.UUID) -> list[RecordedEvent]:
        """The event with this id (see ``EventStore.read_event``)."""
        rows = await self._fetch(_READ_EVENT, event_id)
        return self.registry.upcast_all(await self._shredder.reveal(_records(rows)))

    async def read_correlation(self, correlation_id: str) -> list[RecordedEvent]:
        """The events of one correlation (see ``EventStore.read_correlation``)."""
        try:
            event_id: uuid.UUID | None = uuid.UUID(correlation_id)
        except ValueError:
            event_id = None
        rows = await self._fetch(_READ_CORRELATION, correlation_id, event_id)
        return self.registry.upcast_all(await self._shredder.reveal(_records(rows)))

    async def delete_stream(
        self, stream_id: str, *, expected_version: int | None = None, hard: bool = False
    ) -> AppendResult:
        """Append ``StreamDeleted`` and hide the stream, in one transaction (see
        ``EventStore.delete_stream``)."""
        return await self._change_life(
            stream_id, StreamDeleted(hard=hard), delete_expected(expected_version),
            lambda version: (DELETE_LIFE, (stream_id, version, hard)),
        )

    async def truncate_stream(
        self, stream_id: str, before: int, *, expected_version: int | None = None
    ) -> AppendResult:
        """Append ``StreamTruncated`` and hide the events before ``before``, in one
        transaction (see ``EventStore.truncate_stream``)."""
        expected = delete_expected(expected_version)
        check_truncate(stream_id, before, _INT4_MAX - 1)  # its type and least value, at once

        def change(version: int) -> tuple[str, tuple[Any, ...]]:
            check_truncate(stream_id, before, version - 1)
            return TRUNCATE_LIFE, (stream_id, before)

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
        """The event and the stream's new life in one transaction, behind the stream's
        exclusive lock: no append of the stream runs beside it, so none lands inside a
        deleted stream unnoticed (an append that raced it is before it in the stream, or
        meets the deletion after it)."""
        check_stream_id_read(stream_id)
        batch = await self._shredder.seal(encode_batch(self.registry, stream_id, [event]))
        if isinstance(expected, int) and expected > _INT4_MAX:
            raise ConcurrencyError(stream_id, expected, await self.stream_version(stream_id))
        _, args = append_statement(stream_id, batch, expected)
        conn = await self._take()
        try:
            async with conn.transaction():
                await conn.execute(_LOCK_STREAM, stream_id)
                rows: list[asyncpg.Record] = await conn.fetch(_APPEND_ONE_LOCKED, *args)
                if rows:
                    statement, params = change(rows[0][0])
                    await conn.execute(statement, *params)
        except InvalidAppend:
            self._connections.give(conn)  # refused before the database was asked
            raise
        except BaseException as exc:
            raise await self._failed(conn, exc) from exc
        self._connections.give(conn)
        if not rows:
            _, actual = await self._settle(stream_id, batch, expected)
            raise InvalidAppend(
                f"the database wrote nothing for the change to {stream_id!r} (at version "
                f"{actual}, as expected): check triggers and rules on eventfold_events"
            )
        self._announce()
        return _result(stream_id, rows)

    async def scavenge(
        self, *, dry_run: bool = False, on_progress: OnScavengeProgress | None = None
    ) -> Scavenge:
        """Remove the hidden events, a batch per statement, each its own transaction (see
        ``EventStore.scavenge``)."""
        pending = await self._fetch(SCAVENGE_PENDING)
        counts: dict[str, int] = {}
        for stream_id, readable, scavenged_below in pending:
            [(count,)] = await self._fetch(SCAVENGE_COUNT, stream_id, scavenged_below, readable)
            [(archived,)] = await self._fetch(
                postgres_archive.SCAVENGE_COUNT, stream_id, scavenged_below, readable
            )
            count += archived
            if count:
                counts[stream_id] = int(count)
        if dry_run:
            return Scavenge(True, counts)
        total = sum(counts.values())
        removed = 0
        for stream_id, readable, _ in pending:
            while True:  # the archive's first: the stream counts as scavenged once both are
                gone = len(await self._fetch(
                    postgres_archive.SCAVENGE, stream_id, readable, SCAVENGE_BATCH
                ))
                removed += gone
                if gone and on_progress is not None:
                    on_progress(ScavengeProgress(removed, total, stream_id))
                if gone < SCAVENGE_BATCH:
                    break
            while True:
                gone = len(await self._fetch(SCAVENGE_EVENTS, stream_id, readable, SCAVENGE_BATCH))
                removed += gone
                if gone and on_progress is not None:
                    on_progress(ScavengeProgress(removed, total, stream_id))
                if gone < SCAVENGE_BATCH:
                    break
            await self._fetch(SCAVENGE_SNAPSHOTS, stream_id, readable)
            await self._fetch(SCAVENGED, stream_id, readable)
        return Scavenge(False, counts)

    async def horizon_holders(self) -> list[HorizonHolder]:
        """Sessions with an open write transaction, oldest first: the first one holds
        readers of the global log back (name it when projections lag)."""
        try:
            async with self._pool.acquire() as conn:
                return await horizon_holders(conn)
        except Exception as exc:
            if is_unavailable(exc):
                raise unavailable(self.url, exc) from exc
            raise

    async def _take(self) -> asyncpg.Connection:
        try:
            return await self._connections.take()
        except Exception as exc:
            if is_unavailable(exc):
                raise unavailable(self.url, exc) from exc
            raise

    async def _failed(self, conn: asyncpg.Connection, exc: BaseException) -> BaseException:
        """What to raise for a statement that failed with ``exc``; the connection goes
        back to the cache when only the statement failed, to the pool otherwise."""
        failure: BaseException = exc
        if isinstance(exc, asyncpg.PostgresError) and not is_unavailable(exc):
            self._connections.give(conn)  # the server said no; the session is fine
            return failure
        with contextlib.suppress(Exception):
            await self._connections.discard(conn)
        if isinstance(exc, Exception) and is_unavailable(exc):
            return unavailable(self.url, exc)
        return exc

    async def archive_stream(self, stream_id: str, *, before: int | None = None) -> int:
        """Move events of the stream to the archive (see ``EventStore.archive_stream``),
        one statement (one short transaction) per batch."""
        stream_id, before = check_archive(stream_id, before)
        row = await self._read_row(postgres_archive.HOT_VERSIONS, stream_id)
        if row is None or row[0] is None:
            return 0
        moved = 0
        for low, high in archive_batches(row[0], row[1], before):
            count = await self._read_row(postgres_archive.MOVE, stream_id, low, high)
            assert count is not None
            moved += int(count[0])
        return moved

    async def read_stream_with_archive(self, stream_id: str) -> list[RecordedEvent]:
        """The stream's archived and hot events (see ``EventStore.read_stream_with_archive``)."""
        rows = await self._fetch(postgres_archive.READ_STREAM, check_stream_id_read(stream_id))
        return self.registry.upcast_all(await self._shredder.reveal(_records(rows)))

    async def read_all_with_archive(
        self, *, after: GlobalPosition = START, limit: int = 1000
    ) -> list[RecordedEvent]:
        """The whole log after ``after`` (see ``EventStore.read_all_with_archive``)."""
        read = check_log_read(after, limit, None, None)
        transaction_id, position = read.after
        rows = await self._fetch(
            postgres_archive.READ_ALL, str(transaction_id), position, read.limit
        )
        return self.registry.upcast_all(await self._shredder.reveal(_records(rows)))

    async def forget(self, subject: str, *, dry_run: bool = False) -> Forgetting:
        """Destroy a data subject's key (see ``EventStore.forget``)."""
        return await self._shredder.forget(subject, dry_run=dry_run)

    async def _fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        conn = await self._take()
        try:
            rows: list[asyncpg.Record] = await conn.fetch(query, *args)
        except BaseException as exc:
            failure = await self._failed(conn, exc)
            if failure is exc:
                raise
            raise failure from exc
        self._connections.give(conn)
        return rows

    async def _read_row(self, query: str, *args: Any) -> asyncpg.Record | None:
        rows = await self._fetch(query, *args)
        return rows[0] if rows else None

    # -- waiting for events --------------------------------------------------------------

    async def wait_for_events(self, after: GlobalPosition, timeout: float) -> bool:
        """Wait until the log has events after ``after`` or the timeout passes.

        Woken by NOTIFY (from any process's store), and checking at least every
        ``poll_interval`` anyway: a notification can come while an older transaction still
        holds the horizon, and notifications are lost while the listener reconnects.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        woken = asyncio.Event()
        self._waiters.add(woken)
        try:
            await self._ensure_listener()
            while True:
                # Checked after the waiter is registered, so no notification falls between.
                if await self.head() > after:
                    return True
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), min(remaining, self._poll_interval))
                woken.clear()
        finally:
            self._waiters.discard(woken)

    def _wake_waiters(self, *_: object) -> None:
        for waiter in self._waiters:
            waiter.set()

    async def _ensure_listener(self) -> None:
        if self._listener is not None and not self._listener.is_closed():
            return
        async with self._listener_lock:
            if self._listener is not None and not self._listener.is_closed():
                return
            try:
                listener = await connect(
                    self._raw_url, server_settings=session_settings(0)
                )
                await listener.add_listener(NOTIFY_CHANNEL, self._wake_waiters)
            except Exception as exc:
                if is_unavailable(exc):
                    return  # polling carries on; the next wait tries to listen again
                raise
            listener.add_termination_listener(self._listener_lost)
            self._listener = listener

    def _listener_lost(self, *_: object) -> None:
        self._listener = None
        self._wake_waiters()

    def _announce(self) -> None:
        """Wake local waiters now and other processes' through NOTIFY, coalesced: at most
        one notification in flight per store, sent after the append committed."""
        self._wake_waiters()
        self._notify_pending = True
        if self._notify_task is None or self._notify_task.done():
            self._notify_task = asyncio.create_task(self._send_notifications())

    async def _send_notifications(self) -> None:
        while self._notify_pending and not self._closed:
            self._notify_pending = False
            try:
                if self._notifier is None or self._notifier.is_closed():
                    # A NOTIFY is a transaction of its own: no need to wait for its WAL
                    # flush (a lost wake-up costs one poll interval, never an event).
                    self._notifier = await connect(
                        self._raw_url,
                        server_settings={**session_settings(0), "synchronous_commit": "off"},
                    )
                await self._notifier.execute(f"NOTIFY {NOTIFY_CHANNEL}")
                # Coalesce a flood of appends into a few notifications.
                await asyncio.sleep(_NOTIFY_INTERVAL)
            except Exception as exc:
                # Fire and forget: listeners poll anyway. Drop the connection, try next time.
                if not (is_unavailable(exc) or isinstance(exc, asyncpg.PostgresError)):
                    raise
                if self._notifier is not None:
                    self._notifier.terminate()
                self._notifier = None
                return

    # -- lifecycle -----------------------------------------------------------------------

    async def close(self) -> None:
        """Close the pool and the listener and notifier connections."""
        if self._closed:
            return
        self._closed = True
        if self._groups is not None:
            await self._groups.close()
        if self._analysis is not None:
            with contextlib.suppress(Exception):
                await self._analysis
        if self._notify_task is not None:
            with contextlib.suppress(Exception):
                await self._notify_task
        for conn in (self._listener, self._notifier):
            if conn is not None and not conn.is_closed():
                with contextlib.suppress(Exception):
                    await conn.close(timeout=5)
        self._listener = self._notifier = None
        self._wake_waiters()
        await self._connections.close()
        await self._pool.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def append_statement(
    stream_id: str, batch: Sequence[EncodedEvent], expected: ExpectedVersion
) -> tuple[str, tuple[Any, ...]]:
    """The SQL and arguments of an append (the store's own, and for tests that run it on a
    connection of their own, inside their own transaction).

    It returns one row per event written, in version order: ``(stream_version, position,
    transaction_id)``; no rows when the stream's version is not the expected one or a
    serialized append holds or awaits the stream's lock, and a unique violation when a
    concurrent writer took the versions or the ids are stored.
    """
    low, high = _version_bounds(expected)
    if len(batch) == 1:
        item = batch[0]
        return _APPEND_ONE, (
            stream_id, low, high, item.event_id, item.event_type, item.schema_version,
            item.data, item.metadata,
        )
    return _APPEND_BATCH, (
        stream_id, low, high,
        [item.event_id for item in batch],
        [item.event_type for item in batch],
        [item.schema_version for item in batch],
        [item.data for item in batch],
        [item.metadata for item in batch],
    )


def _version_bounds(expected: ExpectedVersion) -> tuple[int, int]:
    """The stream versions an append accepts, as the append statement's $2 and $3."""
    if expected is ANY:
        return 0, _INT4_MAX
    if expected is STREAM_EXISTS:
        return 1, _INT4_MAX
    if expected is NO_STREAM:
        return 0, 0
    assert isinstance(expected, int)
    return expected, expected


def _result(stream_id: str, rows: list[asyncpg.Record]) -> AppendResult:
    first, last = rows[0], rows[-1]
    return AppendResult(stream_id, last[0], first[1], last[1], first[2])


async def _apply_changes(conn: asyncpg.Connection, changes: list[LifeChange]) -> None:
    """Record imported deletions and truncations in their streams' lives (in the
    import's transaction)."""
    for change in changes:
        if change.hard is not None:
            await conn.execute(DELETE_LIFE, change.stream_id, change.version, change.hard)
        else:
            await conn.execute(TRUNCATE_LIFE, change.stream_id, change.before)


def _life(code: int | None) -> StreamLife:
    """The stream's deletion as ``life_of`` gives it (its readable_from does not matter
    to an append's checks)."""
    if code is None:
        return LIVE
    if code == TOMBSTONE:
        return StreamLife(hard=True)
    return StreamLife(deleted_version=code)


def _records(rows: list[asyncpg.Record]) -> list[RecordedEvent]:
    # JSON decoding is most of the client's cost of a read (see decode_rows); a row it
    # cannot read comes back marked corrupt, the others as stored.
    data, metadata, corrupt = decode_rows(rows, 7)
    return [
        RecordedEvent(
            row[0], row[1], row[2], row[3], row[4], row[5], row[6], data[index],
            metadata[index], row[9], corrupt[index],
        )
        for index, row in enumerate(rows)
    ]
