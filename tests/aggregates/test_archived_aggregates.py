"""Aggregates whose events were archived, on every backend: a load folds the archived
events too (the hot table alone would give a wrong state), whether or not a snapshot
covers them, and loads up to a version or a time reach into the archive."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sample_shop import Account

from eventfold.aggregates import AggregateNotFound, Repository
from eventfold.eventstore import EventStore
from eventfold.snapshots import SnapshotStorage, open_snapshots


@pytest.fixture
async def snapshots(store_url: str) -> AsyncIterator[SnapshotStorage]:
    storage = open_snapshots(store_url)
    yield storage
    await storage.close()


async def _account(repo: Repository, *amounts: int) -> Account:
    account = Account("a1")
    for amount in amounts:
        account.deposit(amount)
    await repo.save(account)
    return account


async def test_a_load_folds_the_archived_events(repo: Repository, store: EventStore) -> None:
    await _account(repo, 1, 2, 3, 4)
    assert await store.archive_stream("Acct-a1") == 3
    account = await repo.get(Account, "a1")
    assert (account.balance, account.version, account.history) == (10, 4, [1, 2, 3, 4])


async def test_an_archived_prefix_loads_and_takes_appends(
    repo: Repository, store: EventStore
) -> None:
    await _account(repo, 1, 2, 3, 4)
    await store.archive_stream("Acct-a1", before=3)
    account = await repo.get(Account, "a1")
    assert (account.balance, account.version) == (10, 4)
    account.deposit(5)
    await repo.save(account)
    assert (await repo.get(Account, "a1")).balance == 15


async def test_a_load_from_a_snapshot_below_the_archived_events_folds_them(
    store: EventStore, snapshots: SnapshotStorage
) -> None:
    repo = Repository(store, snapshots=snapshots)
    account = await _account(repo, 1, 2)
    await repo.take_snapshot(Account, "a1")
    account.deposit(3)
    account.deposit(4)
    await repo.save(account)
    await store.archive_stream("Acct-a1")
    loaded = await repo.get(Account, "a1")
    assert (loaded.balance, loaded.version) == (10, 4)


async def test_loads_up_to_a_version_or_a_time_reach_into_the_archive(
    repo: Repository, store: EventStore
) -> None:
    await _account(repo, 1, 2, 3, 4)
    await store.archive_stream("Acct-a1")
    assert (await repo.get(Account, "a1", version=2)).balance == 3
    assert (await repo.get(Account, "a1", as_of=datetime.now(UTC))).balance == 10
    with pytest.raises(AggregateNotFound):
        await repo.get(Account, "a1", as_of=datetime(2000, 1, 1, tzinfo=UTC))
