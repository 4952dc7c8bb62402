"""Failing events: retried, then parked in per-stream order while other streams flow on;
listed, retried in order, skipped; or the projection halts, by policy."""

from __future__ import annotations

import uuid

import pytest
from projection_support import Env, HaltingInventory, Inventory, ItemAdded, ItemRemoved

from eventfold.eventstore import EventRegistry, connect
from eventfold.projections import (
    ParkedEventNotFound,
    ProjectionHalted,
    Runner,
    list_parked,
    retry_parked,
    skip_parked,
    status,
)


async def test_poison_event_is_parked_while_other_streams_flow_on(env: Env) -> None:
    await env.store.append("Cart-1", [ItemAdded(sku="ok-1"), ItemAdded(sku="poison")])
    await env.store.append("Cart-2", [ItemAdded(sku="ok-2")])
    await env.store.append("Cart-1", [ItemAdded(sku="after-1"), ItemAdded(sku="after-2")])
    last = await env.store.append("Cart-3", [ItemAdded(sku="ok-3")])
    inventory = Inventory(poisoned={"poison"})
    async with Runner(env.store, [inventory], engine=env.engine, **Env.runner_options) as r:
        await r.wait_until(last.global_position)
        # Tried 1 + retries times (after a failing whole-batch attempt), then parked.
        assert inventory.calls.count("poison") == 1 + 1 + Inventory.failure.retries
        # Events behind it in its stream are parked without being tried.
        assert "after-1" not in inventory.calls and "after-2" not in inventory.calls
        stock = {row[0]: row[1:] for row in await env.rows(Inventory.stock)}
        assert stock == {
            "Cart-1": (1, 1, "ok-1"), "Cart-2": (1, 1, "ok-2"), "Cart-3": (1, 1, "ok-3"),
        }
        parked = await list_parked(env.engine, "inventory")
        assert [p.event_type for p in parked] == ["ItemAdded"] * 3
        head, *behind = parked
        assert head.stream_id == "Cart-1" and head.blocked_by is None
        assert "Poison: sku poison is poisoned" in head.error
        assert "Traceback" in head.traceback and head.attempts == 1 + Inventory.failure.retries
        assert all(p.blocked_by == head.position and p.attempts == 0 for p in behind)
        [state] = await status(env.store, env.engine, [inventory])
        assert state.parked == 3 and state.state == "running"
        # A later event of the blocked stream parks behind too, live.
        more = await env.store.append("Cart-1", [ItemAdded(sku="after-3")])
        await r.wait_until(more.global_position)
        assert len(await list_parked(env.engine, "inventory")) == 4

        # Retrying while still poisoned: nothing moves, the error is refreshed.
        result = await retry_parked(env.store, env.engine, inventory)
        assert result.applied == [] and len(result.still_parked) == 4
        assert result.still_parked[0].attempts == head.attempts + 1

        # Fixed: a retry applies them in stream order and empties the parked list.
        inventory.poisoned.clear()
        inventory.calls.clear()
        result = await retry_parked(env.store, env.engine, inventory, stream_id="Cart-1")
        assert [p.position for p in result.applied] == [head.position] + [
            p.position for p in behind
        ] + [more.global_position]
        assert inventory.calls == ["poison", "after-1", "after-2", "after-3"]
        assert await list_parked(env.engine) == []
        stock = {row[0]: row[1:] for row in await env.rows(Inventory.stock)}
        assert stock["Cart-1"] == (5, 5, "after-3")
        # The stream flows live again.
        again = await env.store.append("Cart-1", [ItemAdded(sku="live")])
        await r.wait_until(again.global_position)
        assert "live" in inventory.calls
    assert len(await env.rows(Inventory.log)) == 8


