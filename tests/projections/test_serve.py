"""``Running.serve``: what ``eventfold run`` does, from Python: serve until told to stop."""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy as sa
from projection_support import Inventory, ItemAdded

from eventfold import App
from eventfold.eventstore.migrate import migrate
from eventfold.projections import SubscriberState


async def test_serve_runs_the_subscribers_until_stopped_and_reports_each_change(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'served.db'}"
    await migrate(url)
    app = App(events=[ItemAdded], projections=[Inventory()])
    async with app.connect(url) as running:
        runner = running.runner(holder="served")
        stop, started, serving_it = asyncio.Event(), asyncio.Event(), asyncio.Event()
        states: list[tuple[str, str]] = []

        def on_state(state: SubscriberState) -> None:
            states.append((state.name, state.state))
            if state.state == "running":
                serving_it.set()

        serving = asyncio.create_task(running.serve(
            runner, stop, on_started=started.set, on_state=on_state,
        ))
        await asyncio.wait_for(started.wait(), 30)
        appended = await running.store.append("Cart-1", [ItemAdded(sku="pen")])
        await runner.wait_until(appended.global_position, timeout=30)
        await asyncio.wait_for(serving_it.wait(), 30)
        stop.set()
        await asyncio.wait_for(serving, 30)

        async with running.engine.connect() as conn:
            rows = (await conn.execute(sa.select(Inventory.stock.c.quantity))).scalars().all()
    assert rows == [1]
    assert states == [("inventory", "running"), ("inventory", "stopped")]
