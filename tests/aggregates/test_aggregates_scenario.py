"""given/when/then specifications of the sample domain, and of the scenario helper itself."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sample_shop import (
    Account,
    AccountClosed,
    AccountIsClosed,
    Deposited,
    EmptyOrder,
    InsufficientFunds,
    InvalidLine,
    Line,
    LineAdded,
    Order,
    OrderAlreadyShipped,
    OrderCancelled,
    OrderNotPlaced,
    OrderPaid,
    OrderPlaced,
    OrderShipped,
    Status,
    Withdrawn,
    shop_registry,
)

from eventfold.aggregates import Aggregate, UnregisteredHandlerEvents, applies, scenario
from eventfold.eventstore import Event, EventRegistry, UnregisteredEvent

TEA = Line(sku="tea", quantity=2, price=Decimal("3.50"))
CUP = Line(sku="cup", quantity=1, price=Decimal("9.00"))
NOON = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

order = scenario(Order, "7", registry=shop_registry())
placed_order = order.given(OrderPlaced(customer="ann"), LineAdded(line=TEA))
account = scenario(Account, "1")


# --- orders -----------------------------------------------------------------------------------


def test_placing_an_order_records_it_and_its_lines() -> None:
    placed = order.when(lambda o: o.place("ann", [TEA, CUP])).then(
        OrderPlaced(customer="ann"), LineAdded(line=TEA), LineAdded(line=CUP)
    )
    assert placed.total == Decimal("16.00")


def test_an_order_needs_lines() -> None:
    order.when(lambda o: o.place("ann", [])).then_raises(EmptyOrder)


def test_an_invalid_line_rejects_the_whole_placement() -> None:
    bad = Line(sku="bad", quantity=0, price=Decimal(1))
    order.when(lambda o: o.place("ann", [TEA, bad])).then_raises(InvalidLine, match="bad")


def test_a_placed_order_ships() -> None:
    shipped = placed_order.when(lambda o: o.ship(NOON)).then(OrderShipped(shipped_at=NOON))
    assert shipped.status is Status.SHIPPED and shipped.shipped_at == NOON


def test_a_shipped_order_does_not_ship_again() -> None:
    placed_order.given(OrderShipped(shipped_at=NOON)).when(lambda o: o.ship(NOON)).then_raises(
        OrderAlreadyShipped
    )


def test_a_new_order_cannot_ship() -> None:
    order.when(lambda o: o.ship(NOON)).then_raises(OrderNotPlaced)


def test_a_shipped_order_cannot_be_cancelled() -> None:
    placed_order.given(OrderShipped(shipped_at=NOON)).when(
        lambda o: o.cancel("too late")
    ).then_raises(OrderAlreadyShipped)


def test_a_placed_order_can_be_cancelled() -> None:
    placed_order.when(lambda o: o.cancel("changed my mind")).then(
        OrderCancelled(reason="changed my mind")
    )


def test_a_payment_is_recorded_with_its_id() -> None:
    payment = uuid.UUID(int=9)
    paid = placed_order.when(lambda o: o.pay(payment, Decimal("7.00"))).then(
        OrderPaid(payment_id=payment, amount=Decimal("7.00"))
    )
    assert paid.payments == {payment}


# --- accounts ---------------------------------------------------------------------------------


def test_a_withdrawal_within_the_balance_is_recorded() -> None:
    account.given(Deposited(amount=10)).when(lambda a: a.withdraw(4)).then(Withdrawn(amount=4))


def test_a_withdrawal_beyond_the_balance_is_refused() -> None:
    account.given(Deposited(amount=3)).when(lambda a: a.withdraw(4)).then_raises(
        InsufficientFunds, match="balance 3 < 4"
    )


def test_a_closed_account_takes_no_deposit() -> None:
    account.given(AccountClosed()).when(lambda a: a.deposit(1)).then_raises(AccountIsClosed)


def test_a_command_may_record_nothing() -> None:
    def nothing(a: Account) -> None:
        assert a.balance == 5

    account.given(Deposited(amount=5)).when(nothing).then_nothing()


# --- the helper's own failure messages ---------------------------------------------------------


def test_then_shows_expected_and_actual_events_and_the_first_difference() -> None:
    with pytest.raises(AssertionError) as caught:
        account.given(Deposited(amount=10)).when(lambda a: a.withdraw(4)).then(Withdrawn(amount=5))
    message = str(caught.value)
    assert "Account 'Acct-1': the command recorded other events than expected" in message
    assert "expected:\n  1. Withdrawn(amount=5)\nactual:\n  1. Withdrawn(amount=4)" in message
    assert "first difference at #1 (Withdrawn): amount: expected 5, got 4" in message


def test_then_reports_missing_and_unexpected_events() -> None:
    with pytest.raises(AssertionError, match="1 expected event\\(s\\) missing at the end"):
        account.when(lambda a: a.deposit(1)).then(Deposited(amount=1), Deposited(amount=2))
    with pytest.raises(AssertionError, match="1 unexpected event\\(s\\) at the end"):
        account.when(lambda a: a.deposit(1)).then()
    with pytest.raises(AssertionError, match="expected Deposited, got Withdrawn"):
        account.given(Deposited(amount=1)).when(lambda a: a.withdraw(1)).then(Deposited(amount=1))


def test_then_reports_a_command_that_raised() -> None:
    with pytest.raises(AssertionError, match=r"but it raised InsufficientFunds: balance 0 < 4"):
        account.when(lambda a: a.withdraw(4)).then(Withdrawn(amount=4))


def test_then_raises_reports_a_command_that_succeeded() -> None:
    with pytest.raises(
        AssertionError,
        match=r"expected InsufficientFunds, but the command succeeded and recorded\n"
        r"  1. Deposited\(amount=1\)",
    ):
        account.when(lambda a: a.deposit(1)).then_raises(InsufficientFunds)


def test_then_raises_reports_another_error_and_a_wrong_message() -> None:
    with pytest.raises(AssertionError, match="expected AccountIsClosed, but the command raised "
                       "InsufficientFunds"):
        account.when(lambda a: a.withdraw(4)).then_raises(AccountIsClosed)
    with pytest.raises(AssertionError, match="does not match 'overdrawn'"):
        account.when(lambda a: a.withdraw(4)).then_raises(InsufficientFunds, match="overdrawn")


def test_then_raises_catches_events_left_behind_by_an_unwrapped_command() -> None:
    # An aggregate whose command records through a private helper called from outside
    # any command is the one way to leave events pending when it raises.
    class Leaky(Aggregate):
        n: int = 0

        @applies(Deposited)
        def _deposited(self, event: Deposited) -> None:
            self.n += 1

    def leak(leaky: Leaky) -> None:
        leaky.record(Deposited(amount=1))
        raise InsufficientFunds("after recording")

    with pytest.raises(AssertionError, match="left events pending"):
        scenario(Leaky).when(leak).then_raises(InsufficientFunds)


def test_given_events_must_survive_json_like_in_the_store() -> None:
    class Lossy(Event):
        amount: float
        extra: Any = None

    class Holder(Aggregate):
        amount: float = 0.0

        @applies(Lossy)
        def _lossy(self, event: Lossy) -> None:
            self.amount = event.amount

    with pytest.raises(AssertionError, match=r"given event #1 .* does not survive storage as JSON"):
        scenario(Holder).given(Lossy(amount=float("nan"))).when(lambda h: None).then()
    with pytest.raises(AssertionError, match="given event #2 changes when stored as JSON"):
        scenario(Holder).given(Lossy(amount=1), Lossy(amount=2, extra=(1, 2))).when(
            lambda h: None
        ).then()


def test_with_a_registry_events_must_be_registered() -> None:
    registry = EventRegistry([Deposited, Withdrawn, AccountClosed])
    with pytest.raises(UnregisteredHandlerEvents):
        scenario(Order, registry=registry)

    class Stray(Event):
        pass

    with pytest.raises(UnregisteredEvent):
        scenario(Account, registry=registry).given(Stray()).when(lambda a: None).then()


def test_a_scenario_needs_a_command_and_a_synchronous_one() -> None:
    with pytest.raises(TypeError, match=r"call \.when"):
        account.then()

    async def deposit(a: Account) -> None:
        a.deposit(1)

    with pytest.raises(AssertionError, match="returned an awaitable"):
        account.when(deposit).then(Deposited(amount=1))


async def test_a_scenario_runs_inside_async_tests_too() -> None:
    account.given(Deposited(amount=2)).when(lambda a: a.withdraw(2)).then(Withdrawn(amount=2))


def test_scenarios_are_immutable_and_share_their_given() -> None:
    base = account.given(Deposited(amount=1))
    base.given(Deposited(amount=2))
    assert base.history == (Deposited(amount=1),)
