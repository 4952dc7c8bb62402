"""Properties of the write model over random command sequences (hypothesis).

- load as of version k equals folding the first k events;
- save then load gives back the state the commands built;
- snapshot state round-trips through JSON;
- a rejected command leaves the aggregate exactly as it was.
"""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aggregate_backends import BACKENDS, migrated_sqlite
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sample_shop import Account, Line, Order, shop_registry

from eventfold.aggregates import Aggregate, DomainError, Repository
from eventfold.eventstore import Event, connect

Op = Callable[[Any], None]

# --- command strategies -------------------------------------------------------------------------

amounts = st.integers(min_value=1, max_value=50)
# NUL (PostgreSQL cannot store it in JSON) and lone surrogates (not UTF-8) are refused by
# the store everywhere (conformance suite).
_text = st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=8)
account_ops: st.SearchStrategy[tuple[str, Op]] = st.one_of(
    amounts.map(lambda n: (f"deposit({n})", lambda a: a.deposit(n))),
    st.integers(min_value=0, max_value=80).map(
        lambda n: (f"withdraw({n})", lambda a: a.withdraw(n))
    ),
    st.just(("close()", lambda a: a.close())),
    st.just(("deposit(0)", lambda a: a.deposit(0))),  # rejected: not positive
)

prices = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("999.99"), places=2)
lines = st.builds(
    Line, sku=st.text("abcxyz", min_size=1, max_size=5),
    quantity=st.integers(min_value=-1, max_value=9), price=prices,
)
moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
order_ops: st.SearchStrategy[tuple[str, Op]] = st.one_of(
    st.tuples(_text, st.lists(lines, max_size=3)).map(
        lambda args: (f"place{args}", lambda o: o.place(*args))
    ),
    lines.map(lambda line: (f"add_line({line})", lambda o: o.add_line(line))),
    st.tuples(st.uuids(), prices).map(lambda args: (f"pay{args}", lambda o: o.pay(*args))),
    moments.map(lambda at: (f"ship({at})", lambda o: o.ship(at))),
    _text.map(lambda reason: (f"cancel({reason!r})", lambda o: o.cancel(reason))),
)


def batches(
    ops: st.SearchStrategy[tuple[str, Op]],
) -> st.SearchStrategy[list[list[tuple[str, Op]]]]:
    """Commands grouped into saves: each inner list is run, then saved at once."""
    return st.lists(st.lists(ops, min_size=1, max_size=4), min_size=1, max_size=8)


def run(aggregate: Aggregate, op: Op) -> None:
    """Run a command; a rejected one must leave the aggregate untouched."""
    before = copy.deepcopy(vars(aggregate))
    pending = aggregate.pending_events
    try:
        op(aggregate)
    except (DomainError, ValueError):
        assert vars(aggregate) == before, "a rejected command changed the state"
        assert aggregate.pending_events == pending, "a rejected command left events"


# --- stores ---------------------------------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL per backend; SQLite and PostgreSQL databases are shared by the examples,
    which use fresh aggregate ids."""
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return migrated_sqlite(tmp_path, "properties.db")
    pg_url: str = request.getfixturevalue("pg_url")
    return pg_url


PROPERTY_SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


async def _play(
    url: str, cls: type[Aggregate], plan: list[list[tuple[str, Op]]]
) -> tuple[str, Aggregate, list[Event], Repository, Any]:
    """Run the plan against a repository; return what it stored."""
    aggregate_id = str(uuid.uuid4())
    store = await connect(url, shop_registry())
    try:
        repo = Repository(store)
        aggregate = cls(aggregate_id)
        stored: list[Event] = []
        for batch in plan:
            for _, op in batch:
                run(aggregate, op)
            pending = list(aggregate.pending_events)
            await repo.save(aggregate)
            stored.extend(pending)
            assert aggregate.version == len(stored)
    except BaseException:
        await store.close()
        raise
    return aggregate_id, aggregate, stored, repo, store


@PROPERTY_SETTINGS
@given(plan=batches(account_ops))
def test_load_as_of_version_k_equals_folding_the_first_k_events(
    url: str, plan: list[list[tuple[str, Op]]]
) -> None:
    async def check() -> None:
        aggregate_id, _, stored, repo, store = await _play(url, Account, plan)
        try:
            for k in range(1, len(stored) + 1):
                loaded = await repo.get(Account, aggregate_id, version=k)
                folded = Account.from_events(aggregate_id, stored[:k])
                assert vars(loaded) == vars(folded), f"state differs at version {k}"
                assert loaded.version == folded.version == k
        finally:
            await store.close()

    asyncio.run(check())


@PROPERTY_SETTINGS
@given(plan=batches(order_ops))
def test_save_then_load_round_trips_the_state(
    url: str, plan: list[list[tuple[str, Op]]]
) -> None:
    async def check() -> None:
        aggregate_id, built, stored, repo, store = await _play(url, Order, plan)
        try:
            if not stored:
                return
            loaded = await repo.get(Order, aggregate_id)
            assert vars(loaded) == vars(built)
            assert (loaded.version, loaded.pending_events) == (len(stored), ())
        finally:
            await store.close()

    asyncio.run(check())


@settings(max_examples=150, deadline=None)
@given(plan=st.lists(order_ops, max_size=12))
def test_snapshot_state_round_trips_through_json(plan: list[tuple[str, Op]]) -> None:
    order = Order("7")
    for _, op in plan:
        run(order, op)
    state = json.loads(json.dumps(order.snapshot_state()))
    back = Order.from_snapshot("7", 5, state)
    assert vars(back) == vars(order)
    assert back.snapshot_state() == state


@settings(max_examples=150, deadline=None)
@given(plan=st.lists(account_ops, max_size=20), split=st.integers(min_value=0, max_value=20))
def test_snapshot_plus_tail_equals_the_full_fold(plan: list[tuple[str, Op]], split: int) -> None:
    account = Account("1")
    for _, op in plan:
        run(account, op)
    events = list(account.pending_events)
    cut = min(split, len(events))
    head = Account.from_events("1", events[:cut])
    resumed = Account.from_snapshot("1", cut, json.loads(json.dumps(head.snapshot_state())))
    resumed._fold(events[cut:])
    assert vars(resumed) == vars(Account.from_events("1", events)) == vars(account)


def test_the_strategies_produce_rejections_and_successes() -> None:
    # Guards the properties against vacuity: the plans must exercise both paths.
    account = Account("1")
    run(account, lambda a: a.deposit(5))
    run(account, lambda a: a.withdraw(50))
    assert [type(e).__name__ for e in account.pending_events] == ["Deposited"]
