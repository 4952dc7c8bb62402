"""A batch that fails half-way leaves nothing behind."""

from __future__ import annotations

import pytest

from eventfold.eventstore import DuplicateEventId, InvalidAppend, NewEvent
from eventfold.eventstore.backends.postgres import PostgresEventStore

from .conftest import Deposited, Noted, wait_visible

pytestmark = pytest.mark.postgres


async def test_a_value_the_database_rejects_mid_batch_writes_nothing(
    pg_store: PostgresEventStore,
) -> None:
    # jsonb refuses a lone surrogate (JSON text may spell one, "\ud800"): the third of
    # five events fails inside the server.
    batch = [NewEvent(Deposited(amount=1)), NewEvent(Deposited(amount=2)),
             NewEvent(Noted(text="fine"), metadata={"note": "half a pair \ud800"}),
             NewEvent(Deposited(amount=4)), NewEvent(Deposited(amount=5))]
    with pytest.raises(InvalidAppend, match="rejected"):
        await pg_store.append("S-1", batch)
    assert await pg_store.read_stream("S-1") == []
    assert await pg_store.list_streams() == []
    assert await pg_store.read_all() == []
    assert (await pg_store.append("S-1", batch[:2] + batch[3:])).version == 4


async def test_a_stored_event_id_mid_batch_writes_nothing(pg_store: PostgresEventStore) -> None:
    elsewhere = NewEvent(Deposited(amount=0))
    stored = await pg_store.append("Other-1", [elsewhere])
    batch = [NewEvent(Deposited(amount=1)), NewEvent(Deposited(amount=2)), elsewhere,
             NewEvent(Deposited(amount=4))]
    for expected in (0, 3):  # whether or not the version matches, the clash is reported
        with pytest.raises(DuplicateEventId) as caught:
            await pg_store.append("S-1", batch, expected_version=expected)
        assert caught.value.event_id == elsewhere.event_id
    assert await pg_store.stream_version("S-1") == 0
    assert [s.stream_id for s in await pg_store.list_streams()] == ["Other-1"]
    await wait_visible(pg_store, stored.global_position)
    assert len(await pg_store.read_all()) == 1


async def test_a_failed_batch_on_an_existing_stream_keeps_its_version(
    pg_store: PostgresEventStore,
) -> None:
    await pg_store.append("S-1", [Deposited(amount=1)])
    with pytest.raises(InvalidAppend):
        await pg_store.append("S-1", [Deposited(amount=2), Noted(text="\x00")], expected_version=1)
    assert await pg_store.stream_version("S-1") == 1
    assert (await pg_store.append("S-1", [Deposited(amount=2)], expected_version=1)).version == 2
