"""The repository's snapshot seam: load from the latest fitting snapshot plus the tail, take
snapshots after saves through the policy, and never misapply a snapshot."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import ClassVar

import pytest
from sample_shop import Account, Order

from eventfold.aggregates import AggregateDefinitionError, AggregateNotFound, Repository
from eventfold.eventstore import EventStore
from eventfold.snapshots.protocol import Snapshot, SnapshotStore


class ListSnapshots:
    """A snapshot store in a list, with the every-N policy: enough to drive the seam."""

    def __init__(self) -> None:
        self.snapshots: list[Snapshot] = []
        self.asked: list[tuple[str, int, int | None]] = []
        self.fail_capture = False

    async def latest(
        self, stream_id: str, *, state_version: int, max_version: int | None = None
    ) -> Snapshot | None:
        self.asked.append((stream_id, state_version, max_version))
        fitting = [
            s for s in self.snapshots
            if s.stream_id == stream_id and s.state_version == state_version
            and (max_version is None or s.version <= max_version)
        ]
        return max(fitting, key=lambda s: s.version, default=None)

    async def save(self, snapshot: Snapshot) -> None:
        self.snapshots.append(snapshot)

    async def after_save(
        self,
        stream_id: str,
        *,
        previous_version: int,
        version: int,
        every: int | None,
        capture: Callable[[], Snapshot],
    ) -> None:
        if every is not None and version // every > previous_version // every:
            if self.fail_capture:
                raise RuntimeError("snapshot table is gone")
            self.snapshots.append(capture())


class SnappedAccount(Account):
    """An account snapshotted every 3 events."""

    category: ClassVar[str] = "Snapped"
    snapshot_every: ClassVar[int | None] = 3


@pytest.fixture
def snapshots() -> ListSnapshots:
    """An empty list of snapshots."""
    return ListSnapshots()


@pytest.fixture
def snap_repo(store: EventStore, snapshots: ListSnapshots) -> Repository:
    """A repository that snapshots through ``snapshots``."""
    return Repository(store, snapshots=snapshots)


def test_the_list_implements_the_protocol(snapshots: ListSnapshots) -> None:
    assert isinstance(snapshots, SnapshotStore)


async def _deposits(repo: Repository, cls: type[Account], count: int) -> None:
    await repo.create(cls, "1", lambda a: a.deposit(1))
    for _ in range(count - 1):
        await repo.update(cls, "1", lambda a: a.deposit(1))


async def test_saves_take_snapshots_by_the_class_policy(
    snap_repo: Repository, snapshots: ListSnapshots
) -> None:
    await _deposits(snap_repo, SnappedAccount, 7)
    assert [(s.stream_id, s.version, s.state_version) for s in snapshots.snapshots] == [
        ("Snapped-1", 3, 1), ("Snapped-1", 6, 1),
    ]
    assert snapshots.snapshots[-1].state == {
        "balance": 6, "movements": 6, "closed": False, "history": [1] * 6,
    }


async def test_no_policy_no_snapshots(snap_repo: Repository, snapshots: ListSnapshots) -> None:
    await _deposits(snap_repo, Account, 5)
    assert snapshots.snapshots == []


async def test_a_load_starts_from_the_latest_snapshot_and_folds_only_the_tail(
    snap_repo: Repository, snapshots: ListSnapshots
) -> None:
    await _deposits(snap_repo, SnappedAccount, 5)
    # A snapshot whose state differs from the fold shows that the load used it and
    # folded only the events after version 3.
    snapshots.snapshots = [Snapshot("Snapped-1", 3, 1, {
        "balance": 1000, "movements": 3, "closed": False, "history": [],
    })]
    loaded = await snap_repo.get(SnappedAccount, "1")
    assert (loaded.balance, loaded.history, loaded.version) == (1002, [1, 1], 5)
    assert snapshots.asked[-1] == ("Snapped-1", 1, None)


async def test_a_snapshot_at_the_head_needs_no_events(
    snap_repo: Repository, snapshots: ListSnapshots
) -> None:
    await _deposits(snap_repo, SnappedAccount, 3)
    loaded = await snap_repo.get(SnappedAccount, "1")
    assert (loaded.balance, loaded.version) == (3, 3)


async def test_a_load_as_of_a_version_uses_a_snapshot_at_or_before_it(
    snap_repo: Repository, snapshots: ListSnapshots
) -> None:
    await _deposits(snap_repo, SnappedAccount, 7)
    loaded = await snap_repo.get(SnappedAccount, "1", version=5)
    assert (loaded.balance, loaded.version) == (5, 5)
    assert snapshots.asked[-1] == ("Snapped-1", 1, 5)


async def test_a_load_as_of_a_time_folds_from_the_start(
    snap_repo: Repository, snapshots: ListSnapshots
) -> None:
    await _deposits(snap_repo, SnappedAccount, 4)
    head = (await snap_repo.store.read_stream("Snapped-1"))[-1].recorded_at
    snapshots.asked.clear()
    loaded = await snap_repo.get(SnappedAccount, "1", as_of=head)
    assert (loaded.balance, snapshots.asked) == (4, [])


class MisbehavingSnapshots(ListSnapshots):
    """Returns whatever snapshot it holds, whether it fits or not."""

    async def latest(
        self, stream_id: str, *, state_version: int, max_version: int | None = None
    ) -> Snapshot | None:
        return self.snapshots[-1] if self.snapshots else None


@pytest.mark.parametrize(
    "snapshot",
    [
        Snapshot("Snapped-1", 3, 2, {"balance": 1000, "movements": 3, "closed": False,
                                      "history": []}),
        Snapshot("Snapped-2", 3, 1, {"balance": 1000, "movements": 3, "closed": False,
                                      "history": []}),
        Snapshot("Snapped-1", 9, 1, {"balance": 1000, "movements": 3, "closed": False,
                                      "history": []}),
    ],
    ids=["other-state-version", "other-stream", "beyond-the-requested-version"],
)
async def test_a_snapshot_that_does_not_fit_is_never_applied(
    store: EventStore, snapshot: Snapshot, caplog: pytest.LogCaptureFixture
) -> None:
    misbehaving = MisbehavingSnapshots()
    repo = Repository(store, snapshots=misbehaving)
    await _deposits(repo, Account, 2)
    await _deposits(Repository(store), SnappedAccount, 5)
    misbehaving.snapshots = [snapshot]
    with caplog.at_level(logging.WARNING, logger="eventfold.aggregates"):
        loaded = await repo.get(SnappedAccount, "1", version=5)
    assert (loaded.balance, loaded.version) == (5, 5)
    assert "ignoring snapshot" in caplog.text


async def test_a_corrupt_snapshot_is_ignored_with_a_warning(
    snap_repo: Repository, snapshots: ListSnapshots, caplog: pytest.LogCaptureFixture
) -> None:
    await _deposits(snap_repo, SnappedAccount, 4)
    snapshots.snapshots = [Snapshot("Snapped-1", 3, 1, {"balance": "a lot"})]
    with caplog.at_level(logging.WARNING, logger="eventfold.aggregates"):
        loaded = await snap_repo.get(SnappedAccount, "1")
    assert (loaded.balance, loaded.version) == (4, 4)
    assert "folding all events instead" in caplog.text
    assert "field 'balance'" in caplog.text and "missing fields" in caplog.text


async def test_a_failing_snapshot_does_not_fail_the_save(
    snap_repo: Repository, snapshots: ListSnapshots, caplog: pytest.LogCaptureFixture
) -> None:
    snapshots.fail_capture = True
    with caplog.at_level(logging.WARNING, logger="eventfold.aggregates"):
        await _deposits(snap_repo, SnappedAccount, 3)
    assert (await snap_repo.get(SnappedAccount, "1")).balance == 3
    assert "could not take a snapshot of Snapped-1 at version 3" in caplog.text


async def test_snapshots_of_an_empty_stream_do_not_invent_an_aggregate(
    snap_repo: Repository,
) -> None:
    with pytest.raises(AggregateNotFound):
        await snap_repo.get(SnappedAccount, "ghost")


async def test_take_snapshot_stores_the_state_at_the_head(
    snap_repo: Repository, snapshots: ListSnapshots
) -> None:
    await _deposits(snap_repo, Account, 2)
    taken = await snap_repo.take_snapshot(Account, "1")
    assert snapshots.snapshots == [taken]
    assert (taken.stream_id, taken.version, taken.state["balance"]) == ("Acct-1", 2, 2)
    with pytest.raises(ValueError, match="no snapshot store"):
        await Repository(snap_repo.store).take_snapshot(Account, "1")


async def test_snapshot_fold_maps_stream_ids_to_their_aggregate(
    snap_repo: Repository, snapshots: ListSnapshots
) -> None:
    await _deposits(snap_repo, Account, 2)
    await _deposits(snap_repo, SnappedAccount, 4)
    fold = snap_repo.snapshot_fold(Account, SnappedAccount, Order)
    assert (await fold("Acct-1")).state["balance"] == 2
    snapped = await fold("Snapped-1")
    assert (snapped.version, snapped.state["balance"]) == (4, 4)
    assert snapshots.snapshots[-1].version == 3, "capturing stores nothing"
    with pytest.raises(AggregateDefinitionError, match="no aggregate class for stream 'Cart-1'"):
        await fold("Cart-1")
    with pytest.raises(AggregateNotFound):
        await fold("Order-9")


def test_snapshot_fold_refuses_two_classes_of_one_category(snap_repo: Repository) -> None:
    class Other(Account):
        category: ClassVar[str] = "Acct"

    with pytest.raises(AggregateDefinitionError, match="share the category 'Acct'"):
        snap_repo.snapshot_fold(Account, Other)
