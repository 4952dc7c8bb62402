"""The fast path of ``copy_store`` between two PostgreSQL stores: rows move and get
checked on the servers, never decoded in Python.

Each page of the source's log (``batch_size`` events in log order) streams as a binary
``COPY ... TO STDOUT`` of the import columns straight into a ``COPY ... FROM STDIN`` on the
target, one transaction per page (``PostgresEventStore.import_copied``), so the target
gives the events its own positions and transaction ids in the source's order.
``log_digest`` checks a whole log in pages of equal row counts, each page an MD5 the server
computes over the same columns in log order (jsonb's text is canonical), so two logs
holding the same events have the same digest whatever their positions.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass

import asyncpg

from eventfold.eventstore.backends.postgres import _IMPORT_COLUMNS, PostgresEventStore
from eventfold.eventstore.horizon import VISIBLE_BELOW
from eventfold.eventstore.records import START, GlobalPosition

_COLUMNS = ", ".join(_IMPORT_COLUMNS)

# The last event of the next page, and the page's size: up to ``$3`` events after
# ``$1, $2`` in log order, those readers can see (below the horizon, where no transaction
# can add any more).
_PAGE_END = f"""
SELECT transaction_id::text::bigint, position, count(*) OVER () FROM (
    SELECT transaction_id, position FROM eventfold_events
    WHERE (transaction_id, position) > ($1::text::xid8, $2)
      AND transaction_id < {VISIBLE_BELOW}
    ORDER BY transaction_id, position LIMIT $3
) AS page
ORDER BY transaction_id DESC, position DESC LIMIT 1
"""

# The count and MD5 of the events after ``$1, $2`` up to ``$3, $4`` in log order, over what
# a copy keeps (not positions or transaction ids), times as epoch seconds, which no session
# setting changes; tabs part the columns (jsonb's text holds none, escaping them). The
# sorted subquery feeds the aggregate in its order (cheaper than an ORDER BY in it).
_PAGE_DIGEST = r"""
SELECT count(*), md5(string_agg(concat_ws(E'\t', event_id, stream_id, stream_version,
                                          event_type, schema_version, data, metadata,
                                          extract(epoch FROM recorded_at)), E'\n'))
FROM (
    SELECT * FROM eventfold_events
    WHERE (transaction_id, position) > ($1::text::xid8, $2)
      AND (transaction_id, position) <= ($3::text::xid8, $4)
    ORDER BY transaction_id, position
) AS page
"""


def _page_query(after: GlobalPosition, last: GlobalPosition) -> str:
    """The query whose ``COPY`` sends the events after ``after`` up to ``last`` (both
    visible: nothing can join them) in log order; COPY takes no parameters, the bounds
    are integers."""
    return (
        f"SELECT {_COLUMNS} FROM eventfold_events "
        f"WHERE (transaction_id, position) > ('{int(after.transaction_id)}'::xid8, "
        f"{int(after.position)}) "
        f"AND (transaction_id, position) <= ('{int(last.transaction_id)}'::xid8, "
        f"{int(last.position)}) "
        "ORDER BY transaction_id, position"
    )


async def _streamed(conn: asyncpg.Connection, query: str) -> AsyncGenerator[bytes, None]:
    """The binary ``COPY`` of a query's rows as it comes; the COPY's error, if any, is
    raised at its end."""
    chunks: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def put(chunk: bytes) -> None:
        chunks.put_nowait(chunk)

    async def produce() -> None:
        try:
            await conn.copy_from_query(query, output=put, format="binary")
        finally:
            chunks.put_nowait(None)

    producer = asyncio.create_task(produce())
    try:
        while (chunk := await chunks.get()) is not None:
            yield chunk
        await producer
    finally:
        if not producer.done():
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await producer


async def copy_log(
    source: PostgresEventStore,
    target: PostgresEventStore,
    *,
    after: GlobalPosition,
    batch_size: int,
    on_page: Callable[[int, GlobalPosition], None],
) -> int:
    """Copy the source's events after ``after`` into the target, page by page, each page
    in a transaction of its own; ``on_page(events written, last source position)`` after
    each. Returns the events written."""
    written = 0
    # The next page's end is looked up on a second connection while a page streams.
    async with source.pool.acquire() as conn, source.pool.acquire() as ends:
        page = await _page_end(ends, after, batch_size)
        while page:
            last, _ = page
            following = asyncio.ensure_future(_page_end(ends, last, batch_size))
            try:
                copied = _streamed(conn, _page_query(after, last))
                try:
                    written += await target.import_copied(copied)
                finally:
                    await copied.aclose()  # a failed page's COPY ends before ``conn`` goes
                on_page(written, last)
            except BaseException:
                following.cancel()
                with contextlib.suppress(BaseException):
                    await following
                raise
            after = last
            page = await following
    return written


async def _page_end(
    conn: asyncpg.Connection, after: GlobalPosition, batch_size: int
) -> tuple[GlobalPosition, int] | None:
    """The last event of the page after ``after`` and the page's size (None when no
    event follows ``after``)."""
    row = await conn.fetchrow(_PAGE_END, str(after.transaction_id), after.position, batch_size)
    return None if row is None else (GlobalPosition(row[0], row[1]), row[2])


@dataclass(frozen=True, slots=True)
class ServerDigest:
    """A log's count and checksum, as ``log_digest`` computes them."""

    count: int
    checksum: str


class Growing:
    """Tells ``log_digest`` following a log that a copy still writes when it grew and
    when the copy ended."""

    def __init__(self) -> None:
        self.ended = False
        self.grown = asyncio.Event()

    def grew(self) -> None:
        self.grown.set()

    def end(self) -> None:
        self.ended = True
        self.grown.set()


async def log_digest(
    store: PostgresEventStore,
    batch_size: int,
    on_page: Callable[[int], None],
    *,
    growing: Growing | None = None,
) -> ServerDigest:
    """The count and checksum of a store's whole visible log, from an MD5 per page of
    ``batch_size`` events the server computes; ``on_page(events so far)`` after each.

    With ``growing``, the log is followed as a copy writes it: a page shorter than
    ``batch_size`` waits for more until the copy ended (pages then match those of the
    source's digest)."""
    digest = hashlib.sha256()
    count = 0
    after = START
    async with store.pool.acquire() as conn:
        while True:
            ended = growing is None or growing.ended
            if growing is not None:
                growing.grown.clear()
            page = await _page_end(conn, after, batch_size)
            if not ended and (page is None or page[1] < batch_size):
                assert growing is not None
                await growing.grown.wait()
                continue
            if page is None:
                return ServerDigest(count, digest.hexdigest())
            last, _ = page
            row = await conn.fetchrow(
                _PAGE_DIGEST, str(after.transaction_id), after.position,
                str(last.transaction_id), last.position,
            )
            assert row is not None
            count += row[0]
            digest.update(bytes.fromhex(row[1]))
            after = last
            on_page(count)
