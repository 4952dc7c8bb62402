"""A copy of a store keeps its deleted and truncated streams so, also between two
PostgreSQL servers (where events stream as a binary COPY, never decoded)."""

from __future__ import annotations

import pytest

from eventfold.eventstore import EventRegistry, StreamTombstoned
from eventfold.eventstore.backends.postgres import PostgresEventStore
from eventfold.eventstore.transfer import copy_store

from .conftest import Deposited, wait_visible

pytestmark = pytest.mark.postgres


async def test_a_postgres_copy_keeps_deletions_tombstones_and_truncations(
    pg_clean_url: str, pg_fresh_url: str
) -> None:
    registry = EventRegistry([Deposited])
    async with await PostgresEventStore.open(pg_clean_url, registry) as source:
        await source.append("Acct-1", [Deposited(amount=1), Deposited(amount=2)])
        await source.delete_stream("Acct-1", hard=True)
        await source.append("Acct-2", [Deposited(amount=n) for n in range(3)])
        await source.truncate_stream("Acct-2", 3)
        await source.append("Acct-3", [Deposited(amount=1)])
        last = await source.delete_stream("Acct-3")
        await wait_visible(source, last.global_position)
        async with await PostgresEventStore.open(pg_fresh_url, registry) as target:
            result = await copy_store(source, target, batch_size=4)
            assert result.written == 9
            assert await target.read_stream("Acct-1") == []
            with pytest.raises(StreamTombstoned):
                await target.append("Acct-1", [Deposited(amount=3)])
            assert [r.stream_version for r in await target.read_stream("Acct-2")] == [3, 4]
            assert await target.read_stream("Acct-3") == []
            assert (await target.scavenge(dry_run=True)).streams == {
                "Acct-1": 2,
                "Acct-2": 2,
                "Acct-3": 1,
            }
