"""The repository on the memory and SQLite backends: load, save, update with retries,
temporal loads, and stored events it cannot read."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sample_shop import (
    SHOP_EVENTS,
    Account,
    Deposited,
    InsufficientFunds,
    Line,
    LineAdded,
    Order,
    OrderPlaced,
    OrderShipped,
    Status,
    Withdrawn,
)

from eventfold.aggregates import (
    Aggregate,
    AggregateExists,
    AggregateNotFound,
    Repository,
    UnregisteredHandlerEvents,
    applies,
)
from eventfold.eventstore import (
    NO_STREAM,
    AppendResult,
    ConcurrencyError,
    DuplicateEventId,
    Event,
    EventDecodeError,
    EventRegistry,
    EventStore,
    ExpectedVersion,
    InvalidAppend,
    NewEvent,
    StoreUnavailable,
    StreamsConflict,
    UnknownEventType,
    keyed_event_ids,
)

TEA = Line(sku="tea", quantity=2, price=Decimal("3.50"))
NOON = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


class Noted(Event):
    """Written by a newer version of the application; this reader does not know it."""

    note: str


class Credited(Event):
    """Same stored type name as the sample ``Deposited`` but another shape."""

    event_type = "Deposited"
    cents: int


class Wallet(Aggregate):
    """Reads ``Deposited`` rows through ``Credited``: they fail validation."""

    cents: int = 0

    @applies(Credited)
    def _credited(self, event: Credited) -> None:
        self.cents += event.cents


# --- get and save -----------------------------------------------------------------------------


async def test_get_of_an_empty_stream_raises_aggregate_not_found(repo: Repository) -> None:
    with pytest.raises(AggregateNotFound, match=r"Order '404' not found: stream 'Order-404'"):
        await repo.get(Order, "404")


async def test_save_then_get_round_trips_the_state(repo: Repository) -> None:
    order = Order("7")
    order.place("ann", [TEA])
    result = await repo.save(order)
    assert result is not None and result.version == 2
    assert (order.version, order.pending_events) == (2, ())
    loaded = await repo.get(Order, "7")
    assert vars(loaded) == vars(order)
    assert (loaded.version, loaded.pending_events) == (2, ())


async def test_save_without_pending_events_writes_nothing(repo: Repository) -> None:
    assert await repo.save(Order("7")) is None
    assert await repo.store.stream_version("Order-7") == 0


async def test_save_expects_the_loaded_version(repo: Repository) -> None:
    await repo.create(Account, "1", lambda a: a.deposit(10))
    first = await repo.get(Account, "1")
    second = await repo.get(Account, "1")
    first.withdraw(3)
    await repo.save(first)
    second.withdraw(4)
    with pytest.raises(ConcurrencyError) as caught:
        await repo.save(second)
    assert (caught.value.expected, caught.value.actual) == (1, 2)
    assert second.pending_events == (Withdrawn(amount=4),), "a failed save keeps the events"


async def test_a_new_aggregate_is_saved_expecting_no_stream(repo: Repository) -> None:
    await repo.create(Account, "1", lambda a: a.deposit(1))
    again = Account("1")
    again.deposit(2)
    with pytest.raises(ConcurrencyError) as caught:
        await repo.save(again)
    assert caught.value.expected == NO_STREAM


async def test_save_stores_metadata_with_every_event(repo: Repository) -> None:
    order = Order("7")
    order.place("ann", [TEA])
    await repo.save(order, metadata={"actor": "ann", "tenant": "t1"})
    records = await repo.store.read_stream("Order-7")
    assert [(r.metadata["actor"], r.metadata["tenant"]) for r in records] == [("ann", "t1")] * 2


async def test_a_save_retried_after_a_lost_reply_stores_the_events_once(
    repo: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = repo.store
    append = store.append

    async def commit_then_lose_reply(
        stream_id: str, events: Sequence[NewEvent | Event], *, expected_version: ExpectedVersion
    ) -> AppendResult:
        await append(stream_id, events, expected_version=expected_version)
        monkeypatch.setattr(store, "append", append)
        raise StoreUnavailable(store.url, "connection lost before the reply")

    monkeypatch.setattr(store, "append", commit_then_lose_reply)
    order = Order("7")
    order.place("ann", [TEA])
    with pytest.raises(StoreUnavailable):
        await repo.save(order)
    assert len(order.pending_events) == 2
    result = await repo.save(order)
    assert result is not None and result.version == 2
    records = await store.read_stream("Order-7")
    assert [r.event_type for r in records] == ["OrderPlaced", "LineAdded"]


async def test_saving_several_aggregates_writes_them_as_one_unit(repo: Repository) -> None:
    await repo.create(Account, "1", lambda a: a.deposit(10))
    source, target, idle = await repo.get(Account, "1"), Account("2"), Account("3")
    source.withdraw(4)
    target.deposit(4)
    results = await repo.save(source, target, idle)
    assert [(r.stream_id, r.version) if r else None for r in results] == [
        ("Acct-1", 2), ("Acct-2", 1), None,
    ]
    assert results[0] is not None and results[1] is not None
    assert results[0].transaction_id == results[1].transaction_id
    assert (source.version, source.pending_events) == (2, ())
    assert (await repo.get(Account, "2")).balance == 4


async def test_saving_several_aggregates_writes_none_when_one_moved_on(
    repo: Repository,
) -> None:
    await repo.create(Account, "1", lambda a: a.deposit(10))
    source, target = await repo.get(Account, "1"), Account("2")
    await repo.update(Account, "1", lambda a: a.deposit(1))
    source.withdraw(4)
    target.deposit(4)
    with pytest.raises(ConcurrencyError) as caught:
        await repo.save(source, target)
    assert isinstance(caught.value, StreamsConflict)
    assert [(c.stream_id, c.expected, c.actual) for c in caught.value.conflicts] == [
        ("Acct-1", 1, 2),
    ]
    assert await repo.store.stream_version("Acct-2") == 0
    assert target.pending_events == (Deposited(amount=4),), "a failed save keeps the events"


async def test_saving_several_aggregates_under_a_key_stores_them_once(
    repo: Repository,
) -> None:
    key = uuid.uuid4()

    async def transfer() -> list[AppendResult | None]:
        source, target = await repo.get(Account, "1"), Account("2")
        source.withdraw(4)
        target.deposit(4)
        return await repo.save(source, target, idempotency_key=key)

    await repo.create(Account, "1", lambda a: a.deposit(10))
    first = await transfer()
    assert [r.version for r in first if r] == [2, 1]
    # Loaded afresh, the streams moved on; the call is stored already: nothing new.
    assert await transfer() == first
    stored = [r.event_id for r in await repo.store.read_stream("Acct-1")][1:]
    stored += [r.event_id for r in await repo.store.read_stream("Acct-2")]
    assert stored == keyed_event_ids(key, 2)


async def test_saving_one_aggregate_twice_in_one_call_is_refused(repo: Repository) -> None:
    account = Account("1")
    account.deposit(1)
    with pytest.raises(InvalidAppend, match="appears twice"):
        await repo.save(account, account)
    assert account.pending_events == (Deposited(amount=1),)


async def test_create_refuses_an_existing_stream(repo: Repository) -> None:
    await repo.create(Account, "1", lambda a: a.deposit(1))
    with pytest.raises(AggregateExists, match=r"Account '1' already exists .* version 1"):
        await repo.create(Account, "1", lambda a: a.deposit(2))
    assert (await repo.get(Account, "1")).balance == 1


async def test_create_accepts_an_async_command(repo: Repository) -> None:
    async def open_with(account: Account) -> None:
        await asyncio.sleep(0)  # stands for I/O done before the command, e.g. a lookup
        account.deposit(5)

    created = await repo.create(Account, "1", open_with)
    assert (created.balance, created.version) == (5, 1)


async def test_the_repository_checks_aggregates_against_the_registry(store: EventStore) -> None:
    with pytest.raises(UnregisteredHandlerEvents, match=r"Wallet handles .* Credited"):
        Repository(store, aggregates=[Order, Wallet])
    repo = Repository(store)
    with pytest.raises(UnregisteredHandlerEvents):
        await repo.get(Wallet, "1")


# --- idempotency keys -------------------------------------------------------------------------

KEY = uuid.UUID("0b4f8a52-3c1e-4d5a-9e2f-7a6b1c0d9e8f")


def test_keyed_event_ids_start_with_the_key_and_are_deterministic() -> None:
    ids = keyed_event_ids(KEY, 3)
    assert ids[0] == KEY
    assert len(set(ids)) == 3
    assert keyed_event_ids(KEY, 2) == ids[:2]


async def test_a_keyed_create_repeated_returns_the_aggregate_and_stores_once(
    repo: Repository,
) -> None:
    first = await repo.create(Order, "7", lambda o: o.place("ann", [TEA]), idempotency_key=KEY)
    again = await repo.create(Order, "7", lambda o: o.place("ann", [TEA]), idempotency_key=KEY)
    assert (again.version, again.total) == (first.version, first.total) == (2, Decimal("7.00"))
    records = await repo.store.read_stream("Order-7")
    assert [r.event_id for r in records] == keyed_event_ids(KEY, 2)


async def test_a_keyed_update_repeated_stores_once_and_returns_the_first_state(
    repo: Repository,
) -> None:
    await repo.create(Account, "1", lambda a: a.deposit(1))
    first = await repo.update(Account, "1", lambda a: a.deposit(5), idempotency_key=KEY)
    await repo.update(Account, "1", lambda a: a.deposit(100))
    again = await repo.update(Account, "1", lambda a: a.deposit(5), idempotency_key=KEY)
    assert (again.balance, again.version) == (first.balance, first.version) == (6, 2)
    assert not again.pending_events
    assert (await repo.get(Account, "1")).balance == 106
    assert await repo.store.stream_version("Acct-1") == 3


async def test_a_key_reused_for_other_events_is_refused(repo: Repository) -> None:
    await repo.create(Account, "1", lambda a: a.deposit(1), idempotency_key=KEY)
    with pytest.raises(DuplicateEventId):
        await repo.create(Account, "1", lambda a: a.deposit(2), idempotency_key=KEY)
    with pytest.raises(DuplicateEventId):
        await repo.update(Account, "1", lambda a: a.deposit(2), idempotency_key=KEY)
    with pytest.raises(DuplicateEventId):
        await repo.create(Account, "2", lambda a: a.deposit(1), idempotency_key=KEY)
    assert (await repo.get(Account, "1")).balance == 1
    assert await repo.store.stream_version("Acct-2") == 0


async def test_concurrent_keyed_updates_store_the_events_once(repo: Repository) -> None:
    await repo.create(Account, "1", lambda a: a.deposit(1))
    results = await asyncio.gather(*(
        repo.update(Account, "1", lambda a: a.deposit(5), idempotency_key=KEY)
        for _ in range(5)
    ))
    assert {(r.balance, r.version) for r in results} == {(6, 2)}
    assert await repo.store.stream_version("Acct-1") == 2


# --- update and its retries -------------------------------------------------------------------


async def test_update_loads_runs_the_command_and_saves(repo: Repository) -> None:
    await repo.create(Order, "7", lambda o: o.place("ann", [TEA]))
    shipped = await repo.update(Order, "7", lambda o: o.ship(NOON))
    assert (shipped.status, shipped.version) == (Status.SHIPPED, 3)
    assert (await repo.get(Order, "7")).shipped_at == NOON


async def test_update_of_a_missing_aggregate_raises_not_found(repo: Repository) -> None:
    with pytest.raises(AggregateNotFound):
        await repo.update(Order, "nope", lambda o: o.ship(NOON))


async def test_a_domain_error_in_update_saves_nothing(repo: Repository) -> None:
    await repo.create(Account, "1", lambda a: a.deposit(1))
    with pytest.raises(InsufficientFunds):
        await repo.update(Account, "1", lambda a: a.withdraw(5))
    assert await repo.store.stream_version("Acct-1") == 1


async def test_concurrent_updaters_all_succeed_within_bounded_retries(repo: Repository) -> None:
    await repo.create(Account, "c", lambda a: a.deposit(1))
    writers = 6
    loaded = 0
    everyone_loaded = asyncio.Event()
    attempts: list[int] = []

    def depositor(number: int) -> Any:
        first = True

        async def deposit(account: Account) -> None:
            nonlocal first, loaded
            attempts.append(number)
            if first:
                # Every writer holds the same version before any saves: a real collision.
                first = False
                loaded += 1
                if loaded == writers:
                    everyone_loaded.set()
                await everyone_loaded.wait()
            account.deposit(10 + number)

        return deposit

    results = await asyncio.gather(
        *(repo.update(Account, "c", depositor(n), retries=writers - 1) for n in range(writers))
    )
    final = await repo.get(Account, "c")
    assert final.balance == 1 + sum(10 + n for n in range(writers))
    assert final.version == 1 + writers
    assert sorted(r.version for r in results) == list(range(2, 2 + writers))
    assert len(attempts) >= 2 * writers - 1, "all but one writer retried at least once"


async def test_update_gives_up_after_its_retries_and_reraises(repo: Repository) -> None:
    await repo.create(Account, "1", lambda a: a.deposit(1))
    rival = Repository(repo.store)
    attempts = 0

    async def deposit_while_a_rival_writes(account: Account) -> None:
        nonlocal attempts
        attempts += 1
        await rival.update(Account, "1", lambda a: a.deposit(100))
        account.deposit(1)

    with pytest.raises(ConcurrencyError):
        await repo.update(Account, "1", deposit_while_a_rival_writes, retries=2)
    assert attempts == 3, "the first attempt and two retries"
    assert (await repo.get(Account, "1")).balance == 301, "only the rival's deposits landed"


async def test_update_with_no_retries_raises_on_the_first_conflict(repo: Repository) -> None:
    await repo.create(Account, "1", lambda a: a.deposit(1))
    both_loaded = asyncio.Event()
    waiting = 0

    async def deposit(account: Account) -> None:
        nonlocal waiting
        waiting += 1
        if waiting == 2:
            both_loaded.set()
        await both_loaded.wait()
        account.deposit(1)

    outcomes = await asyncio.gather(
        repo.update(Account, "1", deposit, retries=0),
        repo.update(Account, "1", deposit, retries=0),
        return_exceptions=True,
    )
    assert sorted(type(outcome).__name__ for outcome in outcomes) == [
        "Account", "ConcurrencyError",
    ]


async def test_update_with_backoff_still_converges(repo: Repository) -> None:
    await repo.create(Account, "1", lambda a: a.deposit(1))
    await asyncio.gather(
        *(repo.update(Account, "1", lambda a: a.deposit(1), retries=5, backoff=0.001)
          for _ in range(3))
    )
    assert (await repo.get(Account, "1")).balance == 4


async def test_update_refuses_negative_retries(repo: Repository) -> None:
    with pytest.raises(ValueError, match="retries"):
        await repo.update(Account, "1", lambda a: a.deposit(1), retries=-1)


# --- temporal loads ---------------------------------------------------------------------------


async def test_get_as_of_a_version_folds_the_first_k_events(repo: Repository) -> None:
    await repo.create(Order, "7", lambda o: o.place("ann", [TEA]))
    await repo.update(Order, "7", lambda o: o.ship(NOON))
    placed = await repo.get(Order, "7", version=1)
    assert (placed.status, placed.lines, placed.version) == (Status.PLACED, [], 1)
    with_line = await repo.get(Order, "7", version=2)
    assert (with_line.lines, with_line.status) == ([TEA], Status.PLACED)
    assert (await repo.get(Order, "7", version=3)).status is Status.SHIPPED
    beyond = await repo.get(Order, "7", version=99)
    assert beyond.version == 3, "a version beyond the stream gives its latest state"


async def test_get_as_of_a_version_refuses_versions_below_one(repo: Repository) -> None:
    with pytest.raises(ValueError, match="version must be >= 1"):
        await repo.get(Order, "7", version=0)


def _after(moment: datetime) -> None:
    # Spin (no sleep: microseconds) until the clock has passed `moment`, so the next
    # append is stamped strictly later than everything stored so far.
    while datetime.now(UTC) <= moment:
        pass


async def test_get_as_of_a_time_folds_the_events_recorded_by_then(repo: Repository) -> None:
    await repo.create(Order, "7", lambda o: o.place("ann", [TEA]))
    placed_at = (await repo.store.read_stream("Order-7"))[-1].recorded_at
    _after(placed_at)
    await repo.update(Order, "7", lambda o: o.ship(NOON))
    shipped_record = (await repo.store.read_stream("Order-7"))[-1]
    assert shipped_record.recorded_at > placed_at

    then = await repo.get(Order, "7", as_of=placed_at)
    assert (then.status, then.version, then.lines) == (Status.PLACED, 2, [TEA])
    now = await repo.get(Order, "7", as_of=shipped_record.recorded_at)
    assert (now.status, now.version) == (Status.SHIPPED, 3)
    both = await repo.get(Order, "7", as_of=shipped_record.recorded_at, version=1)
    assert both.version == 1
    with pytest.raises(AggregateNotFound, match="as of"):
        await repo.get(Order, "7", as_of=placed_at - timedelta(days=1))


async def test_get_as_of_a_naive_time_is_refused(repo: Repository) -> None:
    with pytest.raises(ValueError, match="no timezone"):
        await repo.get(Order, "7", as_of=datetime(2024, 1, 1))


async def test_an_aggregate_loaded_in_the_past_cannot_overwrite_the_present(
    repo: Repository,
) -> None:
    await repo.create(Account, "1", lambda a: a.deposit(5))
    await repo.update(Account, "1", lambda a: a.withdraw(5))
    past = await repo.get(Account, "1", version=1)
    past.withdraw(5)
    with pytest.raises(ConcurrencyError):
        await repo.save(past)


# --- stored events the reader cannot read -------------------------------------------------------


async def _written_with(store: EventStore, writer: EventRegistry, stream_id: str,
                        events: list[Event]) -> None:
    """Append with a newer application's registry, then read with the original one."""
    reader = store.registry
    store.registry = writer
    try:
        await store.append(stream_id, events)
    finally:
        store.registry = reader


