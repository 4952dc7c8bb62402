"""Only transactions that could write events hold the global log back.

A transaction open in another database of the server can never write to our events table:
readers pass it by, and status output does not name it. One open in our own database still
holds the log, so nothing is ever skipped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from eventfold.eventstore.backends.postgres import PostgresEventStore

from .conftest import Deposited, wait_visible


@asynccontextmanager
async def open_transaction(url: str, application_name: str) -> AsyncIterator[int]:
    """A session of ``url``'s database holding a transaction id until the block ends;
    yields its pid."""
    conn = await asyncpg.connect(url, server_settings={"application_name": application_name})
    try:
        transaction = conn.transaction()
        await transaction.start()
        await conn.execute("SELECT pg_current_xact_id()")
        yield conn.get_server_pid()
        await transaction.rollback()
    finally:
        await conn.close()


async def test_a_transaction_in_another_database_does_not_hold_the_log(
    pg_store: PostgresEventStore, pg_server_url: str
) -> None:
    assert pg_server_url.rsplit("/", 1)[-1] != pg_store.url.rsplit("/", 1)[-1]
    async with open_transaction(pg_server_url, "elsewhere-report") as pid:
        appended = await pg_store.append("S-1", [Deposited(amount=1)])
        # Committed in our database after the other one began: readers see it all the same.
        await wait_visible(pg_store, appended.global_position, timeout=30)
        [event] = await pg_store.read_all()
        assert event.global_position == appended.global_position
        assert await pg_store.head() == appended.global_position
        # Nor is it named as holding readers back.
        assert pid not in {holder.pid for holder in await pg_store.horizon_holders()}


async def test_a_transaction_in_our_database_still_holds_the_log(
    pg_store: PostgresEventStore, pg_clean_url: str, pg_server_url: str
) -> None:
    before = await pg_store.append("S-1", [Deposited(amount=1)])
    await wait_visible(pg_store, before.global_position)
    async with open_transaction(pg_server_url, "elsewhere-report"):
        async with open_transaction(pg_clean_url, "forgotten-batch-job") as ours:
            after = await pg_store.append("S-1", [Deposited(amount=2)])
            # Nothing after the open transaction began is read while it runs.
            assert [e.stream_version for e in await pg_store.read_all()] == [1]
            assert await pg_store.head() == before.global_position
            assert not await pg_store.wait_for_events(before.global_position, timeout=0.3)
            holders = await pg_store.horizon_holders()
            assert ours in {holder.pid for holder in holders}
        # Ours ended: the log flows again though the other database's transaction runs on.
        await wait_visible(pg_store, after.global_position, timeout=30)
        assert [e.stream_version for e in await pg_store.read_all()] == [1, 2]
