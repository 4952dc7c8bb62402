"""The shop's HTTP API (examples/shop_api) on SQLite and PostgreSQL: status codes, the
Idempotency-Key, conflicts, paging, and read models served by the lifespan's runner."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from eventfold import EventStore
from examples.shop.inventory import InventoryItem
from examples.shop.order import Order
from examples.shop_api import create_api, queries
from examples.shop_api.idempotency import KEY_NAMESPACE
from examples.shop_api.state import Shop


@pytest.fixture
async def api(durable_shop_url: str) -> AsyncIterator[FastAPI]:
    """The API on an empty store, its lifespan running (store connected, runner serving)."""
    api = create_api(durable_shop_url)
    async with api.router.lifespan_context(api):
        yield api


@pytest.fixture
async def client(api: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the API in process; the shop has 50 pens and 50 books."""
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
        for sku in ("pen", "book"):
            answer = await client.post(f"/inventory/{sku}/receipts", json={"quantity": 50})
            assert answer.status_code == 200, answer.text
        yield client


def store_of(api: FastAPI) -> EventStore:
    shop: Shop = api.state.shop
    return shop.running.store


def order(order_id: str, customer: str = "alice", quantity: int = 2) -> dict[str, Any]:
    return {
        "order_id": order_id, "customer": customer, "currency": "EUR",
        "lines": [{"sku": "pen", "quantity": quantity, "unit_price": "1.20"}],
    }


# --- commands and their status codes ----------------------------------------------------------


async def test_placing_an_order_answers_201_with_the_order(client: httpx.AsyncClient) -> None:
    placed = await client.post("/orders", json=order("o-1"))
    assert placed.status_code == 201
    assert placed.headers["location"] == "/orders/o-1"
    assert placed.headers["etag"] == '"1"'
    assert placed.json() == {
        "order_id": "o-1", "customer": "alice", "status": "placed", "total": "2.40",
        "currency": "EUR", "version": 1,
    }
    fetched = await client.get("/orders/o-1")
    assert (fetched.status_code, fetched.json()) == (200, placed.json())


async def test_confirm_and_cancel_answer_the_new_state(client: httpx.AsyncClient) -> None:
    await client.post("/orders", json=order("o-1"))
    await client.post("/orders", json=order("o-2"))
    confirmed = await client.post("/orders/o-1/confirm")
    cancelled = await client.post("/orders/o-2/cancel", json={"reason": "changed my mind"})
    assert (confirmed.status_code, confirmed.json()["status"]) == (200, "confirmed")
    assert (cancelled.status_code, cancelled.json()["status"]) == (200, "cancelled")
    assert confirmed.headers["etag"] == '"2"'


async def test_receiving_stock_answers_the_item(client: httpx.AsyncClient) -> None:
    received = await client.post("/inventory/mug/receipts", json={"quantity": 3})
    again = await client.post("/inventory/mug/receipts", json={"quantity": 4})
    assert received.json() == {"sku": "mug", "on_hand": 3, "available": 3, "version": 1}
    assert (again.status_code, again.json()["on_hand"], again.json()["version"]) == (200, 7, 2)


async def test_a_broken_rule_is_422_with_the_domain_message(client: httpx.AsyncClient) -> None:
    empty = await client.post("/orders", json={**order("o-1"), "lines": []})
    assert empty.status_code == 422
    assert empty.json() == {
        "error": "EmptyOrder", "detail": "order o-1 has no lines: add at least one product",
    }
    zero = await client.post("/orders", json=order("o-2", quantity=0))
    assert (zero.status_code, zero.json()["error"]) == (422, "InvalidLine")
    await client.post("/orders", json=order("o-3"))
    await client.post("/orders/o-3/confirm")
    refused = await client.post("/orders/o-3/cancel", json={"reason": "late"})
    assert refused.status_code == 422
    assert refused.json()["error"] == "OrderNotPending"
    assert "confirmed" in refused.json()["detail"]
    negative = await client.post("/inventory/pen/receipts", json={"quantity": -1})
    assert (negative.status_code, negative.json()["error"]) == (422, "InvalidQuantity")


async def test_an_unknown_product_is_422(client: httpx.AsyncClient) -> None:
    answer = await client.post(
        "/orders", json={**order("o-1"), "lines": [{"sku": "kite", "quantity": 1,
                                                   "unit_price": "3"}]}
    )
    assert (answer.status_code, answer.json()["error"]) == (422, "UnknownProduct")
    assert "POST /inventory/kite/receipts" in answer.json()["detail"]


