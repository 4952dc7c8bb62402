"""Retention per category, on every backend: what goes, what stays, dry runs, two runners
applying the same policies at once, and the scheduled job."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from eventfold.eventstore import (
    Event,
    EventRegistry,
    EventStore,
    InvalidRetention,
    Retention,
    connect,
)
from eventfold.eventstore.migrate import migrate
from eventfold.eventstore.retention import Expiry, apply_retention, schedule_retention
from tests.conftest import truncate_store_tables


class CartOpened(Event):
    """A cart was opened."""


class ItemPut(Event):
    """An item went into a cart."""

    sku: str


class CartCancelled(Event):
    """The customer gave the cart up."""


class CartCheckedOut(Event):
    """The cart became an order."""


LATER = timedelta(days=31)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EventStore]:
    registry = EventRegistry([CartOpened, ItemPut, CartCancelled, CartCheckedOut])
    url = {"memory": "memory://", "sqlite": f"sqlite:///{tmp_path / 'store.db'}"}.get(request.param)
    if url is None:
        url = request.getfixturevalue("pg_url")
        await truncate_store_tables(url)
    elif request.param == "sqlite":
        await migrate(url)
    async with connect(url, registry) as opened:
        yield opened


async def _cart(store: EventStore, cart: str, items: int, last: Event | None) -> None:
    events: list[Event] = [CartOpened(), *(ItemPut(sku=f"s{n}") for n in range(items))]
    await store.append(cart, [*events, *([last] if last is not None else [])])


async def _versions(store: EventStore, stream_id: str) -> list[int]:
    return [e.stream_version for e in await store.read_stream(stream_id)]


CANCELLED_CARTS = Retention(
    "Cart", max_age=timedelta(days=30), action="archive", closed_by=(CartCancelled,)
)


async def test_only_streams_closed_by_the_given_events_and_old_enough_go(
    store: EventStore,
) -> None:
    await _cart(store, "Cart-1", 3, CartCancelled())
    await _cart(store, "Cart-2", 3, CartCheckedOut())
    await _cart(store, "Cart-3", 3, None)
    await _cart(store, "Order-1", 3, CartCancelled())  # another category

    young = await apply_retention(store, [CANCELLED_CARTS])
    assert young.expired == [] and young.examined == 3

    later = datetime.now(UTC) + LATER
    report = await apply_retention(store, [CANCELLED_CARTS], now=later)
    assert report.expired == [Expiry("Cart-1", "archive", 5, 4)]
    assert await _versions(store, "Cart-1") == [5]
    assert [e.event_type for e in await store.read_stream_with_archive("Cart-1")] == [
        "CartOpened",
        "ItemPut",
        "ItemPut",
        "ItemPut",
        "CartCancelled",
    ]
    for untouched in ("Cart-2", "Cart-3", "Order-1"):
        assert await _versions(store, untouched) == [1, 2, 3, 4, 5][: 4 + (untouched != "Cart-3")]
    again = await apply_retention(store, [CANCELLED_CARTS], now=later)
    assert again.expired == [] and again.skipped == []
    assert again.summary() == (
        "retention examined 3 streams: deleted 0, truncated 0, archived 0 (0 events), skipped 0"
    )


async def test_max_count_keeps_the_last_events_of_every_stream(store: EventStore) -> None:
    await _cart(store, "Cart-1", 9, None)
    await _cart(store, "Cart-2", 1, None)
    policy = Retention("Cart", max_count=3, action="archive")
    report = await apply_retention(store, [policy])
    assert report.expired == [Expiry("Cart-1", "archive", 8, 7)]
    assert await _versions(store, "Cart-1") == [8, 9, 10]
    assert await _versions(store, "Cart-2") == [1, 2]


async def test_max_age_takes_the_events_older_than_it(store: EventStore) -> None:
    await _cart(store, "Cart-1", 2, None)
    between = datetime.now(UTC)
    await asyncio.sleep(0.01)  # recorded times are the store's clock: be on the far side
    await store.append("Cart-1", [ItemPut(sku="late"), ItemPut(sku="later")])
    policy = Retention("Cart", max_age=timedelta(days=30), action="archive")
    report = await apply_retention(store, [policy], now=between + timedelta(days=30))
    assert report.expired == [Expiry("Cart-1", "archive", 4, 3)]
    assert await _versions(store, "Cart-1") == [4, 5]


async def test_a_dry_run_lists_what_would_go_and_changes_nothing(store: EventStore) -> None:
    await _cart(store, "Cart-1", 3, CartCancelled())
    report = await apply_retention(
        store, [CANCELLED_CARTS], now=datetime.now(UTC) + LATER, dry_run=True
    )
    assert report.expired == [Expiry("Cart-1", "archive", 5, 4)]
    assert await _versions(store, "Cart-1") == [1, 2, 3, 4, 5]


async def test_two_runners_applying_the_same_policies_at_once_move_each_event_once(
    store: EventStore,
) -> None:
    for n in range(12):
        await _cart(store, f"Cart-{n}", 5, CartCancelled())
    later = datetime.now(UTC) + LATER
    first, second = await asyncio.gather(
        apply_retention(store, [CANCELLED_CARTS], now=later, page_size=5),
        apply_retention(store, [CANCELLED_CARTS], now=later, page_size=5),
    )
    moved = sum(e.events for e in [*first.expired, *second.expired])
    assert moved == 12 * 6
    for n in range(12):
        assert await _versions(store, f"Cart-{n}") == [7]
        assert len(await store.read_stream_with_archive(f"Cart-{n}")) == 7


async def test_the_scheduled_job_applies_the_policies(store: EventStore) -> None:
    await _cart(store, "Cart-1", 3, None)
    scheduler = AsyncIOScheduler(timezone=UTC)
    job = schedule_retention(
        scheduler,
        store,
        [Retention("Cart", max_count=1, action="archive")],
        every_seconds=0.05,
    )
    assert (job.id, job.max_instances, job.coalesce) == ("eventfold-retention", 1, True)
    scheduler.start()
    try:
        async with asyncio.timeout(30):
            while await _versions(store, "Cart-1") != [4]:  # noqa: ASYNC110 - the job's work
                await asyncio.sleep(0.05)
    finally:
        scheduler.shutdown(wait=False)


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        ({"category": "Cart-1", "max_count": 1}, "category"),
        ({"category": "", "max_count": 1}, "category"),
        ({"category": "Cart"}, "give max_age, max_count or both"),
        ({"category": "Cart", "max_age": timedelta(0)}, "max_age"),
        ({"category": "Cart", "max_count": 0}, "max_count"),
        ({"category": "Cart", "max_count": 1, "action": "shred"}, "action"),
        ({"category": "Cart", "max_count": 1, "closed_by": ("CartCancelled",)}, "closed_by"),
    ],
)
def test_a_policy_that_cannot_apply_is_refused_when_made(
    arguments: dict[str, object], complaint: str
) -> None:
    with pytest.raises(InvalidRetention, match=complaint):
        Retention(**arguments)  # type: ignore[arg-type]


CANCELLED_CARTS_DELETED = Retention("Cart", max_age=timedelta(days=30), closed_by=(CartCancelled,))


async def test_cancelled_carts_are_deleted_after_the_period(store: EventStore) -> None:
    await _cart(store, "Cart-1", 3, CartCancelled())
    await _cart(store, "Cart-2", 3, CartCheckedOut())
    later = datetime.now(UTC) + LATER
    assert (await apply_retention(store, [CANCELLED_CARTS_DELETED])).expired == []
    report = await apply_retention(store, [CANCELLED_CARTS_DELETED], now=later)
    assert report.expired == [Expiry("Cart-1", "delete", 6, 5)]
    assert await store.read_stream("Cart-1") == []
    assert await _versions(store, "Cart-2") == [1, 2, 3, 4, 5]
    again = await apply_retention(store, [CANCELLED_CARTS_DELETED], now=later)
    assert again.expired == [] and again.skipped == []


async def test_max_count_truncates_and_a_run_again_cuts_nothing_more(
    store: EventStore,
) -> None:
    await _cart(store, "Cart-1", 9, None)
    policy = Retention("Cart", max_count=3)
    report = await apply_retention(store, [policy])
    assert report.expired == [Expiry("Cart-1", "truncate", 8, 7)]
    kept = await store.read_stream("Cart-1")
    assert [e.stream_version for e in kept if e.event_type == "ItemPut"] == [8, 9, 10]
    again = await apply_retention(store, [policy])
    assert again.expired == []


async def test_two_runners_deleting_at_once_delete_each_stream_once(store: EventStore) -> None:
    for n in range(8):
        await _cart(store, f"Cart-{n}", 2, CartCancelled())
    later = datetime.now(UTC) + LATER
    first, second = await asyncio.gather(
        apply_retention(store, [CANCELLED_CARTS_DELETED], now=later, page_size=3),
        apply_retention(store, [CANCELLED_CARTS_DELETED], now=later, page_size=3),
    )
    deleted = sorted(e.stream_id for e in [*first.expired, *second.expired])
    assert deleted == sorted(f"Cart-{n}" for n in range(8))
    for n in range(8):
        assert await store.stream_version(f"Cart-{n}") == 5  # one StreamDeleted each
        assert await store.read_stream(f"Cart-{n}") == []


async def test_a_cart_the_customer_came_back_to_is_kept(
    store: EventStore,
) -> None:
    await _cart(store, "Cart-1", 2, CartCancelled())
    later = datetime.now(UTC) + LATER
    [planned] = (
        await apply_retention(store, [CANCELLED_CARTS_DELETED], now=later, dry_run=True)
    ).expired
    await store.append("Cart-1", [ItemPut(sku="back")])  # the customer came back
    report = await apply_retention(store, [CANCELLED_CARTS_DELETED], now=later)
    assert planned.action == "delete" and report.expired == []
    assert len(await store.read_stream("Cart-1")) == 5


async def test_serve_applies_the_apps_retention_on_its_schedule(tmp_path: Path) -> None:
    from eventfold import App

    url = f"sqlite:///{tmp_path / 'served.db'}"
    await migrate(url)
    app = App(
        events=[CartOpened, ItemPut, CartCancelled, CartCheckedOut],
        retention=[Retention("Cart", max_count=1, action="archive")],
    )
    async with app.connect(url) as running:
        await _cart(running.store, "Cart-1", 2, None)
        stop = asyncio.Event()
        serving = asyncio.create_task(
            running.serve(running.runner(holder="served"), stop, retention_every=0.05)
        )
        try:
            async with asyncio.timeout(30):
                while await _versions(running.store, "Cart-1") != [3]:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
        finally:
            stop.set()
            await asyncio.wait_for(serving, 30)


async def test_a_clock_without_a_time_zone_is_refused() -> None:
    async with connect("memory://", EventRegistry([CartOpened])) as store:
        with pytest.raises(InvalidRetention, match="time zone"):
            await apply_retention(store, [CANCELLED_CARTS], now=datetime(2030, 1, 1))


async def test_a_run_reports_its_progress_after_each_page(store: EventStore) -> None:
    for n in range(12):
        await _cart(store, f"Cart-{n:02}", 1, CartCancelled())
    seen: list[tuple[int, int]] = []
    await apply_retention(
        store,
        [CANCELLED_CARTS],
        now=datetime.now(UTC) + LATER,
        page_size=5,
        on_progress=lambda report: seen.append((report.examined, len(report.expired))),
    )
    assert seen == [(5, 5), (10, 10), (12, 12)]
