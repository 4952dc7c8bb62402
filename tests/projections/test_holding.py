"""One holder at a time: the checkpoint's compare-and-set and the lease with failover."""

from __future__ import annotations

import asyncio

import pytest
from projection_support import Env, Inventory, ItemAdded

from eventfold.projections import CheckpointMoved, Runner, list_parked, status
from eventfold.projections.database import Database
from eventfold.projections.leases import Lease
from eventfold.projections.subscription import Subscription


async def test_two_holders_of_one_checkpoint_never_both_commit_a_batch(env: Env) -> None:
    for n in range(6):
        last = await env.store.append(f"Cart-{n}", [ItemAdded(sku="a")])
    # On PostgreSQL an old transaction anywhere in the cluster can hold readers back.
    while await env.store.head() < last.global_position:
        await env.store.wait_for_events(await env.store.head(), 1.0)
    db = Database(env.engine)
    first = Subscription(env.store, db, Inventory(), batch_size=4)
    second = Subscription(env.store, db, Inventory(), batch_size=4)
    await first.setup()
    await second.setup()
    outcomes = await asyncio.gather(first.step(), second.step(), return_exceptions=True)
    moved = [o for o in outcomes if isinstance(o, CheckpointMoved)]
    assert len(moved) == 1, outcomes
    assert sorted(o for o in outcomes if isinstance(o, int)) == [4]
    assert len(await env.rows(Inventory.log)) == 4
    # The loser reloads and carries on from where the winner left off.
    loser = second if isinstance(outcomes[1], CheckpointMoved) else first
    await loser.reload()
    assert await loser.step() == 2
    assert len(await env.rows(Inventory.log)) == 6


async def test_runners_share_a_projection_and_fail_over_when_the_holder_dies(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = {**Env.runner_options, "lease_ttl": 0.6}
    a = Runner(env.store, [Inventory()], engine=env.engine, holder="runner-a", **options)
    b = Runner(env.store, [Inventory()], engine=env.engine, holder="runner-b", **options)
    await a.start()
    first = await env.store.append("Cart-1", [ItemAdded(sku="a")])
    await a.wait_until(first.global_position)
    await b.start()
    [state] = await status(env.store, env.engine, [Inventory()])
    assert state.holder == "runner-a"
    # runner-a dies without a word: its tasks vanish and it never releases its lease.
    async def no_release(self: Lease) -> None:
        self.token = None

    monkeypatch.setattr(Lease, "release", no_release)
    await a.stop(timeout=0)
    monkeypatch.undo()
    last = None
    for n in range(20):
        last = await env.store.append(f"Cart-{n % 3}", [ItemAdded(sku=f"s{n}")])
    assert last is not None
    await b.wait_until(last.global_position, timeout=10)
    [state] = await status(env.store, env.engine, [Inventory()])
    assert state.holder == "runner-b" and state.events_behind == 0
    await b.stop()
    assert len(await env.rows(Inventory.log)) == 21
    assert await list_parked(env.engine) == []
