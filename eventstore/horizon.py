"""The transaction horizon of the PostgreSQL global log: checking it, repairing it, and
naming the sessions that hold it back.

Readers of the global log read only events whose writer's transaction id (xid8) lies below
``pg_snapshot_xmin(pg_current_snapshot())``. Two things can go wrong (docs/operations.md):

1. After a logical restore into another cluster (pg_dump/pg_restore, logical replication)
   stored ids can lie beyond the new cluster's counter: that history would read as absent
   and new events would sort before it. ``check_horizon`` refuses such a store and
   ``repair_horizon`` renumbers the stored ids, order-preservingly, below the horizon.
2. A long open transaction holds every reader back: ``horizon_holders`` names it.

The horizon is not quite ``pg_snapshot_xmin``: a transaction positively known to run in
another database of the server cannot write to our events table, so it holds nothing back
(``VISIBLE_BELOW``).
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from eventfold.eventstore.backends.postgres_driver import (
    APPLICATION_NAME,
    connect,
    is_unavailable,
    unavailable,
)
from eventfold.eventstore.errors import TransactionHorizonError
from eventfold.eventstore.records import HorizonHolder
from eventfold.eventstore.urls import masked

# The line below which the global log is read: every transaction below it that could have
# written an event has ended, and its events are visible to the statement.
#
# pg_snapshot_xmin is the oldest transaction running anywhere in the server, and a
# transaction that stays open in another database (another application of a shared
# server) would hold our readers back for as long as it runs, though it can never write to
# our tables. So the line is the snapshot's xmax, or the oldest transaction of the
# snapshot's running list (xip) that is NOT positively known to belong to another
# database, if that is lower. Positively known: a backend connected to another database
# whose backend_xid is that id (a backend's database never changes), or a prepared
# transaction of another database. Everything else holds the line as xmin did: our own
# database's sessions, sessions with no database (autovacuum, walsenders), prepared
# transactions of ours, and any id not found at all. The race that matters: the
# activity list is read after the statement's snapshot, so a transaction that ended
# meanwhile is simply not found (and holds, harmlessly: it has ended); one that started
# meanwhile is not in the running list, or lies above xmax. NOT IN must not meet a NULL
# (it would drop every id), hence the IS NOT NULLs. The activity list is read only when
# something is running (a hashed subplan runs on its first probe).
VISIBLE_BELOW = """(
    SELECT least(pg_snapshot_xmax(s.snapshot), (
        SELECT min(x.id) FROM pg_snapshot_xip(s.snapshot) AS x(id)
        WHERE x.id::xid NOT IN (
            SELECT a.backend_xid FROM pg_stat_get_activity(NULL) AS a
            WHERE a.backend_xid IS NOT NULL AND a.datid <> (
                SELECT oid FROM pg_database WHERE datname = current_database())
            UNION ALL
            SELECT p.transaction FROM pg_prepared_xact() AS p
            WHERE p.transaction IS NOT NULL AND p.dbid <> (
                SELECT oid FROM pg_database WHERE datname = current_database())
        )))
    FROM pg_current_snapshot() AS s(snapshot)
)"""

# The largest stored id and the server's next id. The index on (transaction_id, position)
# answers the first from its end; xid8 travels as text because asyncpg has no codec for it.
_HORIZON = """
SELECT (SELECT transaction_id FROM eventfold_events
        ORDER BY transaction_id DESC LIMIT 1)::text::bigint AS max_stored,
       pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS server_xmax
"""

# Renumbers every stored transaction id to its rank among the distinct ids, plus 2 so the
# smallest is 3 (PostgreSQL's first normal xid). Order is kept: (transaction_id, position)
# sorts the log exactly as before. Rows whose id does not change are not touched.
_REMAP = """
UPDATE eventfold_events AS e
SET transaction_id = (m.new_id + 2)::text::xid8
FROM (
    SELECT d.old_id, dense_rank() OVER (ORDER BY d.old_id) AS new_id
    FROM (SELECT DISTINCT transaction_id AS old_id FROM eventfold_events) AS d
) AS m
WHERE e.transaction_id = m.old_id AND e.transaction_id <> (m.new_id + 2)::text::xid8
"""

# Advances the server's transaction counter by $n transactions: each loop turn commits a
# transaction that was given an id. DO with COMMIT runs outside a transaction block only.
_CONSUME_XIDS = """
DO $$
BEGIN
    FOR i IN 1..{count} LOOP
        PERFORM pg_current_xact_id();
        COMMIT;
    END LOOP;
