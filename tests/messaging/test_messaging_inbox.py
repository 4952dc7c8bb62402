"""The inbox: effects and "processed" commit together; redelivery is a no-op; pruning."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from messaging_support import Env, effects
from sqlalchemy.ext.asyncio import AsyncConnection

from eventfold.eventstore.schema import inbox as inbox_table
from eventfold.messaging.inbox import Inbox, message_uuid, schedule_prune


async def _effect(conn: AsyncConnection, event_id: uuid.UUID) -> None:
    await conn.execute(effects.insert().values(
        consumer="t", event_id=event_id, stream_id="S", stream_version=1,
    ))


async def _count(env: Env) -> int:
    async with env.engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(effects)
        return int((await conn.execute(query)).scalar_one())


async def test_a_message_is_processed_once_however_often_it_arrives(env: Env) -> None:
    inbox = Inbox(env.engine, "billing")
    message = uuid.uuid4()
    assert await inbox.process(message, lambda conn: _effect(conn, message)) is True
    assert await inbox.process(message, lambda conn: _effect(conn, message)) is False
    assert await inbox.process(str(message), lambda conn: _effect(conn, message)) is False
    assert await _count(env) == 1
    assert await inbox.seen(message)
    # Another consumer keeps its own ids.
    assert await Inbox(env.engine, "shipping").process(message, lambda conn: _effect(conn, message))
    assert await _count(env) == 2


async def test_a_failing_effect_leaves_the_message_unprocessed(env: Env) -> None:
    inbox = Inbox(env.engine, "billing")
    message = uuid.uuid4()

    async def fail(conn: AsyncConnection) -> None:
        await _effect(conn, message)
        raise RuntimeError("handler broke")

    with pytest.raises(RuntimeError):
        await inbox.process(message, fail)
    assert not await inbox.seen(message)
    assert await _count(env) == 0
    assert await inbox.process(message, lambda conn: _effect(conn, message))
    assert await _count(env) == 1


async def test_the_block_form_tells_a_duplicate_and_rolls_back_what_it_wrote(env: Env) -> None:
    inbox = Inbox(env.engine, "billing")
    message = uuid.uuid4()
    async with inbox.handle(message) as entry:
        assert not entry.duplicate
        await _effect(entry.connection, message)
    async with inbox.handle(message) as entry:
        assert entry.duplicate
        await _effect(entry.connection, message)  # careless caller: rolled back
    assert await _count(env) == 1


async def test_racing_deliveries_of_one_message_apply_it_once(pg_env: Env) -> None:
    inbox = Inbox(pg_env.engine, "billing")
    message = uuid.uuid4()
    inside = asyncio.Event()
    release = asyncio.Event()

    async def slow(conn: AsyncConnection) -> None:
        await _effect(conn, message)
        inside.set()
        await release.wait()

    first = asyncio.create_task(inbox.process(message, slow))
    await inside.wait()
    # The second delivery blocks on the first's uncommitted row, then sees a duplicate.
    second = asyncio.create_task(inbox.process(message, lambda conn: _effect(conn, message)))
    done, _ = await asyncio.wait({second}, timeout=0.3)
    assert not done, "the second delivery must wait for the first transaction"
    release.set()
    assert await first is True
    assert await second is False
    assert await _count(pg_env) == 1


async def test_ids_that_are_not_uuids_map_to_stable_uuids(env: Env) -> None:
    assert message_uuid("order-42:v1") == message_uuid("order-42:v1")
    assert message_uuid("order-42:v1") != message_uuid("order-42:v2")
    inbox = Inbox(env.engine, "billing")
    assert await inbox.process("order-42:v1", lambda conn: _effect(conn, uuid.uuid4()))
    assert not await inbox.process("order-42:v1", lambda conn: _effect(conn, uuid.uuid4()))


async def _age(env: Env, consumer: str, message: uuid.UUID, days: int) -> None:
    # Make a row look old, in each database's own time format.
    if env.kind == "sqlite":
        old: sa.ColumnElement[object] = sa.func.strftime(
            "%Y-%m-%d %H:%M:%f", "now", f"-{days} days"
        )
    else:
        old = sa.func.now() - sa.func.make_interval(0, 0, 0, days)
    async with env.engine.begin() as conn:
        await conn.execute(
            inbox_table.update()
            .where(inbox_table.c.consumer == consumer, inbox_table.c.message_id == message)
            .values(processed_at=old)
        )


async def test_prune_forgets_only_old_ids_of_its_consumer(env: Env) -> None:
    billing, shipping = Inbox(env.engine, "billing"), Inbox(env.engine, "shipping")
    old, new = uuid.uuid4(), uuid.uuid4()
    for inbox in (billing, shipping):
        for message in (old, new):
            await inbox.process(message, lambda conn: asyncio.sleep(0))
        await _age(env, inbox.consumer, old, days=10)
    assert await billing.prune(timedelta(days=7)) == 1
    assert not await billing.seen(old)
    assert await billing.seen(new)
    assert await shipping.seen(old)  # another consumer's ids are its own business
    assert await billing.count() == 1


async def test_prune_runs_on_a_schedule(env: Env) -> None:
    inbox = Inbox(env.engine, "billing")
    message = uuid.uuid4()
    await inbox.process(message, lambda conn: asyncio.sleep(0))
    await _age(env, "billing", message, days=30)
    scheduler = AsyncIOScheduler()
    job = schedule_prune(scheduler, inbox, older_than=timedelta(days=7), every_seconds=3600)
    assert job.id == "eventfold-inbox-prune:billing"
    scheduler.start()
    try:
        # Run the scheduled job now rather than waiting an hour for it.
        await job.func()
    finally:
        scheduler.shutdown(wait=False)
    assert not await inbox.seen(message)
