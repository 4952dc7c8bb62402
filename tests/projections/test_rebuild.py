"""Rebuilds: blue/green equals live, queries answer throughout, in place, reset."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from projection_support import Env, Inventory, ItemAdded, ItemRemoved, make_registry

from eventfold.eventstore import connect
from eventfold.eventstore.engine import create_engine
from eventfold.eventstore.migrate import migrate
from eventfold.projections import (
    RebuildParked,
    RebuildProgress,
    Runner,
    list_parked,
    rebuild,
    reset,
    status,
)


async def _model(env: Env) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    return await env.rows(Inventory.stock), await env.rows(Inventory.log)


async def test_blue_green_rebuild_equals_live_and_swaps_names_back(env: Env) -> None:
    for n in range(30):
        await env.store.append(f"Cart-{n % 7}", [ItemAdded(sku=f"s{n}", quantity=n)])
    last = await env.store.append("Cart-1", [ItemRemoved(sku="s1")])
    async with Runner(env.store, [Inventory()], engine=env.engine, **Env.runner_options) as r:
        await r.wait_until(last.global_position)
        live = await _model(env)
        seen: list[RebuildProgress] = []
        final = await rebuild(
            env.store, env.engine, Inventory(), on_progress=seen.append, batch_size=4
        )
        assert await _model(env) == live
        assert final.phase == "done" and final.events_done == 31
        assert final.total_estimate == 31 and final.parked == 0
        assert [p.phase for p in seen][-2:] == ["swapping", "done"]
        assert all(p.events_done <= 31 for p in seen)
        # The runner follows on the swapped-in tables.
        more = await env.store.append("Cart-1", [ItemAdded(sku="after")])
        await r.wait_until(more.global_position)
        stock = {row[0]: row[1:] for row in await env.rows(Inventory.stock)}
        assert stock["Cart-1"][2] == "after"
    # No shadow or old table is left, and the index has its own name again.
    async with env.engine.connect() as conn:
        names = await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names())
        indexes = await conn.run_sync(
            lambda sync: [i["name"] for i in sa.inspect(sync).get_indexes("test_inventory_log")]
        )
    assert not [n for n in names if n.endswith(("__shadow", "__old"))]
    assert "test_inventory_log_stream" in indexes
    # A second rebuild works on the renamed objects.
    await rebuild(env.store, env.engine, Inventory())
    [state] = await status(env.store, env.engine, [Inventory()])
    assert state.events_behind == 0


async def test_rebuild_parks_what_fails_and_in_place_and_reset(env: Env) -> None:
    await env.store.append("Cart-1", [ItemAdded(sku="a"), ItemAdded(sku="poison")])
    last = await env.store.append("Cart-2", [ItemAdded(sku="b")])
    async with Runner(env.store, [Inventory()], engine=env.engine, **Env.runner_options) as r:
        await r.wait_until(last.global_position)
    before = {row[0]: row[1:] for row in await env.rows(Inventory.stock)}
    # Rebuilt with a handler that now fails on "poison": the new model parks it, so it is
    # not swapped in unless the operator says so.
    with pytest.raises(RebuildParked) as refused:
        await rebuild(env.store, env.engine, Inventory(poisoned={"poison"}))
    assert refused.value.parked == 1
    assert "eventfold projections parked inventory#rebuild" in str(refused.value)
    assert {row[0]: row[1:] for row in await env.rows(Inventory.stock)} == before
    [kept] = await list_parked(env.engine)
    assert kept.subscriber == "inventory#rebuild"  # the shadow is kept for inspection
    final = await rebuild(
        env.store, env.engine, Inventory(poisoned={"poison"}), allow_parked=True
    )
    assert final.parked == 1
    [parked] = await list_parked(env.engine)
    assert parked.subscriber == "inventory"
    stock = {row[0]: row[1:] for row in await env.rows(Inventory.stock)}
    assert stock == {"Cart-1": (1, 1, "a"), "Cart-2": (1, 1, "b")}
    # In place: emptied, replayed (here, since no runner holds it), parked list renewed.
    final = await rebuild(env.store, env.engine, Inventory(), in_place=True)
    assert final.events_done == 3 and final.parked == 0
    stock = {row[0]: row[1:] for row in await env.rows(Inventory.stock)}
    assert stock == {"Cart-1": (2, 2, "poison"), "Cart-2": (1, 1, "b")}
    await reset(env.engine, Inventory())
    assert await env.rows(Inventory.stock) == []
    [state] = await status(env.store, env.engine, [Inventory()])
    assert state.events_behind == 3 and state.state == "stopped"
    assert state.seconds_behind >= 0


async def test_an_in_place_rebuild_that_parks_does_not_finish_silently(env: Env) -> None:
    await env.store.append("Cart-1", [ItemAdded(sku="a"), ItemAdded(sku="poison")])
    last = await env.store.append("Cart-2", [ItemAdded(sku="b")])
    async with Runner(env.store, [Inventory()], engine=env.engine, **Env.runner_options) as r:
        await r.wait_until(last.global_position)
    with pytest.raises(RebuildParked) as refused:
        await rebuild(env.store, env.engine, Inventory(poisoned={"poison"}), in_place=True)
    assert refused.value.parked == 1 and refused.value.in_place
    assert "eventfold projections parked inventory`" in str(refused.value)
    final = await rebuild(
        env.store, env.engine, Inventory(poisoned={"poison"}), in_place=True,
        allow_parked=True,
    )
    assert final.parked == 1
    stock = {row[0]: row[1:] for row in await env.rows(Inventory.stock)}
    assert stock == {"Cart-1": (1, 1, "a"), "Cart-2": (1, 1, "b")}


async def test_queries_answer_throughout_a_blue_green_rebuild(db_env: Env) -> None:
    """A reader querying the live table in a loop never errors and never sees the model
    empty or partial, while a rebuild builds the shadow and swaps it in."""
    env = db_env
    for n in range(60):
        last = await env.store.append(f"Cart-{n % 10}", [ItemAdded(sku=f"s{n}")])
    async with Runner(env.store, [Inventory()], engine=env.engine, **Env.runner_options) as r:
        await r.wait_until(last.global_position)
        expected = await env.rows(Inventory.stock)
        reader_engine = create_engine(env.url)
        done = asyncio.Event()
        answers = 0

        async def read_loop() -> None:
            nonlocal answers
            while not done.is_set():
                async with reader_engine.connect() as conn:
                    rows = sorted(tuple(row) for row in await conn.execute(
                        sa.select(Inventory.stock)
                    ))
                assert rows == expected
                answers += 1
                await asyncio.sleep(0)

        reader = asyncio.create_task(read_loop())
        try:
            await rebuild(env.store, env.engine, Inventory(), batch_size=5)
        finally:
            done.set()
            await reader
            await reader_engine.dispose()
        assert answers > 0


@settings(
    max_examples=15, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    history=st.lists(
        st.tuples(
            st.integers(0, 4),
            st.sampled_from(["add", "remove"]),
            st.integers(1, 5),
        ),
        min_size=0, max_size=40,
    ),
    batch_size=st.integers(1, 7),
    split=st.integers(0, 40),
)
async def test_rebuild_equals_live_for_any_history(
    tmp_path: Path, history: list[tuple[int, str, int]], batch_size: int, split: int
) -> None:
    """Property: whatever the history and batch sizes, and with events arriving while the
    live runner works, a blue/green rebuild produces exactly the live model."""
    url = f"sqlite:///{tmp_path / f'h{abs(hash((tuple(history), batch_size, split)))}.db'}"
    await migrate(url)
    engine = create_engine(url)
    async with connect(url, make_registry()) as store:
        env = Env("sqlite", url, store, engine)
        try:

            async def append(items: list[tuple[int, str, int]]) -> None:
                for stream, kind, quantity in items:
                    event = (
                        ItemAdded(sku=f"k{quantity}", quantity=quantity) if kind == "add"
                        else ItemRemoved(sku=f"k{quantity}")
                    )
                    await store.append(f"Cart-{stream}", [event])

            await append(history[:split])
            async with Runner(
                store, [Inventory()], engine=engine, batch_size=batch_size,
                **Env.runner_options,
            ) as runner:
                await append(history[split:])
                await runner.wait_until(await store.head())
                live = await _model(env)
                await rebuild(store, engine, Inventory(), batch_size=batch_size)
                assert await _model(env) == live
        finally:
            await engine.dispose()