END
$$
"""


@dataclass(frozen=True, slots=True)
class HorizonRepair:
    """What ``repair_horizon`` did."""

    events_renumbered: int
    """Event rows whose transaction id changed (0: the store needed no repair)."""
    transactions: int
    """Distinct transaction ids in the events table."""
    transaction_ids_consumed: int
    """Transactions burnt to move the server's counter past the renumbered ids."""

    @property
    def repaired(self) -> bool:
        """Whether anything was changed."""
        return self.events_renumbered > 0 or self.transaction_ids_consumed > 0


async def check_horizon(conn: asyncpg.Connection, url: str) -> None:
    """Raise ``TransactionHorizonError`` when a stored transaction id is not below the
    server's next id (``url`` is only used in the message, already masked)."""
    row = await conn.fetchrow(_HORIZON)
    max_stored, server_xmax = row["max_stored"], row["server_xmax"]
    if max_stored is not None and max_stored >= server_xmax:
        raise TransactionHorizonError(url, max_stored, server_xmax)


async def repair_horizon(url: str) -> HorizonRepair:
    """Renumber stored transaction ids below the server's horizon, keeping the log's order.

    Run it when ``TransactionHorizonError`` says so, with no eventfold process writing
    (the store refuses to open in that state anyway). It locks the events table for the
    renumbering. Checkpoints of projections taken before the repair refer to the old ids:
    rebuild or reset those projections afterwards (docs/operations.md). Running it on a
    healthy store changes nothing.
    """
    shown = masked(url)
    conn = await connect(url, server_settings={"application_name": f"{APPLICATION_NAME}-repair"})
    try:
        return await _repair(conn)
    except Exception as exc:
        if is_unavailable(exc):
            raise unavailable(shown, exc) from exc
        raise
    finally:
        await conn.close()


async def _repair(conn: asyncpg.Connection) -> HorizonRepair:
    consumed = 0
    while True:
        row = await conn.fetchrow(_HORIZON)
        if row["max_stored"] is None or row["max_stored"] < row["server_xmax"]:
            return HorizonRepair(0, 0, consumed)
        transactions: int = await conn.fetchval(
            "SELECT count(DISTINCT transaction_id) FROM eventfold_events"
        )
        # The renumbered ids run from 3 to transactions + 2; every id the server hands out
        # from now on must be larger, so move its counter past them first if needed.
        consumed += await advance_transaction_counter(conn, transactions + 2)
        async with conn.transaction():
            # No reader may see the ids half renumbered, no writer may add one meanwhile.
            await conn.execute("LOCK TABLE eventfold_events IN ACCESS EXCLUSIVE MODE")
            locked: int = await conn.fetchval(
                "SELECT count(DISTINCT transaction_id) FROM eventfold_events"
            )
            if locked != transactions:
                continue  # someone wrote meanwhile: measure again
            status = await conn.execute(_REMAP)
        return HorizonRepair(int(status.split()[-1]), transactions, consumed)


async def advance_transaction_counter(conn: asyncpg.Connection, beyond: int) -> int:
    """Commit empty transactions until the server's next transaction id exceeds ``beyond``;
    return how many it took. ``conn`` must not be in a transaction."""
    consumed = 0
    while True:
        next_id: int = await conn.fetchval(
            "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint"
        )
        missing = beyond + 1 - next_id
        if missing <= 0:
            return consumed
        await conn.execute(_CONSUME_XIDS.format(count=int(missing)))
        consumed += missing


async def horizon_holders(conn: asyncpg.Connection) -> list[HorizonHolder]:
    """Sessions with an open write transaction that holds readers back, oldest first.

    The oldest of them sets the horizon: readers of the global log see nothing written
    after it began until it ends. Name it in status output when readers lag. Sessions of
    other databases hold nothing back (``VISIBLE_BELOW``) and are left out; sessions with
    no database (autovacuum, walsenders) are not.
    """
    rows = await conn.fetch(
        """
        SELECT pid, coalesce(application_name, '') AS application_name,
               coalesce(state, '') AS state,
               now() - coalesce(xact_start, now()) AS age, coalesce(query, '') AS query
        FROM pg_stat_activity
        WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()
          AND (datname IS NULL OR datname = current_database())
        ORDER BY age(backend_xid) DESC
        """
    )
    return [
        HorizonHolder(r["pid"], r["application_name"], r["state"], r["age"], r["query"])
        for r in rows
    ]
