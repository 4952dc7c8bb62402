"""The console's routes, served in this process: every view renders what the store and
the application hold, a read-only console refuses actions, and actions need the token."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from ui_support import POISON_ORDER, POISONED, console_client, cure

from eventfold import connect
from eventfold.eventstore import START, EventRegistry
from eventfold.eventstore.engine import create_engine
from eventfold.projections import list_parked

TOKEN = "s3cret-token"
POISON_STREAM = f"Order-{POISON_ORDER}"


async def parked_ids(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        return [str(p.event_id) for p in await list_parked(engine, "order_audit")]
    finally:
        await engine.dispose()


async def test_home_leads_to_the_streams(shop_url: str) -> None:
    async with console_client(shop_url) as client:
        response = await client.get("/")
    assert response.status_code == 303
    assert response.headers["location"].endswith("/streams")


async def test_streams_lists_every_stream_with_version_and_category(shop_url: str) -> None:
    async with console_client(shop_url) as client:
        page = (await client.get("/streams")).text
    assert "InventoryItem-book" in page and POISON_STREAM in page
    assert "read-only" in page and shop_url.removeprefix("sqlite:///") in page


async def test_streams_are_searched_by_id_prefix_and_category(shop_url: str) -> None:
    async with console_client(shop_url) as client:
        by_prefix = (await client.get("/streams", params={"prefix": "Inventory"})).text
        by_category = (await client.get("/streams", params={"category": "Payment"})).text
        none = (await client.get("/streams", params={"prefix": "Nope"})).text
    assert _stream_links(by_prefix) == [
        "InventoryItem-book", "InventoryItem-mug", "InventoryItem-pen",
    ]
    assert _stream_links(by_category) and all(
        stream.startswith("Payment-") for stream in _stream_links(by_category)
    )
    assert "No streams whose id starts with “Nope”" in none


async def test_streams_page_on_in_id_order(shop_url: str) -> None:
    async with console_client(shop_url) as client:
        everything = _stream_links((await client.get("/streams")).text)
        first = await client.get("/streams", params={"limit": 4})
        after = re.search(r'id="next-page" href="[^"]*after=([^"&]+)', first.text)
        assert after is not None
        second = await client.get("/streams", params={"limit": 4, "after": everything[3]})
        too_many = await client.get("/streams", params={"limit": 100_000})
    assert _stream_links(first.text) == everything[:4]
    assert _stream_links(second.text) == everything[4:8]
    assert "limit=4" in first.text  # the next page keeps the page size
    assert too_many.status_code == 400 and "limit must be from 1 to 500" in too_many.text


async def test_a_stream_shows_its_events_oldest_first(shop_url: str) -> None:
    async with console_client(shop_url) as client:
        page = (await client.get("/stream", params={"id": POISON_STREAM})).text
        missing = await client.get("/stream", params={"id": "Order-none"})
    assert "OrderPlaced" in page and POISONED in page
    assert missing.status_code == 404
    assert "stream &#39;Order-none&#39; has no events" in missing.text


async def test_an_event_shows_data_metadata_and_its_cloudevent(shop_url: str) -> None:
    async with console_client(shop_url) as client:
        page = (await client.get("/event", params={"stream": POISON_STREAM, "version": 1})).text
        beyond = await client.get("/event", params={"stream": POISON_STREAM, "version": 9})
        not_a_number = await client.get("/event", params={"stream": POISON_STREAM, "version": "x"})
    assert "&#34;customer&#34;: &#34;mallory&#34;" in page
    assert "&#34;specversion&#34;: &#34;1.0&#34;" in page
    assert "&#34;subject&#34;: &#34;Order-poison-1&#34;" in page
    assert 'id="trace-event"' in page
    assert beyond.status_code == 404 and "no event at version 9" in beyond.text
    assert not_a_number.status_code == 400


async def test_what_is_not_a_stream_id_is_a_bad_request(shop_url: str) -> None:
    async with console_client(shop_url) as client:
        no_stream = await client.get("/event", params={"version": 1})
        too_long = await client.get("/stream", params={"id": "Order-" + "9" * 1000})
    assert no_stream.status_code == 400 and "name the event" in no_stream.text
    assert too_long.status_code == 400 and "the limit is" in too_long.text


async def test_the_trace_shows_what_an_event_caused(shop_url: str) -> None:
    async with connect(shop_url, EventRegistry()) as store:
        [placed] = await store.read_stream(POISON_STREAM, to_version=1)
    async with console_client(shop_url) as client:
        page = (await client.get("/trace", params={"id": str(placed.event_id)})).text
        unknown = await client.get("/trace", params={"id": "no-such-correlation"})
        form = await client.get("/trace")
    # The order's placement caused the fulfilment's stock reservation and payment request.
    assert page.index("OrderPlaced") < page.index("StockReserved")
    assert "PaymentRequested" in page and 'class="node selected"' in page
    assert unknown.status_code == 404 and "no event with id no-such-correlation" in unknown.text
    assert form.status_code == 200 and "Give an event id" in form.text


async def test_projections_show_state_lag_and_parked_events(shop_url: str) -> None:
    async with console_client(shop_url) as client:
        page = (await client.get("/projections")).text
        lag = (await client.get("/projections/lag")).json()
    for name in ("order_list", "customer_totals", "order_audit", "fulfilment"):
        assert f'data-name="{name}"' in page
    assert 'id="lag-chart"' in page
    by_name = {entry["name"]: entry for entry in lag["projections"]}
    assert by_name["order_audit"]["parked"] == 1
    assert by_name["order_list"]["events_behind"] == 0
    assert by_name["order_list"]["state"] == "stopped"  # no runner serves it now


async def test_holders_show_the_leases_and_who_holds_nothing(shop_url: str) -> None:
    async with console_client(shop_url) as client:
        page = (await client.get("/holders")).text
    assert "Holders" in page and 'id="unheld"' in page and "order_audit" in page


async def test_parked_events_are_listed_with_their_error(shop_url: str) -> None:
    async with console_client(shop_url) as client:
        page = (await client.get("/parked")).text
    assert 'data-name="order_audit"' in page and POISON_STREAM in page
    assert "AuditRefused" in page and "is on the poison list" in page
    assert "read-only" in page and "<button" not in page  # read-only: no actions offered


async def test_views_of_the_application_need_one(shop_url: str) -> None:
    async with console_client(shop_url, app_spec=None) as client:
        streams = await client.get("/streams")
        views = [await client.get(path) for path in ("/projections", "/holders", "/parked")]
    assert streams.status_code == 200
    for response in views:
        assert response.status_code == 409
        assert "needs the application: pass --app module:attribute" in response.text


async def test_the_tail_page_follows_from_the_head_or_the_start(shop_url: str) -> None:
    async with connect(shop_url, EventRegistry()) as store:
        head = await store.head()
    async with console_client(shop_url) as client:
        new_only = (await client.get("/tail")).text
        from_start = (await client.get("/tail", params={"from_start": "1"})).text
        bad = await client.get("/tail/events", params={"after": "nowhere"})
    assert f"after={head.transaction_id}.{head.position}" in new_only
    assert f"after={START.transaction_id}.{START.position}" in from_start
    assert bad.status_code == 400


async def test_a_read_only_console_refuses_actions(shop_url: str) -> None:
    [event_id] = await parked_ids(shop_url)
    async with console_client(shop_url) as client:
        retry = await client.post("/parked/order_audit/retry", data={"token": TOKEN})
        skip = await client.post(f"/parked/order_audit/skip/{event_id}", data={"token": TOKEN})
    for response in (retry, skip):
        assert response.status_code == 403
        assert "read-only: start it with `eventfold ui --allow-actions`" in response.text
    assert await parked_ids(shop_url) == [event_id]


@pytest.mark.parametrize("given", [{}, {"data": {"token": "wrong"}},
                                   {"headers": {"X-Eventfold-Token": "wrong"}}],
                         ids=["none", "wrong-in-form", "wrong-in-header"])
async def test_actions_need_the_right_token(
    shop_url: str, poison_file: Path, given: dict[str, dict[str, str]]
) -> None:
    cure(poison_file)  # the retry would succeed: only the token stops it
    async with console_client(shop_url, token=TOKEN) as client:
        response = await client.post("/parked/order_audit/retry", **given)
    assert response.status_code == 403 and "wrong or missing token" in response.text
    assert len(await parked_ids(shop_url)) == 1


async def test_a_retry_with_the_token_applies_the_fixed_event(
    shop_url: str, poison_file: Path
) -> None:
    async with console_client(shop_url, token=TOKEN) as client:
        offered = (await client.get("/parked")).text
        still_failing = await client.post("/parked/order_audit/retry", data={"token": TOKEN})
        assert len(await parked_ids(shop_url)) == 1
        cure(poison_file)  # the operator fixes the cause
        fixed = await client.post(
            "/parked/order_audit/retry", headers={"X-Eventfold-Token": TOKEN}
        )
        after = await client.get(fixed.headers["location"])
    assert 'name="token"' in offered and "Retry order_audit" in offered
    assert still_failing.status_code == 303
    assert "failed again" in (await _follow(shop_url, still_failing.headers["location"]))
    assert fixed.status_code == 303
    assert "order_audit: applied 1 parked events; 0 still parked" in after.text
    assert 'id="none-parked"' in after.text
    assert await parked_ids(shop_url) == []


async def test_a_skip_with_the_token_drops_the_event(shop_url: str) -> None:
    [event_id] = await parked_ids(shop_url)
    async with console_client(shop_url, token=TOKEN) as client:
        response = await client.post(
            f"/parked/order_audit/skip/{event_id}", data={"token": TOKEN}
        )
        unknown = await client.post("/parked/nothing/retry", data={"token": TOKEN})
    assert response.status_code == 303 and "skipped" in response.headers["location"]
    assert await parked_ids(shop_url) == []
    assert unknown.status_code == 404


async def _follow(url: str, location: str) -> str:
    async with console_client(url) as client:
        return (await client.get(location)).text


def _stream_links(page: str) -> list[str]:
    return re.findall(r'<td><a href="[^"]*/stream\?id=[^"]*">([^<]+)</a></td>', page)
