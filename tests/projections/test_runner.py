"""The runner catches up, follows live, commits writes and checkpoint together."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
import sqlalchemy as sa
from projection_support import (
    Env,
    Inventory,
    ItemAdded,
    ItemRemoved,
    Unrelated,
)

from eventfold.eventstore import GlobalPosition
from eventfold.projections import (
    DuplicateProjection,
    Projection,
    ProjectionContext,
    ProjectionDefinitionError,
    ProjectionRegistry,
    Runner,
    checkpoints,
    handles,
    status,
)
from eventfold.projections.database import Database


async def checkpoint_of(env: Env, name: str) -> GlobalPosition | None:
    db = Database(env.engine)
    async with db.reading() as conn:
        stored = await checkpoints.read(db, conn, name)
    return None if stored is None else stored.position


async def test_catches_up_then_follows_live(env: Env) -> None:
    for n in range(5):
        await env.store.append(f"Cart-{n}", [ItemAdded(sku="a"), ItemAdded(sku="b", quantity=2)])
    # (Wait for append results, never for head(): on PostgreSQL the head a reader sees
    # can trail the last commit while an older transaction anywhere holds the horizon.)
    appended = await env.store.append("Note-1", [Unrelated(note="ignored")])
    inventory = Inventory()
    async with Runner(
        env.store, [inventory], engine=env.engine, batch_size=3, **Env.runner_options
    ) as runner:
        await runner.wait_until(appended.global_position)
        assert len(await env.rows(Inventory.stock)) == 5
        # Live: new events arrive after catch-up.
        result = await env.store.append("Cart-0", [ItemRemoved(sku="a")])
        await runner.wait_until(result.global_position)
        rows = {row[0]: row for row in await env.rows(Inventory.stock)}
        assert rows["Cart-0"] == ("Cart-0", 2, 3, "a")
        assert rows["Cart-4"] == ("Cart-4", 3, 2, "b")
        # The checkpoint is the last event of the projection's types.
        assert await checkpoint_of(env, "inventory") == result.global_position
        # An unrelated event after it: the runner is caught up to it without a write.
        unrelated = await env.store.append("Note-1", [Unrelated()])
        await runner.wait_until(unrelated.global_position)
        assert await checkpoint_of(env, "inventory") == result.global_position
        [state] = await status(env.store, env.engine, [inventory])
        assert state.state == "running"
        assert state.holder == runner.holder
        assert state.events_behind == 0 and state.events_behind_exact
        assert state.parked == 0
    [state] = await status(env.store, env.engine, [inventory])
    assert state.state == "stopped" and state.holder is None


async def test_restart_resumes_from_the_checkpoint_without_double_effects(env: Env) -> None:
    for n in range(4):
        appended = await env.store.append(f"Cart-{n}", [ItemAdded(sku="a")])
    first = Inventory()
    async with Runner(env.store, [first], engine=env.engine, **Env.runner_options) as runner:
        await runner.wait_until(appended.global_position)
    result = await env.store.append("Cart-9", [ItemAdded(sku="z")])
    second = Inventory()
    async with Runner(env.store, [second], engine=env.engine, **Env.runner_options) as runner:
        await runner.wait_until(result.global_position)
    assert second.calls == ["z"]
    assert len(await env.rows(Inventory.log)) == 5


async def test_failure_between_handlers_and_checkpoint_commits_nothing(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkpoint write fails after the handlers ran: the batch's writes roll back with
    it, and the batch applied again later has its effect exactly once."""
    for n in range(3):
        appended = await env.store.append(f"Cart-{n}", [ItemAdded(sku="a"), ItemAdded(sku="b")])
    failures = {"left": 1}
    real_advance = checkpoints.advance

    async def flaky_advance(*args: object, **kwargs: object) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise ConnectionError("the database went away between handler and checkpoint")
        await real_advance(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(checkpoints, "advance", flaky_advance)
    inventory = Inventory()
    async with Runner(env.store, [inventory], engine=env.engine, **Env.runner_options) as r:
        await r.wait_until(appended.global_position)
    assert failures["left"] == 0
    assert len(inventory.calls) == 12  # every handler ran twice: once rolled back
    assert [row[1:3] for row in await env.rows(Inventory.stock)] == [(2, 2)] * 3
    assert len(await env.rows(Inventory.log)) == 6


async def test_abandoned_batch_leaves_nothing_behind(env: Env) -> None:
    """A runner stopped (cancelled) inside a batch rolls it back; a new one applies it once."""
    appended = await env.store.append("Cart-1", [ItemAdded(sku="a"), ItemAdded(sku="slow")])
    entered, release = asyncio.Event(), asyncio.Event()

    class Slow(Inventory):
        async def _change(self, sku: str, delta: int, ctx: ProjectionContext) -> None:
            await super()._change(sku, delta, ctx)
            if sku == "slow":
                entered.set()
                await release.wait()

    runner = Runner(env.store, [Slow()], engine=env.engine, **Env.runner_options)
    await runner.start()
    await asyncio.wait_for(entered.wait(), 10)
    await runner.stop(timeout=0)  # abandon: the batch must roll back
    assert await env.rows(Inventory.stock) == []
    assert await checkpoint_of(env, "inventory") == GlobalPosition(0, 0)
    again = Inventory()
    async with Runner(env.store, [again], engine=env.engine, **Env.runner_options) as runner:
        await runner.wait_until(appended.global_position)
    assert [row[1:] for row in await env.rows(Inventory.stock)] == [(2, 2, "slow")]


async def test_graceful_stop_finishes_the_batch(env: Env) -> None:
    appended = await env.store.append("Cart-1", [ItemAdded(sku="a"), ItemAdded(sku="slow")])
    entered, release = asyncio.Event(), asyncio.Event()

    class Slow(Inventory):
        async def _change(self, sku: str, delta: int, ctx: ProjectionContext) -> None:
            await super()._change(sku, delta, ctx)
            if sku == "slow":
                entered.set()
                await release.wait()

    runner = Runner(env.store, [Slow()], engine=env.engine, **Env.runner_options)
    await runner.start()
    await asyncio.wait_for(entered.wait(), 10)
    stopping = asyncio.create_task(runner.stop())
    await asyncio.sleep(0)
    release.set()
    await stopping
    assert [row[1:] for row in await env.rows(Inventory.stock)] == [(2, 2, "slow")]
    assert await checkpoint_of(env, "inventory") == appended.global_position


def test_registry_rejects_duplicates_and_bad_definitions() -> None:
    registry = ProjectionRegistry([Inventory()])
    with pytest.raises(DuplicateProjection):
        registry.register(Inventory())
    assert registry.names() == ["inventory"]

    class Nameless(Projection):
        metadata = sa.MetaData()

        @handles(ItemAdded)
        async def _added(self, event: ItemAdded, ctx: ProjectionContext) -> None:
            """Nothing."""

    with pytest.raises(ProjectionDefinitionError):
        Nameless()

    with pytest.raises(ProjectionDefinitionError):

        class Twice(Projection):
            name = "twice"
            metadata = sa.MetaData()

            @handles(ItemAdded)
            async def _one(self, event: ItemAdded, ctx: ProjectionContext) -> None:
                """One."""

            @handles(ItemAdded)
            async def _two(self, event: ItemAdded, ctx: ProjectionContext) -> None:
                """Two."""

    assert Inventory().event_types == frozenset({"ItemAdded", "ItemRemoved"})


async def test_around_batch_is_part_of_the_subscriber_protocol(env: Env) -> None:
    """The engine calls ``around_batch`` through the protocol (not a ``getattr`` probe);
    projections and relays wrap their transactions in nothing."""
    from eventfold.messaging.relay import Message, Relay
    from eventfold.projections import Subscriber

    class Nowhere:
        broker = "nowhere"

        async def publish(self, messages: Sequence[Message]) -> None:
            """Confirm at once."""

        async def close(self) -> None:
            """Nothing to close."""

    assert "around_batch" in Subscriber.__dict__
    for subscriber in (Inventory(), Relay("relay", Nowhere())):
        assert isinstance(subscriber, Subscriber)
        async with subscriber.around_batch([], env.store, env.engine) as wrapped:
            assert wrapped is None
