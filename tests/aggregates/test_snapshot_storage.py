"""Snapshot stores on every backend: the policy, temporal fit, pruning, corruption, sweep."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import ClassVar

import pytest
import sqlalchemy as sa
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sample_shop import Account, Line, Order

from eventfold.aggregates import Repository
from eventfold.eventstore import EventStore
from eventfold.eventstore.schema import snapshots as snapshot_table
from eventfold.snapshots import (
    MemorySnapshotStore,
    Snapshot,
    SnapshotStorage,
    SqlSnapshotStore,
    open_snapshots,
    schedule_sweep,
    sweep,
)


@pytest.fixture
async def storage(store_url: str) -> AsyncIterator[SnapshotStorage]:
    """The snapshot store beside each backend's event store."""
    snapshots = open_snapshots(store_url)
    yield snapshots
    await snapshots.close()


@pytest.fixture
def snap_repo(store: EventStore, storage: SnapshotStorage) -> Repository:
    """A repository that takes and uses snapshots."""
    return Repository(store, snapshots=storage)


class EveryThree(Account):
    """An account snapshotted every three events."""

    category: ClassVar[str] = "Acct"
    snapshot_every = 3


def test_memory_urls_get_a_memory_store_and_others_sql(store_url: str) -> None:
    expected = MemorySnapshotStore if store_url.startswith("memory") else SqlSnapshotStore
    assert isinstance(open_snapshots(store_url), expected)


async def test_latest_fits_state_version_and_max_version(storage: SnapshotStorage) -> None:
    for version, state_version in [(3, 1), (6, 1), (9, 2)]:
        await storage.save(Snapshot("Acct-1", version, state_version, {"balance": version}))
    assert (await storage.latest("Acct-1", state_version=1)) == Snapshot(
        "Acct-1", 6, 1, {"balance": 6}
    )
    fit = await storage.latest("Acct-1", state_version=1, max_version=5)
    assert fit is not None and fit.version == 3
    assert await storage.latest("Acct-1", state_version=1, max_version=2) is None
    assert await storage.latest("Acct-1", state_version=3) is None
    assert await storage.latest("Acct-2", state_version=1) is None
    assert await storage.latest_versions(["Acct-1", "Acct-2"]) == {"Acct-1": 9}


async def test_saving_the_same_version_replaces_it(storage: SnapshotStorage) -> None:
    await storage.save(Snapshot("Acct-1", 3, 1, {"balance": 1}))
    await storage.save(Snapshot("Acct-1", 3, 1, {"balance": 2}))
    latest = await storage.latest("Acct-1", state_version=1)
    assert latest is not None and latest.state == {"balance": 2}


async def test_prune_keeps_the_newest_and_drops_stale_state_versions(
    storage: SnapshotStorage,
) -> None:
    for version in (3, 6, 9):
        await storage.save(Snapshot("Acct-1", version, 1, {}))
    await storage.save(Snapshot("Order-1", 4, 1, {}))
    await storage.save(Snapshot("Order-2", 4, 2, {}))
    assert await storage.prune(keep=2) == 1
    assert (await storage.latest("Acct-1", state_version=1, max_version=3)) is None
    assert await storage.prune(state_versions={"Order": 2}) == 2
    assert await storage.latest_versions(["Acct-1", "Order-1", "Order-2"]) == {
        "Acct-1": 9, "Order-2": 4,
    }
    with pytest.raises(ValueError, match="keep"):
        await storage.prune(keep=0)


async def test_every_n_policy_and_load_from_the_snapshot(
    snap_repo: Repository, storage: SnapshotStorage
) -> None:
    account = EveryThree("1")
    for amount in (5, 6, 7, 8):
        account.deposit(amount)
    await snap_repo.save(account)
    assert await storage.latest_versions([account.stream_id]) == {account.stream_id: 4}
    await snap_repo.update(EveryThree, "1", lambda a: a.withdraw(1))
    await snap_repo.update(EveryThree, "1", lambda a: a.withdraw(1))
    assert await storage.latest_versions([account.stream_id]) == {account.stream_id: 6}
    loaded = await snap_repo.get(EveryThree, "1")
    plain = await Repository(snap_repo.store).get(EveryThree, "1")
    assert loaded.snapshot_state() == plain.snapshot_state()
    assert loaded.version == plain.version == 6


