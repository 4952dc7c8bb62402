"""The shop's story: orders placed, paid and shipped, with a race between two clerks.

Each step appends with an expected version, the way a real command handler does: the
append succeeds only if nobody changed the stream since it was read.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from eventfold import (
    NO_STREAM,
    ConcurrencyError,
    Event,
    EventStore,
    GlobalPosition,
    NewEvent,
    RecordedEvent,
    connect,
)
from eventstore.migrate import migrate
from examples.shop.events import (
    OrderLine,
    OrderPlaced,
    OrderShipped,
    PaymentReceived,
    shop_events,
)

Say = Callable[[str], None]


@dataclass(frozen=True)
class ShopRun:
    """What one run did: the streams it wrote and how the clerks' race ended."""

    orders: tuple[str, ...]
    shipped_by: str
    refused_clerk: str
    log: tuple[RecordedEvent, ...]


async def run_shop(url: str, say: Say = print) -> ShopRun:
    """Migrate the store at ``url``, then place, pay and ship orders, telling ``say`` each step."""
    if not url.startswith("memory:"):
        await migrate(url)
    async with connect(url, shop_events()) as store:
        return await _story(store, say)


async def _story(store: EventStore, say: Say) -> ShopRun:
    say(f"Shop on {store.url}")
    began = await store.head()
    # Fresh order numbers, so the story can run again on the same database.
    alice, bob = (f"Order-{secrets.token_hex(3)}" for _ in range(2))

    placed = OrderPlaced(
        customer="alice",
        lines=(
            OrderLine(sku="book", quantity=2, unit_price=Decimal("12.50")),
            OrderLine(sku="pen", quantity=1, unit_price=Decimal("1.20")),
        ),
    )
    # NO_STREAM: placing an order must never land on an order that already exists.
    result = await store.append(alice, [placed], expected_version=NO_STREAM)
    say(f"1. alice places {alice} for {placed.total}: version {result.version}")

    result = await store.append(
        bob,
        [OrderPlaced(customer="bob", lines=(OrderLine(sku="mug", quantity=1,
                                                       unit_price=Decimal("8.00")),))],
        expected_version=NO_STREAM,
    )
    say(f"2. bob places {bob}: version {result.version}")

    payment = PaymentReceived(amount=placed.total, method="card")
    result = await store.append(alice, [payment], expected_version=1)
    say(f"3. alice pays {payment.amount} by {payment.method}: {alice} at version {result.version}")

    # Two clerks read the paid order at the same moment and both decide to ship it.
    version_seen = await store.stream_version(alice)
    say(f"4. clerks ann and ben both read {alice} at version {version_seen}")
    clerks = ("ann", "ben")
    shippers = [clerk for clerk in clerks if await _ship(store, alice, clerk, version_seen, say)]
    (shipped_by,) = shippers  # exactly one of them: the expected version saw to that
    (refused,) = (clerk for clerk in clerks if clerk != shipped_by)

    # A client whose reply was lost retries with the same event id: nothing changes.
    retry = NewEvent(PaymentReceived(amount=Decimal("8.00"), method="cash"))
    first = await store.append(bob, [retry], expected_version=1)
    again = await store.append(bob, [retry], expected_version=1)
    say(
        f"5. bob pays cash, the reply is lost, the client retries with event id "
        f"{str(retry.event_id)[:8]}…: version {first.version} both times "
        f"(same result: {first == again})"
    )

    say(f"6. {alice} read back:")
    for record in await store.read_stream(alice):
        say(f"   v{record.stream_version} {_describe(store.registry.decode(record))}")

    say("7. the global log since this run began:")
    log = await _read_log_after(store, began, until=first.global_position)
    for record in log:
        say(
            f"   position {record.position:>4}  {record.stream_id}@{record.stream_version}  "
            f"{record.event_type}"
        )
    return ShopRun((alice, bob), shipped_by, refused, tuple(log))


async def _ship(
    store: EventStore, stream_id: str, clerk: str, version_seen: int, say: Say
) -> bool:
    """Ship the order unless it already is; returns whether this clerk shipped it."""
    for _attempt in range(3):
        try:
            result = await store.append(
                stream_id,
                [OrderShipped(carrier="DHL", shipped_by=clerk)],
                expected_version=version_seen,
            )
        except ConcurrencyError as conflict:
            say(f"   {clerk}'s append is refused: {conflict}")
            # The usual answer to a conflict: reload and decide again on what is there now.
            records = await store.read_stream(stream_id)
            history = [store.registry.decode(record) for record in records]
            shipped = next((e for e in history if isinstance(e, OrderShipped)), None)
            if shipped is not None:
                say(f"   {clerk} reloads {stream_id}: {shipped.shipped_by} shipped it already")
                return False
            version_seen = conflict.actual
        else:
            say(f"   {clerk} ships {stream_id}: version {result.version}")
            return True
    raise RuntimeError(f"{stream_id} kept changing under {clerk}: gave up after 3 attempts")


async def _read_log_after(
    store: EventStore, position: GlobalPosition, *, until: GlobalPosition
) -> list[RecordedEvent]:
    """The global log after ``position``, batch by batch, up to and including ``until``."""
    # On PostgreSQL the log shows an event once every transaction that began before it has
    # ended, so that no reader ever passes one by: wait for our last append to show.
    while (head := await store.head()) < until:
        await store.wait_for_events(head, timeout=5.0)
    out: list[RecordedEvent] = []
    while batch := await store.read_all(after=position, limit=100):
        out.extend(batch)
        position = batch[-1].global_position
        if position >= until:
            break
    return [record for record in out if record.global_position <= until]


def _describe(event: Event) -> str:
    match event:
        case OrderPlaced(customer=customer, lines=lines):
            items = ", ".join(f"{line.quantity} x {line.sku}" for line in lines)
            return f"OrderPlaced by {customer}: {items} (total {event.total})"
        case PaymentReceived(amount=amount, method=method):
            return f"PaymentReceived: {amount} by {method}"
        case OrderShipped(carrier=carrier, shipped_by=clerk):
            return f"OrderShipped by {clerk} with {carrier}"
    return type(event).__name__
