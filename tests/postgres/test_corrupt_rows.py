"""A stored row that cannot become its event fails alone, with a typed error naming it;
the rows around it read and decode as stored."""

from __future__ import annotations

import json

import asyncpg
import pytest

from eventfold.eventstore import EventDecodeError, EventRegistry
from eventfold.eventstore.backends.postgres import PostgresEventStore
from eventfold.eventstore.encoding import MAX_DEPTH

from .conftest import Deposited, wait_visible

pytestmark = pytest.mark.postgres


async def _three_deposits(store: PostgresEventStore) -> None:
    result = await store.append(
        "Account-1", [Deposited(amount=1), Deposited(amount=2), Deposited(amount=3)]
    )
    await wait_visible(store, result.global_position)


async def _overwrite_data(conn: asyncpg.Connection, version: int, data: str) -> None:
    """Change a stored event's data behind the store's back (a hand edit, an old writer)."""
    await conn.execute(
        "UPDATE eventfold_events SET data = $1::jsonb WHERE stream_version = $2", data, version
    )


async def test_data_that_no_longer_fits_its_class_fails_alone(
    pg_store: PostgresEventStore, pg_registry: EventRegistry, raw_conn: asyncpg.Connection
) -> None:
    await _three_deposits(pg_store)
    await _overwrite_data(raw_conn, 2, '{"amount": "lots"}')
    for records in (await pg_store.read_all(), await pg_store.read_stream("Account-1")):
        first, second, third = records
        assert [pg_registry.decode(first), pg_registry.decode(third)] == [
            Deposited(amount=1), Deposited(amount=3),
        ]
        with pytest.raises(EventDecodeError, match="'amount'") as caught:
            pg_registry.decode(second)
        assert not caught.value.corrupt
        assert (caught.value.stream_id, caught.value.stream_version, caught.value.position) == (
            "Account-1", 2, second.position,
        )
        assert f"version 2, position {second.position}" in str(caught.value)


async def test_a_row_nested_deeper_than_the_reader_parses_fails_alone(
    pg_store: PostgresEventStore, pg_registry: EventRegistry, raw_conn: asyncpg.Connection
) -> None:
    # jsonb takes it, but the store's JSON parser stops at MAX_DEPTH levels: such a row
    # (written by hand, or before appends checked the depth) used to fail the whole read.
    deep: object = 1
    for _ in range(MAX_DEPTH + 50):
        deep = {"a": deep}
    await _three_deposits(pg_store)
    await _overwrite_data(raw_conn, 2, json.dumps({"amount": 2, "extra": deep}))
    first, second, third = await pg_store.read_all()
    assert (first.corrupt, third.corrupt) == (None, None)
    assert [pg_registry.decode(first), pg_registry.decode(third)] == [
        Deposited(amount=1), Deposited(amount=3),
    ]
    with pytest.raises(EventDecodeError, match="recursion limit") as caught:
        pg_registry.decode(second)
    assert caught.value.corrupt and caught.value.stream_version == 2