async def test_bad_input_is_fastapis_422(client: httpx.AsyncClient) -> None:
    answer = await client.post("/orders", json={**order("o-1"), "lines": [{"sku": "pen"}]})
    assert answer.status_code == 422
    assert {tuple(error["loc"]) for error in answer.json()["detail"]} == {
        ("body", "lines", 0, "quantity"), ("body", "lines", 0, "unit_price"),
    }
    assert (await client.post("/inventory/pen/receipts", json={"quantity": "many"})
            ).status_code == 422
    assert (await client.post("/orders/o-1/confirm", headers={"If-Match": "v1"})
            ).status_code == 422


async def test_an_unknown_order_is_404(client: httpx.AsyncClient) -> None:
    for answer in (
        await client.get("/orders/nope"),
        await client.post("/orders/nope/confirm"),
        await client.post("/orders/nope/cancel", json={"reason": "x"}),
    ):
        assert answer.status_code == 404
        assert answer.json()["error"] == "AggregateNotFound"
        assert "'nope' not found" in answer.json()["detail"]


async def test_placing_an_existing_order_is_409(client: httpx.AsyncClient) -> None:
    await client.post("/orders", json=order("o-1"))
    answer = await client.post("/orders", json=order("o-1", customer="bob"))
    assert (answer.status_code, answer.json()["error"]) == (409, "AggregateExists")
    assert (await client.get("/orders/o-1")).json()["customer"] == "alice"


# --- conflicts ----------------------------------------------------------------------------------


async def test_a_stale_if_match_is_409_and_changes_nothing(client: httpx.AsyncClient) -> None:
    await client.post("/orders", json=order("o-1"))
    stale = await client.post("/orders/o-1/confirm", headers={"If-Match": '"2"'})
    assert (stale.status_code, stale.json()["error"]) == (409, "ConcurrencyError")
    assert "is at version 1" in stale.json()["detail"]
    assert (await client.get("/orders/o-1")).json()["status"] == "placed"
    current = await client.post("/orders/o-1/confirm", headers={"If-Match": '"1"'})
    assert (current.status_code, current.json()["version"]) == (200, 2)


async def test_concurrent_conflicting_updates_one_wins_one_is_409(
    api: FastAPI, client: httpx.AsyncClient
) -> None:
    await client.post("/orders", json=order("o-1"))
    confirm, cancel = await asyncio.gather(
        client.post("/orders/o-1/confirm", headers={"If-Match": '"1"'}),
        client.post("/orders/o-1/cancel", json={"reason": "r"}, headers={"If-Match": '"1"'}),
    )
    assert sorted([confirm.status_code, cancel.status_code]) == [200, 409]
    loser = confirm if confirm.status_code == 409 else cancel
    assert loser.json()["error"] == "ConcurrencyError"
    assert await store_of(api).stream_version(Order.stream_id_for("o-1")) == 2


# --- idempotency --------------------------------------------------------------------------------


async def test_a_retried_place_answers_the_same_and_stores_once(
    api: FastAPI, client: httpx.AsyncClient
) -> None:
    headers = {"Idempotency-Key": "checkout-o-1"}
    first = await client.post("/orders", json=order("o-1"), headers=headers)
    again = await client.post("/orders", json=order("o-1"), headers=headers)
    assert (again.status_code, again.json()) == (first.status_code, first.json())
    [placed] = await store_of(api).read_stream(Order.stream_id_for("o-1"))
    assert placed.event_id == uuid.uuid5(KEY_NAMESPACE, "checkout-o-1")
    assert placed.metadata["idempotency_key"] == "checkout-o-1"


async def test_a_uuid_key_is_the_event_id_and_a_retried_receipt_counts_once(
    api: FastAPI, client: httpx.AsyncClient
) -> None:
    key = str(uuid.uuid4())
    first = await client.post("/inventory/pen/receipts", json={"quantity": 5},
                              headers={"Idempotency-Key": key})
    await client.post("/inventory/pen/receipts", json={"quantity": 1})
    again = await client.post("/inventory/pen/receipts", json={"quantity": 5},
                              headers={"Idempotency-Key": key})
    assert (again.status_code, again.json()) == (200, first.json())
    assert first.json()["on_hand"] == 55
    records = await store_of(api).read_stream(InventoryItem.stream_id_for("pen"))
    assert [r.event_id for r in records].count(uuid.UUID(key)) == 1
    assert (await client.post("/inventory/pen/receipts", json={"quantity": 1})
            ).json()["on_hand"] == 57


