"""Aggregates of deleted and truncated streams, on every backend: a soft-deleted aggregate
loads as not found (its snapshots do not bring it back) and a new one of the same id is
saved after it; a truncated stream loads from a snapshot taken at or after the cut."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import ClassVar

import pytest
from sample_shop import Account

from eventfold.aggregates import AggregateNotFound, Repository
from eventfold.eventstore import EventStore, StreamTombstoned
from eventfold.snapshots import SnapshotStorage, open_snapshots


class SnappedAccount(Account):
    """An account snapshotted every two events."""

    category: ClassVar[str] = "Acct"
    snapshot_every = 2


@pytest.fixture
async def snapshots(store_url: str) -> AsyncIterator[SnapshotStorage]:
    storage = open_snapshots(store_url)
    yield storage
    await storage.close()


async def _opened(repo: Repository, *amounts: int) -> SnappedAccount:
    account = SnappedAccount("a1")
    for amount in amounts:
        account.deposit(amount)
    await repo.save(account)
    return account


async def test_a_soft_deleted_aggregate_loads_as_not_found_even_from_its_snapshot(
    store: EventStore, snapshots: SnapshotStorage
) -> None:
    repo = Repository(store, snapshots=snapshots)
    await _opened(repo, 5, 7)
    assert await snapshots.latest("Acct-a1", state_version=SnappedAccount.state_version)
    await store.delete_stream("Acct-a1", expected_version=2)
    with pytest.raises(AggregateNotFound):
        await repo.get(SnappedAccount, "a1")


async def test_a_new_aggregate_is_saved_over_a_soft_deleted_one(
    store: EventStore, snapshots: SnapshotStorage
) -> None:
    repo = Repository(store, snapshots=snapshots)
    await _opened(repo, 5, 7)
    await store.delete_stream("Acct-a1")
    await _opened(repo, 1)
    loaded = await repo.get(SnappedAccount, "a1")
    assert loaded.balance == 1 and loaded.version == 4


async def test_a_hard_deleted_aggregate_cannot_be_saved_again(store: EventStore) -> None:
    repo = Repository(store)
    await _opened(repo, 5)
    await store.delete_stream("Acct-a1", hard=True)
    with pytest.raises(AggregateNotFound):
        await repo.get(SnappedAccount, "a1")
    with pytest.raises(StreamTombstoned):
        await _opened(repo, 1)


async def test_a_truncated_stream_loads_from_its_snapshot(
    store: EventStore, snapshots: SnapshotStorage
) -> None:
    repo = Repository(store, snapshots=snapshots)
    await _opened(repo, 1, 2, 3, 4)  # snapshot at version 4
    await store.truncate_stream("Acct-a1", 5)
    account = await repo.get(SnappedAccount, "a1")
    assert account.balance == 10 and account.version == 5
    account.deposit(5)
    await repo.save(account)
    assert (await repo.get(SnappedAccount, "a1")).balance == 15


async def test_scavenge_removes_the_snapshots_of_what_it_removes(
    store: EventStore, snapshots: SnapshotStorage, store_url: str
) -> None:
    # A memory store's snapshots live apart from it (a MemorySnapshotStore), and stay;
    # the repository ignores those older than the stream's first readable version.
    in_store = not store_url.startswith("memory")
    repo = Repository(store, snapshots=snapshots)
    await _opened(repo, 1, 2, 3, 4)  # snapshots at versions 2 and 4
    kept = SnappedAccount("a2")
    for amount in (1, 2):
        kept.deposit(amount)
    await repo.save(kept)
    await store.truncate_stream("Acct-a1", 4)  # the snapshot at 3 or later stays useful
    await store.scavenge()
    state_version = SnappedAccount.state_version
    latest = await snapshots.latest("Acct-a1", state_version=state_version, max_version=3)
    assert latest is None or not in_store  # the one at version 2 went with the events
    assert (await repo.get(SnappedAccount, "a1")).balance == 10
    await store.delete_stream("Acct-a1")
    await store.scavenge()
    gone = await snapshots.latest("Acct-a1", state_version=state_version) is None
    assert gone == in_store
    with pytest.raises(AggregateNotFound):
        await repo.get(SnappedAccount, "a1")
    assert await snapshots.latest("Acct-a2", state_version=state_version) is not None
