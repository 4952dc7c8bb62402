"""The console on PostgreSQL: every view renders from the real server (the trace by its
indexed correlation query, the projections with the transaction-horizon check)."""

from __future__ import annotations

from pathlib import Path

from ui_support import POISON_ORDER, POISONED, console_client, fill_shop

from eventfold import EventRegistry, connect


async def test_every_view_on_postgresql(pg_fresh_url: str, poison_file: Path) -> None:
    await fill_shop(pg_fresh_url)
    async with connect(pg_fresh_url, EventRegistry()) as store:
        [placed] = await store.read_stream(f"Order-{POISON_ORDER}", to_version=1)
    async with console_client(pg_fresh_url) as client:
        streams = await client.get("/streams", params={"prefix": "Order-poison"})
        stream = await client.get("/stream", params={"id": f"Order-{POISON_ORDER}"})
        event = await client.get(
            "/event", params={"stream": f"Order-{POISON_ORDER}", "version": 1}
        )
        traced = await client.get("/trace", params={"id": f"checkout-{POISON_ORDER}"})
        projections = await client.get("/projections")
        lag = await client.get("/projections/lag")
        holders = await client.get("/holders")
        parked = await client.get("/parked")
        tail = await client.get("/tail")
    for response in (streams, stream, event, traced, projections, lag, holders, parked, tail):
        assert response.status_code == 200, response.text
    assert f"Order-{POISON_ORDER}" in streams.text and "OrderPlaced" in stream.text
    assert POISONED in event.text and "specversion" in event.text
    assert str(placed.event_id) in traced.text and "PaymentRequested" in traced.text
    assert {entry["name"]: entry["parked"] for entry in lag.json()["projections"]} == {
        "order_list": 0, "customer_totals": 0, "order_audit": 1, "fulfilment": 0,
    }
    assert 'data-name="order_audit"' in projections.text
    assert "is on the poison list" in parked.text