async def test_a_retried_confirm_or_cancel_answers_the_first_result(
    api: FastAPI, client: httpx.AsyncClient
) -> None:
    await client.post("/orders", json=order("o-1"))
    await client.post("/orders", json=order("o-2"))
    confirm = {"Idempotency-Key": "confirm-o-1"}
    first = await client.post("/orders/o-1/confirm", headers=confirm)
    again = await client.post("/orders/o-1/confirm", headers=confirm)
    assert (again.status_code, again.json()) == (200, first.json())
    cancel = {"Idempotency-Key": "cancel-o-2", "If-Match": '"1"'}
    first = await client.post("/orders/o-2/cancel", json={"reason": "r"}, headers=cancel)
    # The retry's If-Match no longer holds (the first request moved the order to v2),
    # yet the client gets the first answer, not a 409.
    again = await client.post("/orders/o-2/cancel", json={"reason": "r"}, headers=cancel)
    assert (first.status_code, again.status_code, again.json()) == (200, 200, first.json())
    assert await store_of(api).stream_version(Order.stream_id_for("o-2")) == 2


async def test_a_key_reused_for_another_request_is_422(client: httpx.AsyncClient) -> None:
    await client.post("/orders", json=order("o-1"))
    key = {"Idempotency-Key": "k-1"}
    assert (await client.post("/orders", json=order("o-2"), headers=key)).status_code == 201
    answers = [
        # the same order, another body
        await client.post("/orders", json=order("o-2", quantity=3), headers=key),
        # another order
        await client.post("/orders/o-1/cancel", json={"reason": "r"}, headers=key),
    ]
    cancel = {"Idempotency-Key": "k-2"}
    await client.post("/orders/o-1/cancel", json={"reason": "r"}, headers=cancel)
    # the same path, another body: the command records nothing now, the digest tells
    answers.append(await client.post("/orders/o-1/cancel", json={"reason": "x"}, headers=cancel))
    for answer in answers:
        assert answer.status_code == 422, answer.text
        assert "Idempotency-Key" in answer.json()["detail"]
        assert "already used for a different request" in answer.json()["detail"]
    assert (await client.get("/orders/o-2")).json()["total"] == "2.40"


async def test_concurrent_copies_of_a_keyed_request_store_once(
    api: FastAPI, client: httpx.AsyncClient
) -> None:
    headers = {"Idempotency-Key": "receipt-7"}
    answers = await asyncio.gather(*(
        client.post("/inventory/book/receipts", json={"quantity": 7}, headers=headers)
        for _ in range(4)
    ))
    assert {a.status_code for a in answers} == {200}
    assert {a.json()["on_hand"] for a in answers} == {57}
    assert await store_of(api).stream_version(InventoryItem.stream_id_for("book")) == 2


# --- read models --------------------------------------------------------------------------------


async def test_the_order_list_pages_oldest_first(client: httpx.AsyncClient) -> None:
    ids = [f"o-{n}" for n in range(1, 6)]
    for order_id in ids:
        await client.post("/orders", json=order(order_id))
    first = (await client.get("/orders", params={"limit": 2, "consistent": "true"})).json()
    assert ([i["order_id"] for i in first["items"]], first["next_offset"]) == (ids[:2], 2)
    second = (await client.get("/orders", params={"limit": 2, "offset": 2})).json()
    last = (await client.get("/orders", params={"limit": 2, "offset": 4})).json()
    assert [i["order_id"] for i in second["items"]] == ids[2:4]
    assert ([i["order_id"] for i in last["items"]], last["next_offset"]) == (ids[4:], None)
    assert first["items"][0]["total"] == "2.40"
    assert (await client.get("/orders", params={"limit": 0})).status_code == 422
    assert (await client.get("/orders", params={"offset": -1})).status_code == 422


async def test_customer_totals_come_from_the_read_model(client: httpx.AsyncClient) -> None:
    await client.post("/orders", json=order("o-1", quantity=5))
    await client.post("/orders", json=order("o-2"))
    await client.post("/orders/o-1/confirm")
    await client.post("/orders/o-2/cancel", json={"reason": "r"})
    answer = await client.get("/customers/alice/totals", params={"consistent": "true"})
    assert answer.json() == {"customer": "alice", "totals": [{
        "currency": "EUR", "placed": 2, "confirmed": 1, "cancelled": 1, "spent": "6.00",
    }]}
    unknown = await client.get("/customers/zoe/totals", params={"consistent": "true"})
    assert (unknown.status_code, unknown.json()["error"]) == (404, "UnknownCustomer")


async def test_a_consistent_read_the_read_models_cannot_serve_is_503(
    api: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop: Shop = api.state.shop
    await shop.runner.stop()  # nothing projects the order placed next
    monkeypatch.setattr(queries, "CONSISTENT_READ_TIMEOUT", 0.5)
    await client.post("/orders", json=order("o-1"))
    answer = await client.get("/orders", params={"consistent": "true"})
    assert (answer.status_code, answer.json()["error"]) == (503, "ReadModelsBehind")
    assert "order_list" in answer.json()["detail"]


def test_python_m_examples_shop_api_says_how_to_serve() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "examples.shop_api", "--help"],
        capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[2],
    )
    assert "--port" in done.stdout
    assert "EVENTFOLD_DATABASE_URL" in done.stdout
