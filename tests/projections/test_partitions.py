"""Partitioned subscribers in one process: the split, checkpoints per partition, fair shares
between runners, status, rebuild, and the refusal to change the count without one."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from projection_support import Env, Inventory, ItemAdded, ItemRemoved

from eventfold.eventstore.records import GlobalPosition, RecordedEvent
from eventfold.eventstore.schema import checkpoints, leases
from eventfold.projections import (
    PartitionsChanged,
    ProjectionDefinitionError,
    Runner,
    list_parked,
    rebuild,
    reset,
    retry_parked,
    status,
)
from eventfold.projections.database import Database
from eventfold.projections.partitions import Partition, partition_of, partitions_of


class Split(Inventory):
    """The inventory projection served as four partitions (by stream)."""

    name = "split_inventory"
    metadata = sa.MetaData()
    stock = Inventory.stock.to_metadata(metadata)
    log = Inventory.log.to_metadata(metadata)
    partitions = 4


class SplitInTwo(Split):
    """The same projection and tables, declared with two partitions."""

    partitions = 2


class Whole(Split):
    """The same projection and tables, unpartitioned."""

    partitions = 1


def _record(stream_id: str, version: int, position: int) -> RecordedEvent:
    return RecordedEvent(
        event_id=uuid.uuid4(), stream_id=stream_id, stream_version=version,
        transaction_id=1, position=position, event_type="ItemAdded",
        schema_version=1, data={}, metadata={}, recorded_at=datetime.now(UTC),
    )


def test_the_partition_of_a_key_is_stable_across_processes() -> None:
    # MD5 of the key: the same figures in every process, machine and Python version.
    assert [partition_of(f"Cart-{n}", 4) for n in range(8)] == [2, 3, 3, 2, 0, 3, 2, 1]
    assert partition_of("order-42", 7) == 5


@given(
    streams=st.lists(st.sampled_from([f"s{n}" for n in range(12)]), max_size=60),
    count=st.integers(min_value=1, max_value=8),
)
def test_every_event_lands_in_one_partition_in_log_order(streams: list[str], count: int) -> None:
    versions: dict[str, int] = {}
    log = []
    for position, stream in enumerate(streams, start=1):
        versions[stream] = versions.get(stream, 0) + 1
        log.append(_record(stream, versions[stream], position))
    parts = [Partition(i, count) for i in range(count)]
    taken = [[r for r in log if part.accepts(r)] for part in parts]
    assert sorted(r.global_position for part in taken for r in part) == [
        r.global_position for r in log
    ]
    for part in taken:
        for stream in {r.stream_id for r in part}:
            # A stream lives in one partition, all of it, in its order.
            mine = [r.stream_version for r in part if r.stream_id == stream]
            assert mine == list(range(1, versions[stream] + 1))


def test_a_bad_partition_count_is_refused_at_definition() -> None:
    class Bad(Split):
        partitions = 0

    with pytest.raises(ProjectionDefinitionError, match="partitions must be a whole number"):
        Bad()


async def _fill(env: Env, events: int, streams: int = 13) -> GlobalPosition:
    last = None
    for n in range(events):
        last = await env.store.append(
            f"Cart-{n % streams}", [ItemAdded(sku=f"s{n}", quantity=1)]
        )
    assert last is not None
    return last.global_position


async def _stored(env: Env) -> dict[str, tuple[int, int]]:
    async with Database(env.engine).reading() as conn:
        rows = (await conn.execute(sa.select(
            checkpoints.c.name, checkpoints.c.partition, checkpoints.c.partitions
        ))).all()
    return {row[0]: (row[1], row[2]) for row in rows}


async def test_a_partitioned_projection_applies_every_event_once(env: Env) -> None:
    last = await _fill(env, 60)
    async with Runner(env.store, [Split()], engine=env.engine, **Env.runner_options) as r:
        await r.wait_until(last)
        assert {s.name for s in r.states()} == {f"split_inventory/{i}" for i in range(4)}
        entry, = await status(env.store, env.engine, [Split()])
        assert [p.name for p in entry.partitions] == [f"split_inventory/{i}" for i in range(4)]
        assert entry.events_behind == 0 and entry.state == "running"
        assert all(p.holder == r.holder for p in entry.partitions)
    stock = await env.rows(Split.stock)
    assert len(stock) == 13 and sum(row[2] for row in stock) == 60
    assert len(await env.rows(Split.log)) == 60  # unique per event: none applied twice
    stored = await _stored(env)
    assert {name: stored[name] for name in stored if name.startswith("split")} == {
        f"split_inventory/{i}": (i, 4) for i in range(4)
    }


async def test_status_counts_each_partitions_backlog(env: Env) -> None:
    await _fill(env, 40)
    entry, = await status(env.store, env.engine, [Split()])
    assert entry.state == "stopped" and entry.events_behind == 40
    assert sum(p.events_behind for p in entry.partitions) == 40
    assert all(p.events_behind > 0 for p in entry.partitions)


async def _holdings(engine_env: Env, name: str) -> dict[str, int]:
    async with Database(engine_env.engine).reading() as conn:
        rows = (await conn.execute(
            sa.select(leases.c.holder).where(
                leases.c.name.startswith(name + "/"), leases.c.partition >= 0,
                leases.c.expires_at > Database(engine_env.engine).now(),
            )
        )).scalars().all()
    counts: dict[str, int] = {}
    for holder in rows:
        counts[holder] = counts.get(holder, 0) + 1
    return counts


async def _until(probe: object, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while True:
        if await probe():  # type: ignore[operator]
            return
        if time.monotonic() > deadline:
            pytest.fail("not within the time")
        await asyncio.sleep(0.05)


async def test_runners_share_partitions_fairly_and_take_over_a_stopped_ones(
    db_env: Env,
) -> None:
    env = db_env
    options = {**Env.runner_options, "lease_ttl": 0.6}
    first = Runner(env.store, [Split()], engine=env.engine, holder="a", **options)
    second = Runner(env.store, [Split()], engine=env.engine, holder="b", **options)
    await first.start()
    try:
        await _until(lambda: _is(env, {"a": 4}))
        await second.start()
        await _until(lambda: _is(env, {"a": 2, "b": 2}))
        last = await _fill(env, 30)
        await first.stop()
        await _until(lambda: _is(env, {"b": 4}))
        await second.wait_until(last)
    finally:
        await first.stop()
        await second.stop()
    assert len(await env.rows(Split.log)) == 30


async def _is(env: Env, wanted: dict[str, int]) -> bool:
    return await _holdings(env, "split_inventory") == wanted


async def test_changing_the_count_is_refused_until_a_rebuild(env: Env) -> None:
    last = await _fill(env, 20)
    async with Runner(env.store, [Split()], engine=env.engine, **Env.runner_options) as r:
        await r.wait_until(last)
    live = await env.rows(Split.stock)
    for other, stored in ((SplitInTwo(), 4), (Whole(), 4)):
        runner = Runner(env.store, [other], engine=env.engine, **Env.runner_options)
        with pytest.raises(PartitionsChanged, match=(
            f"declares {other.partitions} partition.*stored with {stored}: run "
            "`eventfold projections rebuild split_inventory`"
        )):
            await runner.start()
    final = await rebuild(env.store, env.engine, SplitInTwo(), batch_size=7)
    assert final.events_done == 20
    assert await env.rows(Split.stock) == live
    stored_rows = await _stored(env)
    assert sorted(n for n in stored_rows if n.startswith("split")) == [
        "split_inventory/0", "split_inventory/1"
    ]
    more = await env.store.append("Cart-1", [ItemRemoved(sku="x")])
    async with Runner(env.store, [SplitInTwo()], engine=env.engine, **Env.runner_options) as r:
        await r.wait_until(more.global_position)
    # Back to one partition, through a rebuild again.
    with pytest.raises(PartitionsChanged):
        await Runner(env.store, [Whole()], engine=env.engine).start()
    await rebuild(env.store, env.engine, Whole())
    assert [n for n in await _stored(env) if n.startswith("split")] == ["split_inventory"]
    assert sum(row[2] for row in await env.rows(Split.stock)) == 21


async def test_a_partitioned_rebuild_in_place_and_reset(env: Env) -> None:
    last = await _fill(env, 25)
    async with Runner(env.store, [Split()], engine=env.engine, **Env.runner_options) as r:
        await r.wait_until(last)
        live = await env.rows(Split.stock)
    # No runner holds it: the four partitions replay here, side by side.
    final = await rebuild(env.store, env.engine, Split(), in_place=True)
    assert final.phase == "done" and final.events_done == 25
    assert await env.rows(Split.stock) == live
    await reset(env.engine, Split())
    assert await env.rows(Split.stock) == []
    assert set((await _stored(env)).values()) >= {(i, 4) for i in range(4)}


async def test_a_partition_parks_its_own_event_and_the_retry_finds_it(env: Env) -> None:
    await _fill(env, 12)
    poisoned = await env.store.append("Shelf-1", [ItemAdded(sku="poison", quantity=1)])
    behind = await env.store.append("Shelf-1", [ItemAdded(sku="after", quantity=1)])
    last = await _fill(env, 12)
    bad = Split(poisoned={"poison"})
    async with Runner(env.store, [bad], engine=env.engine, **Env.runner_options) as r:
        await r.wait_until(last)
    home = f"split_inventory/{partition_of('Shelf-1', 4)}"
    parked = await list_parked(env.engine, "split_inventory")
    # Parked in its partition, with the later event of its stream behind it.
    assert [(p.subscriber, p.position) for p in parked] == [
        (home, poisoned.global_position), (home, behind.global_position)
    ]
    # The other streams of that partition and the other partitions went on.
    assert len(await env.rows(Split.log)) == 24
    result = await retry_parked(env.store, env.engine, Split())
    assert len(result.applied) == 2 and result.still_parked == []
    assert len(await env.rows(Split.log)) == 26


class ByNumber(Split):
    """Partitioned by a key of its own (the number in the stream id): filtered here."""

    name = "numbered_inventory"

    def partition_key(self, record: RecordedEvent) -> str:
        return record.stream_id.split("-")[1]


async def test_a_key_of_its_own_is_filtered_by_the_subscriber(env: Env) -> None:
    assert [p.in_store for p in partitions_of(Split())] == [(i, 4) for i in range(4)]
    assert [p.in_store for p in partitions_of(ByNumber())] == [None] * 4
    last = await _fill(env, 50)
    async with Runner(env.store, [ByNumber()], engine=env.engine, **Env.runner_options) as r:
        await r.wait_until(last)
        entry, = await status(env.store, env.engine, [ByNumber()])
        assert entry.events_behind == 0 and len(entry.partitions) == 4
    assert len(await env.rows(Split.log)) == 50
    assert sum(row[2] for row in await env.rows(Split.stock)) == 50
