"""The global log that W5/L4 read and W6/L5 fold: loading it fast, outside the clock.

``size`` events over ``size / 100`` streams (1,000,000 over 10,000 by default), interleaved
the way a busy system writes them: event ``n`` belongs to stream ``n % streams`` at version
``n // streams + 1``, so every batch of 1,000 in log order touches 1,000 different streams
(the hard case for an upserting projection). Every event carries the benchmark payload.

Loading is not what W5 and W6 measure, so rows are generated inside the database in one
statement (``generate_series`` on PostgreSQL, a recursive CTE on SQLite) rather than sent
through any append path, and the table is then vacuumed and analyzed so that the timed
read neither sets hint bits nor races autovacuum. Event ids are UUIDv7-shaped and grow with
the position, as real ones do.
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime

import asyncpg
from sqlalchemy.engine import make_url

from benchmarks.database import BASELINE_TABLE, asyncpg_dsn
from benchmarks.payload import EVENT_TYPE, PAYLOAD_JSON
from benchmarks.workload import BenchmarkError

EVENTS_PER_STREAM = 100
CATEGORY = "Reading"


def stream_count(size: int) -> int:
    """How many streams a log of ``size`` events spreads over (100 events each)."""
    return max(1, -(-size // EVENTS_PER_STREAM))


# The streams table is the append path's business and may change shape; the loader fills
# it only when it has the columns it knows, and says so when it does not.
_KNOWN_STREAM_COLUMNS = {"stream_id", "category", "version", "updated_at"}

_PG_EVENTS = """
INSERT INTO eventfold_events
    (event_id, stream_id, stream_version, event_type, schema_version, data, metadata)
SELECT ('00000000-0000-7000-8000-' || lpad(to_hex(n), 12, '0'))::uuid,
       $5 || '-' || (n % $2), (n / $2)::int + 1, $3, 1, $4::jsonb, '{}'::jsonb
FROM generate_series(0, $1::bigint - 1) AS n
ORDER BY n
"""

_PG_STREAMS = """
INSERT INTO eventfold_streams (stream_id, category, version)
SELECT stream_id, $1, max(stream_version) FROM eventfold_events GROUP BY stream_id
"""

_PG_BASELINE = f"""
INSERT INTO {BASELINE_TABLE} (stream_id, version, event_type, data, metadata)
SELECT $5 || '-' || (n % $2), (n / $2)::int + 1, $3, $4::jsonb, '{{}}'::jsonb
FROM generate_series(0, $1::bigint - 1) AS n
ORDER BY n
"""


async def load_postgres_store(url: str, size: int) -> None:
    """Fill the (empty) eventfold tables at ``url`` with the log, in one transaction."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        async with conn.transaction():
            await conn.execute(
                _PG_EVENTS, size, stream_count(size), EVENT_TYPE, PAYLOAD_JSON, CATEGORY
            )
            columns = {
                row[0] for row in await conn.fetch(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = current_schema() AND table_name = 'eventfold_streams'"
                )
            }
            if columns == _KNOWN_STREAM_COLUMNS:
                await conn.execute(_PG_STREAMS, CATEGORY)
            elif columns:
                raise BenchmarkError(
                    "eventfold_streams has columns "
                    f"{', '.join(sorted(columns))}, which benchmarks/global_log.py does not "
                    "know how to fill: teach its loader the new shape"
                )
        await conn.execute("VACUUM ANALYZE eventfold_events")
    finally:
        await conn.close()


async def load_postgres_baseline(dsn: str, size: int) -> None:
    """Fill the (empty) baselines' table with the same log."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            _PG_BASELINE, size, stream_count(size), EVENT_TYPE, PAYLOAD_JSON, CATEGORY
        )
        await conn.execute(f"VACUUM ANALYZE {BASELINE_TABLE}")
    finally:
        await conn.close()


# SQLite's store numbers a batch's transaction by its first position; here every event is
# its own batch. Ids and times are stored as the SQLite backend writes them (32 hex digits,
# UTC text in SQLAlchemy's format).
_SQLITE_EVENTS = """
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < :size - 1)
INSERT INTO eventfold_events
    (position, transaction_id, event_id, stream_id, stream_version, event_type,
     schema_version, data, metadata, recorded_at)
SELECT i + 1, i + 1, '0000000000007000800' || printf('%013x', i),
       :category || '-' || (i % :streams), i / :streams + 1, :type, 1, :data, '{}', :now
FROM n
"""

_SQLITE_STREAMS = """
INSERT INTO eventfold_streams (stream_id, category, version, updated_at)
SELECT stream_id, :category, max(stream_version), :now FROM eventfold_events GROUP BY stream_id
"""


def _load_sqlite(path: str, size: int) -> None:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute(_SQLITE_EVENTS, {
            "size": size, "streams": stream_count(size), "category": CATEGORY,
            "type": EVENT_TYPE, "data": PAYLOAD_JSON, "now": now,
        })
        columns = {row[1] for row in db.execute("PRAGMA table_info(eventfold_streams)")}
        if columns == _KNOWN_STREAM_COLUMNS:
            db.execute(_SQLITE_STREAMS, {"category": CATEGORY, "now": now})
        elif columns:
            raise BenchmarkError(
                f"eventfold_streams has columns {', '.join(sorted(columns))}, which "
                "benchmarks/global_log.py does not know how to fill: teach its loader the "
                "new shape"
            )
        db.execute("COMMIT")
        db.execute("ANALYZE")
    finally:
        db.close()


async def load_sqlite_store(url: str, size: int) -> None:
    """Fill the (empty, migrated) SQLite store file at ``url`` with the log."""
    path = make_url(url).database
    if not path:
        raise BenchmarkError(f"{url!r} names no SQLite file: use sqlite:///path.db")
    await asyncio.to_thread(_load_sqlite, path, size)


async def load_store(url: str, size: int) -> None:
    """Fill the eventfold store at ``url`` (PostgreSQL or a SQLite file) with the log."""
    if url.startswith("sqlite"):
        await load_sqlite_store(url, size)
    else:
        await load_postgres_store(url, size)