async def test_retry_stops_at_the_first_event_that_fails_again(env: Env) -> None:
    await env.store.append("Cart-1", [ItemAdded(sku="bad-1"), ItemAdded(sku="x")])
    last = await env.store.append("Cart-1", [ItemAdded(sku="bad-2"), ItemAdded(sku="y")])
    inventory = Inventory(poisoned={"bad-1", "bad-2"})
    async with Runner(env.store, [inventory], engine=env.engine, **Env.runner_options) as r:
        await r.wait_until(last.global_position)
    assert len(await list_parked(env.engine, "inventory")) == 4
    inventory.poisoned = {"bad-2"}
    inventory.calls.clear()
    result = await retry_parked(env.store, env.engine, inventory)
    assert len(result.applied) == 2
    assert inventory.calls == ["bad-1", "x", "bad-2"]
    remaining = result.still_parked
    assert len(remaining) == 2
    assert remaining[0].blocked_by is None and "bad-2" in remaining[0].error
    assert remaining[1].blocked_by == remaining[0].position


async def test_skip_drops_a_parked_event_and_the_rest_can_follow(env: Env) -> None:
    await env.store.append("Cart-1", [ItemAdded(sku="poison"), ItemAdded(sku="next")])
    last = await env.store.append("Cart-2", [ItemAdded(sku="other")])
    inventory = Inventory(poisoned={"poison"})
    async with Runner(env.store, [inventory], engine=env.engine, **Env.runner_options) as r:
        await r.wait_until(last.global_position)
    head, behind = await list_parked(env.engine, "inventory")
    with pytest.raises(ParkedEventNotFound):
        # The second id is not parked: nothing is skipped (one transaction).
        await skip_parked(env.engine, "inventory", [head.event_id, uuid.uuid4()])
    assert len(await list_parked(env.engine, "inventory")) == 2
    await skip_parked(env.engine, "inventory", [head.event_id])
    [still] = await list_parked(env.engine, "inventory")
    assert still.event_id == behind.event_id
    result = await retry_parked(env.store, env.engine, inventory)
    assert [p.event_id for p in result.applied] == [behind.event_id]
    stock = {row[0]: row[1:] for row in await env.rows(Inventory.stock)}
    assert stock["Cart-1"] == (1, 1, "next")


async def test_halt_policy_stops_the_projection_until_its_event_is_dealt_with(env: Env) -> None:
    await env.store.append("Cart-1", [ItemAdded(sku="ok"), ItemAdded(sku="poison")])
    last = await env.store.append("Cart-2", [ItemAdded(sku="later")])
    halting = HaltingInventory(poisoned={"poison"})
    async with Runner(env.store, [halting], engine=env.engine, **Env.runner_options) as r:
        with pytest.raises(ProjectionHalted) as halted:
            await r.wait_until(last.global_position)
        assert "poison" in halted.value.reason
        # The event before the failure committed; nothing after it ran.
        assert [row[3] for row in await env.rows(HaltingInventory.stock)] == ["ok"]
        assert "later" not in halting.calls
        [state] = await status(env.store, env.engine, [halting])
        assert state.state == "halted" and state.parked == 1
        assert state.events_behind == 1
        halting.poisoned.clear()
        result = await retry_parked(env.store, env.engine, halting)
        assert len(result.applied) == 1 and result.still_parked == []
        await r.wait_until(last.global_position)
        assert sorted(row[3] for row in await env.rows(HaltingInventory.stock)) == [
            "later", "poison",
        ]
        [state] = await status(env.store, env.engine, [halting])
        assert state.state == "running" and state.parked == 0


async def test_undecodable_events_are_parked_not_skipped(db_env: Env) -> None:
    env = db_env
    await env.store.append("Cart-1", [ItemAdded(sku="a"), ItemRemoved(sku="a")])
    last = await env.store.append("Cart-2", [ItemAdded(sku="b")])
    # A reader whose registry lacks ItemRemoved: the event cannot be decoded.
    async with connect(env.url, EventRegistry([ItemAdded])) as partial:
        inventory = Inventory()
        async with Runner(partial, [inventory], engine=env.engine, **Env.runner_options) as r:
            await r.wait_until(last.global_position)
    [parked] = await list_parked(env.engine, "inventory")
    assert parked.event_type == "ItemRemoved" and "UnknownEventType" in parked.error
