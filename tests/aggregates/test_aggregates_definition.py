"""The Aggregate base class: recording, folding, rollback, class checks and snapshot state."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar

import pytest
from sample_shop import (
    Account,
    AccountClosed,
    Deposited,
    InvalidLine,
    Line,
    LineAdded,
    Order,
    OrderCancelled,
    OrderPaid,
    OrderPlaced,
    OrderShipped,
    Status,
    Withdrawn,
    shop_registry,
)

from eventfold.aggregates import (
    Aggregate,
    AggregateDefinitionError,
    MissingHandler,
    SnapshotStateError,
    UnregisteredHandlerEvents,
    applies,
    check_aggregate,
)
from eventfold.eventstore import Event, EventRegistry

LINE = Line(sku="tea", quantity=2, price=Decimal("3.50"))
SHIPPED_AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


class Noted(Event):
    """An event the sample aggregates do not handle."""

    note: str


# --- identity, recording, pending events ----------------------------------------------------


def test_a_new_aggregate_has_its_declared_defaults_and_no_version() -> None:
    order = Order("7")
    assert (order.id, order.version, order.pending_events) == ("7", 0, ())
    assert order.status is Status.NEW and order.lines == [] and order.total == 0
    assert order.stream_id == "Order-7" == Order.stream_id_for("7")


def test_category_defaults_to_the_class_name_and_can_be_overridden() -> None:
    assert Order.category == "Order"
    assert Account.category == "Acct"
    assert Account("x-1").stream_id == "Acct-x-1"


def test_record_applies_the_event_at_once_and_keeps_it_pending() -> None:
    order = Order("7")
    order.place("ann", [LINE])
    assert order.status is Status.PLACED
    assert order.total == Decimal("7.00")
    assert order.pending_events == (OrderPlaced(customer="ann"), LineAdded(line=LINE))
    assert order.version == 0, "version counts stored events only"


def test_each_instance_gets_its_own_copy_of_mutable_defaults() -> None:
    first, second = Order("1"), Order("2")
    first.place("ann", [LINE])
    assert second.lines == [] and second.payments == set()
    assert Order.lines == [], "the class default is untouched"


def test_vars_of_an_aggregate_is_its_state() -> None:
    account = Account("1")
    account.deposit(5)
    assert vars(account) == {"balance": 5, "movements": 1, "closed": False, "history": [5]}


def test_from_events_folds_stored_events_with_nothing_pending() -> None:
    order = Order.from_events("7", [OrderPlaced(customer="ann"), LineAdded(line=LINE)])
    assert (order.version, order.pending_events, order.total) == (2, (), Decimal("7.00"))


def test_an_event_class_deriving_from_a_handled_one_uses_its_handler() -> None:
    class BigDeposit(Deposited):
        pass

    account = Account("1")
    account.record(BigDeposit(amount=100))
    assert account.balance == 100


# --- a failing command records nothing --------------------------------------------------------


def test_a_command_that_raises_before_recording_leaves_nothing() -> None:
    account = Account("1")
    with pytest.raises(ValueError):
        account.deposit(0)
    assert account.pending_events == () and account.balance == 0


def test_a_command_that_raises_after_recording_rolls_back_events_and_state() -> None:
    order = Order("7")
    bad = Line(sku="bad", quantity=0, price=Decimal(1))
    with pytest.raises(InvalidLine):
        order.place("ann", [LINE, bad])  # records OrderPlaced and one LineAdded, then fails
    assert order.pending_events == ()
    assert (order.status, order.lines, order.customer) == (Status.NEW, [], "")
    assert order.total == 0


def test_rollback_keeps_what_earlier_commands_recorded() -> None:
    order = Order("7")
    order.place("ann", [LINE])
    with pytest.raises(InvalidLine):
        order.add_line(Line(sku="bad", quantity=-1, price=Decimal(1)))
    assert order.pending_events == (OrderPlaced(customer="ann"), LineAdded(line=LINE))
    assert order.lines == [LINE]


def test_a_handler_that_raises_leaves_nothing_recorded() -> None:
    class Fragile(Aggregate):
        count: int = 0

        def bump(self) -> None:
            self.record(Deposited(amount=1))
            self.record(Deposited(amount=-1))

        @applies(Deposited)
        def _deposited(self, event: Deposited) -> None:
            self.count += 1
            if event.amount < 0:
                raise RuntimeError("a buggy handler")

    fragile = Fragile("1")
    with pytest.raises(RuntimeError):
        fragile.bump()
    assert (fragile.count, fragile.pending_events) == (0, ())
    with pytest.raises(RuntimeError):
        fragile.record(Deposited(amount=-1))  # record outside a command is atomic too
    assert (fragile.count, fragile.pending_events) == (0, ())


def test_recording_an_event_without_handler_raises_missing_handler() -> None:
    account = Account("1")
    with pytest.raises(
        MissingHandler, match=r"Account has no handler for Noted.*@applies\(Noted\)"
    ):
        account.record(Noted(note="x"))
    assert account.pending_events == ()


def test_loading_an_event_without_handler_raises_missing_handler() -> None:
    with pytest.raises(MissingHandler):
        Account.from_events("1", [Deposited(amount=1), Noted(note="x")])


def test_record_takes_events_only() -> None:
    with pytest.raises(TypeError, match="takes an Event"):
        Account("1").record("Deposited")  # type: ignore[arg-type]


# --- class-creation checks --------------------------------------------------------------------


def test_two_handlers_for_one_event_type_fail_at_class_creation() -> None:
    with pytest.raises(AggregateDefinitionError, match="two handlers for Deposited"):

        class Twice(Aggregate):
            @applies(Deposited)
            def _one(self, event: Deposited) -> None: ...

            @applies(Deposited)
            def _two(self, event: Deposited) -> None: ...


@pytest.mark.parametrize("target", [str, Event, int, "Deposited"])
def test_a_handler_for_something_not_an_event_fails_at_class_creation(target: Any) -> None:
    with pytest.raises(AggregateDefinitionError, match="not a subclass of eventfold's Event"):

        class Wrong(Aggregate):
            @applies(target)
            def _wrong(self, event: Any) -> None: ...


def test_an_async_handler_fails_at_class_creation() -> None:
    with pytest.raises(AggregateDefinitionError, match="never async"):

        class Wrong(Aggregate):
            @applies(Deposited)
            async def _wrong(self, event: Deposited) -> None: ...


def test_state_without_a_default_fails_at_class_creation() -> None:
    with pytest.raises(AggregateDefinitionError, match=r"Wrong\.balance has no default"):

        class Wrong(Aggregate):
            balance: int


@pytest.mark.parametrize("name", ["id", "version", "record", "stream_id", "pending_events"])
def test_state_named_like_the_base_class_fails(name: str) -> None:
    with pytest.raises(AggregateDefinitionError, match="is a name of Aggregate itself"):
        type("Wrong", (Aggregate,), {"__annotations__": {name: "int"}, name: 0})


def test_defining_init_fails_at_class_creation() -> None:
    with pytest.raises(AggregateDefinitionError, match="defines __init__"):

        class Wrong(Aggregate):
            def __init__(self, id: str) -> None:
                super().__init__(id)


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("category", "Order-Line", "category"),
        ("category", "", "category"),
        ("state_version", 0, "state_version"),
        ("snapshot_every", 0, "snapshot_every"),
        ("snapshot_every", True, "snapshot_every"),
    ],
)
def test_bad_class_settings_fail_at_class_creation(
    setting: str, value: object, message: str
) -> None:
    with pytest.raises(AggregateDefinitionError, match=message):
        type("Wrong", (Aggregate,), {setting: value})


def test_class_variables_are_not_state() -> None:
    class Limited(Aggregate):
        limit: ClassVar[int] = 10
        used: int = 0

    assert vars(Limited("1")) == {"used": 0}


def test_a_subclass_inherits_handlers_and_may_replace_one() -> None:
    class Audited(Account):
        audited: int = 0

        @applies(Deposited)
        def _audited_deposit(self, event: Deposited) -> None:
            self.audited += event.amount

    audited = Audited.from_events("1", [Deposited(amount=5), Withdrawn(amount=2)])
    assert (audited.audited, audited.balance) == (5, -2)
    assert Audited.category == "Audited"
    assert Audited.handled_event_types() == Account.handled_event_types()


def test_check_aggregate_reports_handlers_for_unregistered_event_types() -> None:
    check_aggregate(Order, shop_registry())
    partial = EventRegistry([OrderPlaced, LineAdded, OrderShipped])
    with pytest.raises(UnregisteredHandlerEvents) as caught:
        check_aggregate(Order, partial)
    assert set(caught.value.event_types) == {OrderPaid, OrderCancelled}
    assert "OrderCancelled" in str(caught.value) and "OrderPaid" in str(caught.value)
    assert "register them" in str(caught.value)


def test_commands_keep_their_names_and_docstrings() -> None:
    assert Order.ship.__name__ == "ship"
    assert Order.ship.__doc__ == "Ship the order; ``at`` comes from the application edge."


# --- snapshot state ---------------------------------------------------------------------------


def _paid_order() -> Order:
    order = Order.from_events(
        "7",
        [
            OrderPlaced(customer="ann"),
            LineAdded(line=LINE),
            OrderPaid(payment_id=uuid.UUID(int=5), amount=Decimal("7.00")),
            OrderShipped(shipped_at=SHIPPED_AT),
        ],
    )
    return order


def test_snapshot_state_is_json_and_round_trips_rich_types() -> None:
    order = _paid_order()
    state = json.loads(json.dumps(order.snapshot_state()))
    assert state["status"] == "shipped" and state["total"] == "7.00"
    back = Order.from_snapshot("7", 4, state)
    assert vars(back) == vars(order)
    assert (back.version, back.pending_events, back.id) == (4, (), "7")
    assert isinstance(back.total, Decimal) and back.shipped_at == SHIPPED_AT
    assert back.payments == {uuid.UUID(int=5)} and back.status is Status.SHIPPED


def test_a_snapshot_does_not_share_state_with_its_source() -> None:
    account = Account.from_events("1", [Deposited(amount=3)])
    back = Account.from_snapshot("1", 1, account.snapshot_state())
    back.deposit(1)
    assert account.history == [3]


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"balance": 1, "movements": 1, "closed": False}, "missing fields history"),
        ({"balance": 1, "movements": 1, "closed": False, "history": [], "x": 1},
         "unexpected fields x"),
        ({"balance": "lots", "movements": 1, "closed": False, "history": []}, "field 'balance'"),
        ([1, 2], "not a dict"),
    ],
)
def test_a_state_that_does_not_fit_raises_snapshot_state_error(state: Any, message: str) -> None:
    with pytest.raises(SnapshotStateError, match=message) as caught:
        Account.from_snapshot("1", 3, state)
    assert caught.value.stream_id == "Acct-1"


def test_an_undeclared_attribute_cannot_be_snapshotted() -> None:
    class Sloppy(Aggregate):
        count: int = 0

        @applies(Deposited)
        def _deposited(self, event: Deposited) -> None:
            self.last = event.amount

    sloppy = Sloppy.from_events("1", [Deposited(amount=1)])
    with pytest.raises(AggregateDefinitionError, match="not declared state: last"):
        sloppy.snapshot_state()


def test_a_value_that_does_not_fit_its_annotation_cannot_be_snapshotted() -> None:
    account = Account("1")
    account.balance = "many"  # type: ignore[assignment]
    with pytest.raises(AggregateDefinitionError, match=r"Account.balance holds str"):
        account.snapshot_state()


def test_closing_an_account_records_an_event_without_fields() -> None:
    account = Account.from_events("1", [Deposited(amount=2)])
    account.close()
    assert account.pending_events == (AccountClosed(),) and account.closed
