"""The PostgreSQL event store: asyncpg, prepared statements, one round trip per append.

Why it is shaped so (docs/operations.md has the long version):

- An append is one call of ``eventfold_append`` (created by migration 0001): it checks
  idempotency, checks the expected version by writing the stream's row (the row lock
  serializes writers of one stream, nobody else) and inserts the batch, atomically, in the
  one statement's own transaction. No BEGIN/COMMIT round trips, no table lock.
- Every event records its writer's ``pg_current_xact_id()``. The global log is read in
  ``(transaction_id, position)`` order and only below ``pg_snapshot_xmin``: a transaction
  that took a lower position but commits later is still running below that line, so a
  reader waits for it instead of passing over it.
- ``wait_for_events`` LISTENs; appends NOTIFY after commit from a separate connection,
  coalesced, never inside the append's transaction (a NOTIFY there takes a cluster-wide lock
  at commit that serializes every notifying writer).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Collection, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Self

import asyncpg

from eventstore.backends.postgres_driver import (
    asyncpg_dsn,
    connect,
    is_unavailable,
    session_settings,
    unavailable,
)
from eventstore.connect import masked
from eventstore.encoding import EncodedEvent, check_expected_version, check_stream_id, encode_batch
from eventstore.errors import (
    ConcurrencyError,
    DuplicateEventId,
    InvalidAppend,
    SchemaNotMigrated,
    StoreUnavailable,
)
from eventstore.event import Event
from eventstore.horizon import HorizonHolder, check_horizon, horizon_holders
from eventstore.instrumentation import traced_append
from eventstore.migrate import SCHEMA_HEAD, VERSION_TABLE
from eventstore.records import (
    ANY,
    NO_STREAM,
    START,
    STREAM_EXISTS,
    AppendResult,
    ExpectedVersion,
    GlobalPosition,
    NewEvent,
    RecordedEvent,
    StreamInfo,
    category_of,
)
from eventstore.registry import EventRegistry

NOTIFY_CHANNEL = "eventfold_events"
"""The LISTEN/NOTIFY channel appends announce themselves on."""
_NOTIFY_INTERVAL = 0.005
"""Least seconds between two notifications of one store."""

_INT4_MAX = 2**31 - 1
_EVENT_ID_CONSTRAINT = "eventfold_events_event_id_key"

# p_expected of eventfold_append: >= 0 exact version, -1 any, -2 stream exists.
_EXPECTED_CODE = {ANY: -1, NO_STREAM: 0, STREAM_EXISTS: -2}

_APPEND = (
    "SELECT o_outcome, o_version, o_first_position, o_last_position, o_transaction_id "
    "FROM eventfold_append($1, $2, $3, $4, $5, $6, $7, $8)"
)

# JSON leaves as text and is parsed once in Python; xid8 leaves as bigint (no asyncpg codec).
_COLUMNS = (
    "event_id, stream_id, stream_version, transaction_id::text::bigint, position, "
    "event_type, schema_version, data::text, metadata::text, recorded_at"
)

_READ_FORWARDS = f"""
SELECT {_COLUMNS} FROM eventfold_events
WHERE stream_id = $1 AND stream_version >= $2 AND stream_version <= $3
  AND ($4::timestamptz IS NULL OR recorded_at <= $4)
ORDER BY stream_version LIMIT $5
"""

_READ_BACKWARDS = f"""
SELECT {_COLUMNS} FROM eventfold_events
WHERE stream_id = $1 AND stream_version <= $2 AND stream_version >= $3
  AND ($4::timestamptz IS NULL OR recorded_at <= $4)
ORDER BY stream_version DESC LIMIT $5
"""

# The global log: strictly after the reader's position, and only below the oldest running
# transaction, so that an event committing later with a lower position is not passed over.
# Both conditions are index conditions on (transaction_id, position).
_READ_ALL = f"""
SELECT {_COLUMNS} FROM eventfold_events
WHERE (transaction_id, position) > ($1::text::xid8, $2)
  AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY transaction_id, position LIMIT $3
"""

_READ_ALL_OF_TYPES = f"""
SELECT {_COLUMNS} FROM eventfold_events
WHERE (transaction_id, position) > ($1::text::xid8, $2)
  AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
  AND event_type = ANY($4::text[])
