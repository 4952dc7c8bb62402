"""committed_head sees a commit that an older open transaction still hides from readers."""

from __future__ import annotations

import asyncio

import asyncpg

from eventfold.eventstore import EventRegistry, connect
from eventfold.eventstore.testing import ItemAdded, conformance_registry


async def test_an_open_transaction_hides_a_commit_from_head_not_from_committed_head(
    pg_clean_url: str,
) -> None:
    registry: EventRegistry = conformance_registry()
    async with connect(pg_clean_url, registry) as store:
        before = await store.append("Cart-1", [ItemAdded(sku="a")])
        holder = await asyncpg.connect(pg_clean_url)
        try:
            # A transaction with an id, older than the next append, holds the horizon.
            transaction = holder.transaction()
            await transaction.start()
            await holder.execute("SELECT pg_current_xact_id()")
            after = await store.append("Cart-1", [ItemAdded(sku="b")])
            assert await store.committed_head() == after.global_position
            assert await store.head() < after.global_position
            assert await store.head() <= before.global_position
            await transaction.rollback()
        finally:
            await holder.close()
        async with asyncio.timeout(30):  # other sessions of a shared server may hold it too
            while await store.head() < after.global_position:
                await store.wait_for_events(await store.head(), 0.5)
