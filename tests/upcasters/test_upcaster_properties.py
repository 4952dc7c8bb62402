"""Properties of upcasting: an old event read today equals one written today; chains compose."""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from upcaster_samples import (
    Money,
    OrderCreated,
    OrderPlaced,
    OrderPlacedAndPaid,
    OrderPlacedV1,
    OrderPlacedV2,
    PaymentReceived,
    build_upcasters,
    reader_registry,
    writer_registry,
)

from eventfold.eventstore import Event, EventRegistry, NewEvent, StoredShape
from eventfold.eventstore.encoding import encode_batch

UPCASTERS = build_upcasters()
READER = reader_registry(UPCASTERS)
OLD = writer_registry()
OLD_V2 = EventRegistry([OrderPlacedV2])

# The store refuses NUL characters (PostgreSQL cannot keep them in JSON) and lone
# surrogates (not UTF-8).
order_ids = st.text(
    st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), min_size=1, max_size=20
)
amounts = st.integers(min_value=-(2**53), max_value=2**53)
currencies = st.sampled_from(["EUR", "USD", "CHF", "JPY"])


def stored(registry: EventRegistry, event: Event) -> StoredShape:
    """What the store writes for ``event``: its type, version and JSON data."""
    [encoded] = encode_batch(registry, "Order-1", [NewEvent(event)])
    return encoded.event_type, encoded.schema_version, json.loads(encoded.data)


def read_today(old: StoredShape) -> list[tuple[str, int, Event]]:
    """What today's code reads of a stored shape: upcast, then validated by today's class."""
    out = []
    for name, version, data in UPCASTERS.upcast(*old):
        cls = READER.class_for(name)
        assert cls is not None and cls.schema_version == version
        out.append((name, version, cls.model_validate(data)))
    return out


def written_today(*events: Event) -> list[tuple[str, int, Event]]:
    """What today's code reads of events it wrote itself."""
    out = []
    for event in events:
        name, version, data = stored(READER, event)
        out.append((name, version, type(event).model_validate(data)))
    return out


@given(order_id=order_ids, amount=amounts)
def test_a_v1_event_upcast_equals_the_same_order_written_at_the_current_version(
    order_id: str, amount: int
) -> None:
    old = stored(OLD, OrderPlacedV1(order_id=order_id, amount=amount))
    today = OrderPlaced(order_id=order_id, total=Money(cents=amount, currency="EUR"))
    assert read_today(old) == written_today(today)


@given(order_id=order_ids, amount=amounts, currency=currencies)
def test_a_v2_event_upcast_equals_the_same_order_written_at_the_current_version(
    order_id: str, amount: int, currency: str
) -> None:
    old = stored(OLD_V2, OrderPlacedV2(order_id=order_id, amount=amount, currency=currency))
    today = OrderPlaced(order_id=order_id, total=Money(cents=amount, currency=currency))
    assert read_today(old) == written_today(today)


@given(order_id=order_ids, amount=amounts)
def test_renamed_and_split_events_equal_what_is_written_today(order_id: str, amount: int) -> None:
    placed = OrderPlaced(order_id=order_id, total=Money(cents=amount, currency="EUR"))
    paid = PaymentReceived(order_id=order_id, cents=amount)
    renamed = stored(OLD, OrderCreated(order_id=order_id, amount=amount))
    split = stored(OLD, OrderPlacedAndPaid(order_id=order_id, amount=amount))
    assert read_today(renamed) == written_today(placed)
    assert read_today(split) == written_today(placed, paid)


def upcast_step_by_step(shape: StoredShape) -> list[StoredShape]:
    """The chain as single steps, each step's shapes carried on separately."""
    following = UPCASTERS.step(*shape)
    if following == [shape]:
        return [shape]
    return [end for step in following for end in upcast_step_by_step(step)]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=10,
)
starts = st.sampled_from([
    ("OrderPlaced", 1), ("OrderPlaced", 2), ("OrderCreated", 1), ("OrderPlacedAndPaid", 1),
])


@given(start=starts, order_id=order_ids, amount=amounts, currency=currencies,
       extra=st.dictionaries(st.text(max_size=5).map(lambda k: f"x_{k}"), json_values,
                             max_size=3))
def test_chains_compose_and_never_change_their_input(
    start: tuple[str, int], order_id: str, amount: int, currency: str, extra: dict[str, Any]
) -> None:
    data = {"order_id": order_id, "amount": amount, "currency": currency, **extra}
    before = copy.deepcopy(data)
    whole = UPCASTERS.upcast(start[0], start[1], data)
    # Applying steps 1 -> 2 then 2 -> 3 equals the chain 1 -> 3; and the first step
    # followed by the chain from where it lands equals the whole chain.
    assert upcast_step_by_step((start[0], start[1], data)) == whole
    assert [
        end for middle in UPCASTERS.step(start[0], start[1], data)
        for end in UPCASTERS.upcast(*middle)
    ] == whole
    assert data == before
    assert all(READER.current_version(name) == version for name, version, _ in whole)