async def test_a_snapshot_of_an_old_state_version_is_ignored_and_replaced(
    snap_repo: Repository, storage: SnapshotStorage
) -> None:
    account = EveryThree("1")
    for amount in (1, 2, 3):
        account.deposit(amount)
    await snap_repo.save(account)
    await storage.save(Snapshot("Acct-1", 3, EveryThree.state_version + 1, {"balance": -999}))
    loaded = await snap_repo.get(EveryThree, "1")
    assert loaded.balance == 6
    await snap_repo.take_snapshot(EveryThree, "1")
    latest = await storage.latest("Acct-1", state_version=EveryThree.state_version)
    assert latest is not None and latest.state["balance"] == 6


async def test_a_corrupt_snapshot_row_is_ignored_with_a_warning(
    snap_repo: Repository, storage: SnapshotStorage, caplog: pytest.LogCaptureFixture,
) -> None:
    account = EveryThree("1")
    for amount in (1, 2, 3):
        account.deposit(amount)
    await snap_repo.save(account)
    if not isinstance(storage, SqlSnapshotStore):
        await storage.save(Snapshot("Acct-1", 3, 1, {"balance": "not a number"}))
    else:
        async with storage.engine.begin() as conn:
            if conn.dialect.name == "sqlite":
                await conn.execute(sa.text("UPDATE eventfold_snapshots SET state = '{not json'"))
            else:
                await conn.execute(snapshot_table.update().values(state=[1, 2, 3]))
    with caplog.at_level(logging.WARNING):
        loaded = await snap_repo.get(EveryThree, "1")
    assert loaded.balance == 6
    assert "snapshot" in caplog.text


async def test_sweep_snapshots_streams_with_long_tails(
    snap_repo: Repository, storage: SnapshotStorage
) -> None:
    for n, deposits in enumerate([1, 5, 12], start=1):
        account = Account(str(n))
        for amount in range(deposits):
            account.deposit(amount + 1)
        await snap_repo.save(account)
    order = Order("9")
    order.place("ann", [Line(sku="a", quantity=1, price=Decimal("2.50"))])
    await snap_repo.save(order)

    take = snap_repo.snapshot_fold(Account)
    report = await sweep(snap_repo.store, storage, take, threshold=5, categories=["Acct"])
    assert report.examined == 3
    assert sorted((s.stream_id, s.version) for s in report.taken) == [("Acct-2", 5), ("Acct-3", 12)]
    again = await sweep(snap_repo.store, storage, take, threshold=5, categories=["Acct"])
    assert again.taken == []

    everything = await sweep(snap_repo.store, storage, take, threshold=1)
    assert [s.stream_id for s in everything.taken] == ["Acct-1"]
    assert "Order-9" in everything.failed


async def test_schedule_sweep_adds_one_non_overlapping_job(
    snap_repo: Repository, storage: SnapshotStorage
) -> None:
    scheduler = AsyncIOScheduler()
    job = schedule_sweep(
        scheduler, snap_repo.store, storage, snap_repo.snapshot_fold(Account),
        threshold=10, every_seconds=60,
    )
    assert job.max_instances == 1
    assert job.coalesce is True
    assert [j.id for j in scheduler.get_jobs()] == ["eventfold-snapshot-sweep"]


@settings(
    max_examples=25, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(amounts=st.lists(st.integers(min_value=1, max_value=100), min_size=1, max_size=25),
       every=st.integers(min_value=1, max_value=7))
async def test_snapshot_plus_tail_equals_the_full_fold_through_the_store(
    snap_repo: Repository, storage: SnapshotStorage, amounts: list[int], every: int
) -> None:
    account_id = f"p{len(amounts)}x{every}x{sum(amounts)}"
    cls: type[EveryThree] = type("Snapshotted", (EveryThree,), {"snapshot_every": every})
    stream_id = cls.stream_id_for(account_id)
    if await snap_repo.store.stream_version(stream_id):
        return  # hypothesis repeated an example on this store
    for index, amount in enumerate(amounts):
        def deposit(account: Account, amount: int = amount) -> None:
            account.deposit(amount)

        if index == 0:
            await snap_repo.create(cls, account_id, deposit)
        else:
            await snap_repo.update(cls, account_id, deposit)
    from_snapshot = await snap_repo.get(cls, account_id)
    full = await Repository(snap_repo.store).get(cls, account_id)
    assert from_snapshot.snapshot_state() == full.snapshot_state()
    assert from_snapshot.version == full.version == len(amounts)
