"""A damaged row on SQLite spoils only itself: reads return every other row as stored, and
the damaged one fails to decode, alone, with a typed error naming it."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa

from eventfold.eventstore import (
    DuplicateEventId,
    Event,
    EventDecodeError,
    EventRegistry,
    NewEvent,
    connect,
)
from eventfold.eventstore.engine import create_engine
from eventfold.eventstore.protocol import EventStore
from eventfold.eventstore.schema import events as events_table
from eventfold.projections import Projection, ProjectionContext, Runner, handles, list_parked


class Noted(Event):
    """The one event of these tests."""

    text: str


@pytest.fixture
def registry() -> EventRegistry:
    return EventRegistry([Noted])


@pytest.fixture
async def store(db_url: str, registry: EventRegistry) -> AsyncIterator[EventStore]:
    async with connect(db_url, registry) as store:
        yield store


def _damage(db_url: str, column: str, cell: str, version: int) -> None:
    """Overwrite one cell of one stored event, as a hand edit or a damaged file would."""
    db = sqlite3.connect(db_url.removeprefix("sqlite:///"))
    try:
        with db:
            db.execute(
                f"UPDATE {events_table.name} SET {column} = ? WHERE stream_version = ?",
                (cell, version),
            )
    finally:
        db.close()


async def _three_notes(store: EventStore) -> None:
    await store.append("Note-1", [
        NewEvent(Noted(text=text), metadata={"n": n})
        for n, text in enumerate(["a", "b", "c"], start=1)
    ])


@pytest.mark.parametrize(
    ("column", "cell"),
    [
        ("data", '{"text":"x"}, {"text":"injected"}'),
        ("data", "not json"),
        ("data", "[1, 2]"),
        ("metadata", '{"n":2}, {"n":"injected"}'),
        ("metadata", "not json"),
    ],
    ids=["data-two-objects", "data-not-json", "data-not-an-object", "metadata-two-objects",
         "metadata-not-json"],
)
async def test_a_damaged_cell_spoils_only_its_own_row(
    store: EventStore, registry: EventRegistry, db_url: str, column: str, cell: str
) -> None:
    await _three_notes(store)
    _damage(db_url, column, cell, version=2)
    for records in (
        await store.read_all(), await store.read_stream("Note-1"),
        await store.read_stream("Note-1", backwards=True),
    ):
        first, second, third = sorted(records, key=lambda r: r.stream_version)
        assert [registry.decode(first), registry.decode(third)] == [
            Noted(text="a"), Noted(text="c"),
        ]
        assert (first.metadata, third.metadata) == ({"n": 1}, {"n": 3})
        assert first.corrupt is None and third.corrupt is None
        assert second.corrupt is not None
        assert (second.data, second.metadata) == ({}, {})
        with pytest.raises(EventDecodeError) as caught:
            registry.decode(second)
        error = caught.value
        assert error.corrupt
        assert (error.stream_id, error.stream_version, error.position) == (
            "Note-1", 2, second.position,
        )
        assert f"stream 'Note-1', version 2, position {second.position}" in str(error)


class Texts(Projection):
    """Keeps the text of every note it applies."""

    name = "texts"
    metadata = sa.MetaData()
    seen = sa.Table(
        "test_texts_seen",
        metadata,
        sa.Column("stream_id", sa.Text(), primary_key=True),
        sa.Column("stream_version", sa.Integer(), primary_key=True),
        sa.Column("text", sa.Text(), nullable=False),
    )

    @handles(Noted)
    async def _noted(self, event: Noted, ctx: ProjectionContext) -> None:
        await ctx.connection.execute(ctx.tables["test_texts_seen"].insert().values(
            stream_id=ctx.envelope.stream_id, stream_version=ctx.envelope.stream_version,
            text=event.text,
        ))


async def test_a_subscriber_parks_the_damaged_row_and_applies_the_rest(
    store: EventStore, db_url: str
) -> None:
    await _three_notes(store)
    last = await store.append("Note-2", [Noted(text="d")])
    _damage(db_url, "data", '{"text":"x"}, {"text":"injected"}', version=2)
    engine = create_engine(db_url)
    try:
        async with Runner(
            store, [Texts()], engine=engine, lease_ttl=1.5, lease_retry=0.05, idle_wait=0.05,
            error_backoff=0.05,
        ) as runner:
            await runner.wait_until(last.global_position, timeout=60)
        damaged, behind = await list_parked(engine, "texts")
        assert damaged.stream_id == "Note-1" and "EventDecodeError" in damaged.error
        assert "version 2" in damaged.error
        # Note-1's next event waits behind it (per-stream order); Note-2 flows on.
        assert behind.stream_id == "Note-1" and behind.blocked_by == damaged.position
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.select(Texts.seen).order_by(
                Texts.seen.c.stream_id, Texts.seen.c.stream_version,
            ))).all()
        assert [tuple(row) for row in rows] == [("Note-1", 1, "a"), ("Note-2", 1, "d")]
    finally:
        await engine.dispose()


async def test_a_retry_of_a_damaged_row_is_a_clash_not_a_crash(
    store: EventStore, db_url: str
) -> None:
    sent = NewEvent(Noted(text="a"))
    await store.append("Note-1", [sent])
    _damage(db_url, "data", "not json", version=1)
    with pytest.raises(DuplicateEventId, match="other data"):
        await store.append("Note-1", [sent])
