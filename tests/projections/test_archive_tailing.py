"""Archiving streams while a projection tails the log: its checkpoint survives, and among
the events still hot it sees every one exactly once (archived ones it had not reached yet
are out of the hot log, by design: docs/lifecycle.md)."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from projection_support import Env, Inventory, ItemAdded

from eventfold.eventstore import START, RecordedEvent
from eventfold.projections import Runner
from eventfold.projections.database import Database


async def _whole_log(env: Env) -> list[RecordedEvent]:
    out: list[RecordedEvent] = []
    after = START
    while page := await env.store.read_all(after=after, limit=500):
        out += page
        after = page[-1].global_position
    return out


async def test_a_projection_tailing_the_log_while_streams_are_archived(db_env: Env) -> None:
    streams = [f"Cart-{n}" for n in range(8)]
    appended: set[object] = set()
    last = START

    async def write() -> None:
        nonlocal last
        for round_ in range(25):
            for stream in streams:
                result = await db_env.store.append(stream, [ItemAdded(sku=f"s{round_}")])
                last = max(last, result.global_position)
            await asyncio.sleep(0)

    async def archive() -> int:
        moved = 0
        for _ in range(10):
            for stream in streams:
                moved += await db_env.store.archive_stream(stream)
            await asyncio.sleep(0.01)
        return moved

    inventory = Inventory()
    async with Runner(
        db_env.store, [inventory], engine=db_env.engine, batch_size=7, **Env.runner_options
    ) as runner:
        _, moved = await asyncio.gather(write(), archive())
        await runner.wait_until(last)
    assert moved > 0
    for stream in streams:
        history = await db_env.store.read_stream_with_archive(stream)
        assert [e.stream_version for e in history] == list(range(1, 26))
        appended |= {e.event_id for e in history}
    hot = {e.event_id for e in await _whole_log(db_env)}
    seen = [row[0] for row in await db_env.rows(Inventory.log)]
    # Each event at most once (the log's key), none that was never appended, every hot one.
    assert len(seen) == len(set(seen))
    assert set(seen) <= appended
    assert hot <= set(seen)
    async with Database(db_env.engine).reading() as conn:
        parked = await conn.scalar(sa.text("SELECT count(*) FROM eventfold_parked_events"))
    assert parked == 0

    # A later event after everything was archived is seen once, from the same checkpoint.
    for stream in streams:
        await db_env.store.archive_stream(stream)
    result = await db_env.store.append("Cart-0", [ItemAdded(sku="late")])
    async with Runner(
        db_env.store, [inventory], engine=db_env.engine, **Env.runner_options
    ) as runner:
        await runner.wait_until(result.global_position)
    rows = [row[0] for row in await db_env.rows(Inventory.log)]
    assert len(rows) == len(seen) + 1
