"""A projection runs while streams are deleted, truncated and scavenged: it sees every
surviving event exactly once and in log order, every deletion and truncation, its
checkpoint stays valid across the gaps a scavenge leaves, and its read model drops the
rows of deleted streams (issue 13's test of the global-log guarantee)."""

from __future__ import annotations

import asyncio
import contextlib
import random

import sqlalchemy as sa
from projection_support import Env, ItemAdded

from eventfold.eventstore import (
    GlobalPosition,
    StreamDeleted,
    StreamTombstoned,
    StreamTruncated,
)
from eventfold.projections import Projection, ProjectionContext, Runner, handles, list_parked


class Documents(Projection):
    """Per stream, its items; a deleted stream's rows go. Every delivery is logged."""

    name = "lifecycle_documents"
    metadata = sa.MetaData()
    items = sa.Table(
        "test_lifecycle_items",
        metadata,
        sa.Column("stream_id", sa.Text(), primary_key=True),
        sa.Column("count", sa.Integer(), nullable=False),
    )
    seen = sa.Table(
        "test_lifecycle_seen",
        metadata,
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("transaction_id", sa.BigInteger(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.UniqueConstraint("transaction_id", "position"),
    )

    async def _log(self, ctx: ProjectionContext) -> None:
        record = ctx.envelope
        await ctx.connection.execute(
            ctx.tables["test_lifecycle_seen"]
            .insert()
            .values(
                transaction_id=record.transaction_id,
                position=record.position,
                event_type=record.event_type,
            )
        )

    @handles(ItemAdded)
    async def _added(self, event: ItemAdded, ctx: ProjectionContext) -> None:
        await self._log(ctx)
        items = ctx.tables["test_lifecycle_items"]
        stream_id = ctx.envelope.stream_id
        changed = await ctx.connection.execute(
            items.update().where(items.c.stream_id == stream_id).values(count=items.c.count + 1)
        )
        if changed.rowcount == 0:
            await ctx.connection.execute(items.insert().values(stream_id=stream_id, count=1))

    @handles(StreamDeleted)
    async def _deleted(self, event: StreamDeleted, ctx: ProjectionContext) -> None:
        await self._log(ctx)
        items = ctx.tables["test_lifecycle_items"]
        await ctx.connection.execute(
            items.delete().where(items.c.stream_id == ctx.envelope.stream_id)
        )

    @handles(StreamTruncated)
    async def _truncated(self, event: StreamTruncated, ctx: ProjectionContext) -> None:
        await self._log(ctx)


async def _drop(env: Env) -> None:
    async with env.engine.begin() as conn:
        for name in ("test_lifecycle_items", "test_lifecycle_seen"):
            for suffix in ("", "__shadow", "__old"):
                await conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{name}{suffix}"')


async def test_a_projection_runs_while_streams_are_deleted_and_scavenged(env: Env) -> None:
    await _drop(env)
    store = env.store
    streams = [f"Doc-{n}" for n in range(12)]
    rng = random.Random(13)
    writing = True

    async def write(stream_ids: list[str]) -> None:
        while writing:
            for stream_id in stream_ids:
                with contextlib.suppress(StreamTombstoned):
                    await store.append(stream_id, [ItemAdded(sku=stream_id)])
            await asyncio.sleep(0)

    async def delete_and_truncate() -> None:
        for _ in range(30):
            stream_id = rng.choice(streams)
            action = rng.random()
            try:
                if action < 0.15:
                    await store.delete_stream(stream_id, hard=True)
                elif action < 0.6:
                    await store.delete_stream(stream_id)
                else:
                    version = await store.stream_version(stream_id)
                    await store.truncate_stream(stream_id, max(1, version // 2))
            except StreamTombstoned:
                pass
            await asyncio.sleep(0.01)

    async def scavenge() -> None:
        while writing:
            await store.scavenge()
            await asyncio.sleep(0.01)

    projection = Documents()
    async with Runner(store, [projection], engine=env.engine, **Env.runner_options) as runner:
        writers = [asyncio.create_task(write(streams[n::3])) for n in range(3)]
        scavenger = asyncio.create_task(scavenge())
        await delete_and_truncate()
        writing = False
        await asyncio.gather(*writers, scavenger)
        await store.scavenge()
        head = await store.committed_head()
        await runner.wait_until(head, timeout=60)
        # Read while the runner holds the read model: on the memory store it lives in a
        # private in-memory SQLite database, which a connection dropped at stop() empties.
        seen = [tuple(row) for row in await env.rows(Documents.seen)]  # sorted by seq
        items = dict(await env.rows(Documents.items))
        parked = await list_parked(env.engine, Documents.name)

    survivors = []
    after = GlobalPosition(0, 0)
    while batch := await store.read_all(after=after, limit=500):
        survivors.extend(batch)
        after = batch[-1].global_position
    positions = [(row[1], row[2]) for row in seen]
    assert positions == sorted(positions), "the projection saw the log out of order"
    assert len(set(positions)) == len(positions)
    # Every surviving event was delivered (the table's unique key: exactly once), the
    # store's own events included; what the scavenge removed first may be missing.
    assert {record.global_position for record in survivors} <= set(positions)
    assert any(row[3] == "$StreamDeleted" for row in seen)
    assert sum(row[3] == "$StreamDeleted" for row in seen) == sum(
        record.event_type == "$StreamDeleted" for record in survivors
    )
    assert parked == []
    # The read model holds exactly the streams that read as present, with their items.
    for stream_id in streams:
        readable = await store.read_stream(stream_id)
        added = sum(record.event_type == "ItemAdded" for record in readable)
        last = (await store.read_stream(stream_id, backwards=True, limit=1) or [None])[0]
        if not readable:
            assert stream_id not in items, stream_id
        elif last is not None and not any(
            record.event_type == "$StreamTruncated" for record in readable
        ):
            assert items.get(stream_id) == added, stream_id