async def test_an_unknown_stored_event_type_names_type_version_stream_position(
    repo: Repository,
) -> None:
    newer = EventRegistry([*SHOP_EVENTS, Noted])
    await repo.create(Account, "1", lambda a: a.deposit(5))
    await _written_with(repo.store, newer, "Acct-1", [Noted(note="hi"), Deposited(amount=1)])
    with pytest.raises(UnknownEventType) as caught:
        await repo.get(Account, "1")
    error = caught.value
    assert (error.event_type, error.version, error.stream_id) == ("Noted", 1, "Acct-1")
    assert error.position is not None and "skip_unknown=True" in str(error)


async def test_skip_unknown_passes_over_unknown_types_and_keeps_the_version(
    repo: Repository,
) -> None:
    newer = EventRegistry([*SHOP_EVENTS, Noted])
    await repo.create(Account, "1", lambda a: a.deposit(5))
    await _written_with(repo.store, newer, "Acct-1", [Noted(note="hi"), Deposited(amount=1)])
    tolerant = await repo.get(Account, "1", skip_unknown=True)
    assert (tolerant.balance, tolerant.version) == (6, 3)
    tolerant.withdraw(6)
    await repo.save(tolerant)  # the version counted the skipped event: no false conflict

    tolerant_repo = Repository(repo.store, skip_unknown=True)
    assert (await tolerant_repo.get(Account, "1")).balance == 0
    with pytest.raises(UnknownEventType):
        await tolerant_repo.get(Account, "1", skip_unknown=False)


async def test_stored_data_that_fails_validation_names_the_field(store: EventStore) -> None:
    await store.append("Wallet-1", [Deposited(amount=5)])
    reader = EventRegistry([Credited])
    store.registry = reader
    with pytest.raises(
        EventDecodeError, match=r"'Deposited' v1 \(stream 'Wallet-1'.*field 'cents'"
    ):
        await Repository(store).get(Wallet, "1")


async def test_a_category_keeps_aggregates_apart(repo: Repository) -> None:
    await repo.create(Account, "1", lambda a: a.deposit(5))
    await repo.create(Order, "1", lambda o: o.place("ann", [TEA]))
    assert (await repo.get(Account, "1")).balance == 5
    assert [r.event_type for r in await repo.store.read_stream("Order-1")] == [
        OrderPlaced.event_type, LineAdded.event_type,
    ]
    assert OrderShipped.event_type not in {
        r.event_type for r in await repo.store.read_stream("Acct-1")
    }