ORDER BY transaction_id, position LIMIT $3
"""

_HEAD = """
SELECT transaction_id::text::bigint, position FROM eventfold_events
WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY transaction_id DESC, position DESC LIMIT 1
"""

_STORED_OF_BATCH = """
SELECT event_id, stream_id, stream_version, event_type, position,
       transaction_id::text::bigint AS transaction_id
FROM eventfold_events WHERE event_id = ANY($1::uuid[])
"""

_LIST_STREAMS = """
SELECT stream_id, version, updated_at FROM eventfold_streams
WHERE ($1::text IS NULL OR category = $1) AND ($2::text IS NULL OR stream_id > $2)
ORDER BY stream_id LIMIT $3
"""


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool reset that sends nothing: the store never changes session state on pooled
    connections, and asyncpg's default reset would cost a round trip per append."""


class PostgresEventStore:
    """The event store on PostgreSQL. Open it with ``await PostgresEventStore.open(url, registry)``
    (or ``eventstore.connect(url, registry)``)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        registry: EventRegistry,
        url: str,
        *,
        poll_interval: float = 0.5,
    ) -> None:
        self.registry = registry
        self.url = masked(url)
        self._raw_url = url
        self._pool = pool
        self._poll_interval = poll_interval
        self._waiters: set[asyncio.Event] = set()
        self._listener: asyncpg.Connection | None = None
        self._listener_lock = asyncio.Lock()
        self._notifier: asyncpg.Connection | None = None
        self._notify_task: asyncio.Task[None] | None = None
        self._notify_pending = False
        self._closed = False

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
    ) -> Self:
        """Connect a pool and check the database is fit to serve.

        ``idle_in_transaction_timeout`` (seconds, 0 = off) ends sessions that sit in an open
        transaction, which would hold every reader of the global log back.
        ``poll_interval`` bounds how long ``wait_for_events`` waits between checks when no
        notification comes. Raises ``StoreUnavailable`` when the server cannot be reached,
        ``SchemaNotMigrated`` when the schema is not at ``SCHEMA_HEAD`` and
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
        store = cls(pool, registry, url, poll_interval=poll_interval)
        try:
            if check_schema:
                await store._check_fit()
        except BaseException:
            await pool.close()
            raise
        return store

    @property
    def pool(self) -> asyncpg.Pool:
        """The store's asyncpg pool, for components that share its database."""
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
        code = expected if isinstance(expected, int) else _EXPECTED_CODE[expected]
        args = (
            stream_id,
            category_of(stream_id),
            code,
            [item.event_id for item in batch],
            [item.event_type for item in batch],
            [item.schema_version for item in batch],
            [item.data for item in batch],
            [item.metadata for item in batch],
        )
        for _ in range(3):
            try:
                row = await self._pool.fetchrow(_APPEND, *args)
            except asyncpg.UniqueViolationError as exc:
                # An event id of the batch is stored: a retry racing its original, or a clash.
                if exc.constraint_name != _EVENT_ID_CONSTRAINT:
                    raise
                outcome = "stored"
            except asyncpg.DataError as exc:
                raise InvalidAppend(
                    f"the database rejected the batch for stream {stream_id!r}: {exc}; "
                    "nothing was written"
                ) from exc
            except Exception as exc:
                if is_unavailable(exc):
                    raise unavailable(self.url, exc) from exc
                raise
            else:
                outcome = row[0]
            if outcome == "appended":
                self._announce()
                return AppendResult(stream_id, row[1], row[2], row[3], row[4])
            if outcome == "conflict":
                raise ConcurrencyError(stream_id, expected, row[1])
            replay = await self._stored_result(stream_id, batch)
            if replay is not None:
                return replay
            # None of the ids is stored after all (the original rolled back): try again.
        raise StoreUnavailable(self.url, f"append to {stream_id!r} did not settle in 3 tries")

    async def _stored_result(
        self, stream_id: str, batch: list[EncodedEvent]
    ) -> AppendResult | None:
        """The original result when the whole batch is stored as it was sent; None when
        none of it is; ``DuplicateEventId`` otherwise (the memory backend's rule)."""
        rows = await self._fetch(_STORED_OF_BATCH, [item.event_id for item in batch])
        by_id = {row["event_id"]: row for row in rows}
        stored = [by_id.get(item.event_id) for item in batch]
        if all(row is None for row in stored):
            return None
        first = stored[0]
        if first is None or any(
            row is None
            or row["stream_id"] != stream_id
            or row["stream_version"] != first["stream_version"] + index
            or row["event_type"] != item.event_type
            for index, (row, item) in enumerate(zip(stored, batch, strict=True))
        ):
            clash = next(row for row in stored if row is not None)
            raise DuplicateEventId(stream_id, clash["event_id"])
        last = stored[-1]
        assert last is not None
        return AppendResult(
            stream_id, last["stream_version"], first["position"], last["position"],
            first["transaction_id"],
        )

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
        check_stream_id(stream_id)
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0 or None, got {limit}")
        if backwards:
            high = _int4(from_version, _INT4_MAX)
            low = _int4(to_version, 0)
            rows = await self._fetch(_READ_BACKWARDS, stream_id, high, low, as_of, limit)
        else:
            low = _int4(from_version, 0)
            high = _int4(to_version, _INT4_MAX)
            rows = await self._fetch(_READ_FORWARDS, stream_id, low, high, as_of, limit)
        return self.registry.upcast_all(_records(rows))

    async def read_all(
        self,
        *,
        after: GlobalPosition = START,
        limit: int = 1000,
        event_types: Collection[str] | None = None,
    ) -> list[RecordedEvent]:
        """The next batch of the global log after ``after`` (see ``EventStore.read_all``)."""
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        transaction_id, position = after
        if event_types is None:
            rows = await self._fetch(_READ_ALL, str(transaction_id), position, limit)
        else:
            rows = await self._fetch(
                _READ_ALL_OF_TYPES, str(transaction_id), position, limit,
                list(self.registry.stored_types(event_types)),
            )
        return self.registry.upcast_all(_records(rows))

    async def head(self) -> GlobalPosition:
        """The last position readers can see (``START`` when none)."""
        row = await self._fetchrow(_HEAD)
        return START if row is None else GlobalPosition(row[0], row[1])

    async def stream_version(self, stream_id: str) -> int:
        """The stream's version (0 when it has no events)."""
        check_stream_id(stream_id)
        row = await self._fetchrow(
            "SELECT version FROM eventfold_streams WHERE stream_id = $1", stream_id
        )
        return 0 if row is None else int(row[0])

    async def list_streams(
        self, *, category: str | None = None, after: str | None = None, limit: int = 100
    ) -> list[StreamInfo]:
        """Streams ordered by id (byte order), optionally of one category, after an id."""
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        rows = await self._fetch(_LIST_STREAMS, category, after, limit)
        return [StreamInfo(row[0], row[1], row[2]) for row in rows]

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

    async def _fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        try:
            rows: list[asyncpg.Record] = await self._pool.fetch(query, *args)
        except Exception as exc:
            if is_unavailable(exc):
                raise unavailable(self.url, exc) from exc
            raise
        return rows

    async def _fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        try:
            row: asyncpg.Record | None = await self._pool.fetchrow(query, *args)
        except Exception as exc:
            if is_unavailable(exc):
                raise unavailable(self.url, exc) from exc
            raise
        return row

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
        if self._notify_task is not None:
            with contextlib.suppress(Exception):
                await self._notify_task
        for conn in (self._listener, self._notifier):
            if conn is not None and not conn.is_closed():
                with contextlib.suppress(Exception):
                    await conn.close(timeout=5)
        self._listener = self._notifier = None
        self._wake_waiters()
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


def _int4(value: int | None, default: int) -> int:
    """A version bound as the int4 column takes it (out-of-range bounds are clamped)."""
    if value is None:
        return default
    return max(-_INT4_MAX - 1, min(_INT4_MAX, value))


def _records(rows: list[asyncpg.Record]) -> list[RecordedEvent]:
    loads = json.loads
    return [
        RecordedEvent(
            row[0], row[1], row[2], row[3], row[4], row[5], row[6],
            loads(row[7]), loads(row[8]), row[9],
        )
        for row in rows
    ]
