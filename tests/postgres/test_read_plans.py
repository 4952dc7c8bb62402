"""The global log's reads walk the (transaction_id, position) index; they never sort.

A read of the log returns ``limit`` events after a position. Planned as an index scan it
costs the batch; planned as a sort it costs the whole rest of the log, every batch (a
1,000,000-event log took seconds per batch of 1,000). With sorting disabled, the planner
still sorts when nothing else can produce the order, so a Sort node in the plan means the
query's ORDER BY does not match the index.
"""

from __future__ import annotations

import asyncpg
import pytest

from eventfold.eventstore.backends.postgres import (
    _HEAD,
    _READ_ALL,
    _READ_ALL_OF_PARTITION,
    _READ_ALL_OF_TYPES,
)

pytestmark = pytest.mark.postgres


async def _plan(conn: asyncpg.Connection, query: str, *args: object) -> str:
    await conn.execute("SET enable_sort = off; SET enable_seqscan = off")
    rows = await conn.fetch(f"EXPLAIN {query}", *args)
    return "\n".join(row[0] for row in rows)


@pytest.mark.parametrize(
    ("query", "args"),
    [
        (_READ_ALL, ("0", 0, 1000)),
        (_READ_ALL_OF_TYPES, ("0", 0, 1000, ["Deposited"])),
        (_READ_ALL_OF_PARTITION, ("0", 0, 1000, None, 4, 1)),
        (_READ_ALL_OF_PARTITION, ("0", 0, 1000, ["Deposited"], 4, 1)),
        (_HEAD, ()),
    ],
    ids=["read_all", "read_all_of_types", "read_all_of_partition", "of_partition_and_types",
         "head"],
)
async def test_log_reads_follow_the_log_order_index(
    raw_conn: asyncpg.Connection, query: str, args: tuple[object, ...]
) -> None:
    plan = await _plan(raw_conn, query, *args)

    assert "eventfold_events_log_order" in plan, plan
    assert "Sort" not in plan, plan
