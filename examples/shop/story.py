"""The shop's story: one business day, told step by step as it happens.

Each run is a new day with order ids of its own (``<run>-1`` ... ``<run>-5``), so runs
can follow each other on the same database: the warehouse is restocked at the start of
each, and the read models, per-customer totals included, keep every day's orders. The
day goes like this:

1. the warehouse restocks; 2. an order that release 1 accepted just before the upgrade
is stored as ``OrderPlaced`` v1 (without currency); 3. four customers check out, each
checkout placing the order and reserving its payment in one transaction, and the
fulfilment process reserves each order's stock as one unit of work - one order is out of
stock: none of its lines is reserved, its payment is voided and it is cancelled at once;
4. the payment provider charges two orders, declines one (its stock is released, the order
cancelled) and never answers the last; 5. fifteen minutes later
(fired at once, with ``DeadlinePoller.fire_due(now=...)``) the timeout cancels that
order, and the provider's late answer is refused; 6. the read models, the causation tree
of the declined order, a snapshot sweep and a blue/green rebuild are shown; 7. a customer
is forgotten and the customer directory rebuilt; 8. a cart given up today is deleted by
the retention policy, as if its 30 days had passed.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial

from eventfold import App, EventStore, RecordedEvent, Runner, Running, migrate
from eventfold.eventstore import FORGOTTEN, GlobalPosition, masked
from eventfold.eventstore.causation import caused_by, correlated
from eventfold.projections import rebuild
from eventfold.projections.trace import TraceNode, trace
from examples.shop.app import build_app
from examples.shop.cart import CART_KEPT_FOR, Cart
from examples.shop.checkout import check_out
from examples.shop.customers import Customer, CustomerDirectory, CustomerRow, list_customers
from examples.shop.events import OrderLine
from examples.shop.fulfilment import PAYMENT_TIMEOUT, Fulfilment
from examples.shop.inventory import InventoryItem
from examples.shop.legacy import OrderPlacedV1, release_1
from examples.shop.order import Order
from examples.shop.payment import Payment, PaymentNotPending
from examples.shop.read_models import (
    CustomerTotal,
    OrderList,
    OrderRow,
    customer_totals,
    list_orders,
)

Say = Callable[[str], None]

STOCK_LEVELS = {"book": 10, "pen": 40, "mug": 3}
"""What the warehouse has available at the start of each day."""

PRICES = {"book": Decimal("12.50"), "pen": Decimal("1.20"), "mug": Decimal("8.00")}

CUSTOMERS = {
    "alice": ("Alice Archer", "alice@example.org", "1 Orchard Road, Leeds"),
    "bob": ("Bob Baker", "bob@example.org", "22 Mill Street, York"),
    "carol": ("Carol Cooper", "carol@example.org", "3 Canal Walk, Bath"),
    "dave": ("Dave Dawson", "dave@example.org", "12 Harbour Lane, Bristol"),
}
"""Each customer's name, e-mail and shipping address: personal data, registered on the
customer's first day."""

DAVE_MOVED_TO = "7 Quay Street, Bristol"
"""Where dave has his parcels sent after correcting his address on his first day."""

FORGOTTEN_CUSTOMER = "dave"
"""The customer who asks to be forgotten at the end of the day."""

SWEEP_THRESHOLD = 4
"""The sweep snapshots inventory streams that grew by this many events since their last
snapshot (``InventoryItem.snapshot_every`` takes one every 20 at save time as well)."""


@dataclass(frozen=True)
class ShopRun:
    """What one run did, for its callers and tests."""

    run: str
    """The run's tag, the prefix of its order ids."""
    orders: dict[str, str]
    """Order id by role: legacy, paid, declined, overdue, out_of_stock."""
    order_list: tuple[OrderRow, ...]
    """This run's rows of the order list, after the day."""
    totals: tuple[CustomerTotal, ...]
    """The per-customer totals of this run's customers (every run's orders)."""
    fired: int
    """Timeouts the poller fired."""
    late_answer: str
    """Why the provider's late answer was refused."""
    trace: tuple[str, ...]
    """The causation tree of the declined order, one line per event."""
    snapshots: tuple[str, ...]
    """Streams the sweep snapshotted, with their versions (``InventoryItem-book@6``)."""
    rebuilt_rows: int
    """Rows of the order list the blue/green rebuild produced (equal to those before)."""
    relayed_through: GlobalPosition | None
    """The relay's position at the end (None without a broker)."""
    customers: tuple[CustomerRow, ...] = ()
    """The customer directory after dave was forgotten and it was rebuilt."""
    deleted_carts: tuple[str, ...] = ()
    """The cancelled carts the retention policy deleted (this day's)."""


def _line(sku: str, quantity: int) -> OrderLine:
    return OrderLine(sku=sku, quantity=quantity, unit_price=PRICES[sku])


async def run_shop(
    url: str, *, broker: str | None = None, topic: str = "shop", say: Say = print
) -> ShopRun:
    """Run one day of the shop on the store at ``url``, telling ``say`` what happens.

    ``broker`` (amqp://..., nats://... or kafka://...) adds a relay publishing every event
    there, to the exchange, stream or topic ``topic``. The database is migrated first (a
    no-op when it is).
    """
    if not url.startswith("memory:"):
        await migrate(url)
    app = build_app(broker, topic=topic)
    async with app.connect(url) as running:
        try:
            return await _day(app, running, url, broker, say)
        finally:
            for subscriber in app.subscribers:
                close = getattr(subscriber, "close", None)
                if close is not None:
                    await close()


async def _day(
    app: App, running: Running, url: str, broker: str | None, say: Say
) -> ShopRun:
    store, repository, engine = running.store, running.repository, running.engine
    fulfilment = next(s for s in app.subscribers if isinstance(s, Fulfilment))
    run = secrets.token_hex(2)
    ids = {role: f"{run}-{n}" for n, role in enumerate(
        ["legacy", "paid", "declined", "overdue", "out_of_stock"], start=1
    )}
    say(f"Shop on {store.url}: day {run}, orders {ids['legacy']} to {ids['out_of_stock']}")

    say("\n1. The warehouse restocks")
    for sku, level in STOCK_LEVELS.items():
        await _restock(running, sku, level)
        item = await repository.get(InventoryItem, sku)
        say(f"   {sku:<5} {item.available:>3} available  ({item.stream_id} at v{item.version})")

    say("\n2. An order release 1 accepted just before the upgrade (OrderPlaced v1, no currency)")
    legacy = OrderPlacedV1(order_id=ids["legacy"], customer="alice", lines=(_line("pen", 1),))
    async with release_1(store, url) as old:
        with correlated(f"checkout-{ids['legacy']}"):
            await old.append(Order.stream_id_for(ids["legacy"]), [legacy])
    async with release_1(store, url) as old:
        [stored] = await old.read_stream(Order.stream_id_for(ids["legacy"]))
    [today] = await store.read_stream(Order.stream_id_for(ids["legacy"]))
    say(f"   stored:  {stored.event_type} v{stored.schema_version} {_json(stored.data)}")
    say(f"   read as: {today.event_type} v{today.schema_version} currency={today.data['currency']}")

    runner = running.runner()
    async with runner:
        say("\n3. Customers check out")
        await _register_customers(running, say)
        checkouts = [
            ("paid", "alice", [_line("book", 2), _line("pen", 1)]),
            ("declined", "bob", [_line("mug", 1)]),
            ("overdue", "carol", [_line("book", 1), _line("pen", 2)]),
            ("out_of_stock", "dave", [_line("book", 1), _line("mug", 5)]),
        ]
        together = 0
        for role, customer, lines in checkouts:
            order_id = ids[role]
            with correlated(f"checkout-{order_id}"):
                order, saved = await check_out(repository, order_id, customer, lines)
            together += len({result.transaction_id for result in saved if result}) == 1
            items = ", ".join(f"{line.quantity} x {line.sku}" for line in lines)
            say(f"   {order_id}  {customer:<5}  {items:<18} {order.total:>6} {order.currency}")
        say(f"   {together} of {len(checkouts)} checkouts placed the order and reserved its "
            "payment in one transaction: Repository.save(order, payment)")
        await settle(store, runner)
        say("   the fulfilment process reserves each order's stock (and asks for a payment "
            "where none was), one unit of work per order:")
        for role in ("legacy", "paid", "declined", "overdue", "out_of_stock"):
            say(f"   {ids[role]}  {await _progress(running, fulfilment, ids[role])}")
        short = ids["out_of_stock"]
        reserved = [record for record in await store.read_stream(
            InventoryItem.stream_id_for("book")) if record.data.get("order_id") == short]
        payment = await repository.get(Payment, short)
        say(f"   {short}: the short mug line kept the book line from being reserved "
            f"({len(reserved)} reservations); the payment is {payment.status}")

        say("\n4. The payment provider answers")
        answers: dict[str, Callable[[Payment], None]] = {
            ids["legacy"]: lambda p: p.charge(f"ch_{run}_1"),
            ids["paid"]: lambda p: p.charge(f"ch_{run}_2"),
            ids["declined"]: lambda p: p.fail("card declined"),
        }
        for order_id, answer in answers.items():
            [requested, *_] = await store.read_stream(Payment.stream_id_for(order_id))
            # The provider's callback names the request it answers: its event is caused
            # by the request, and joins the order's correlation.
            with caused_by(requested):
                await repository.update(Payment, order_id, answer)
        await settle(store, runner)
        for order_id in answers:
            payment = await repository.get(Payment, order_id)
            say(f"   {order_id}  {payment.status:<8} -> "
                f"{await _progress(running, fulfilment, order_id)}")
        say(f"   {ids['overdue']}  no answer -> "
            f"{await _progress(running, fulfilment, ids['overdue'])}")

        minutes = int(PAYMENT_TIMEOUT.total_seconds() // 60)
        say(f"\n5. {minutes} minutes later the payment timeout fires")
        poller = running.deadline_poller()
        assert poller is not None  # the App has a process manager
        # A deployment runs the poller (eventfold run does); the story moves the clock.
        later = datetime.now(UTC) + PAYMENT_TIMEOUT + timedelta(minutes=1)
        fired = await poller.fire_due(now=later)
        await settle(store, runner)
        say(f"   fired {fired}: {ids['overdue']}  "
            f"{await _progress(running, fulfilment, ids['overdue'])}")
        try:
            await repository.update(
                Payment, ids["overdue"], lambda p: p.charge(f"ch_{run}_late")
            )
            late_answer = "accepted"
        except PaymentNotPending as refused:
            late_answer = str(refused)
        say(f"   the provider's late answer is refused: {late_answer}")

        say("\n6. Read model order_list (this day's orders)")
        rows = await list_orders(engine, ids.values())
        for row in rows:
            why = f"  ({row.reason})" if row.reason else ""
            say(f"   {row.order_id}  {row.customer:<5}  {row.status:<9} "
                f"{row.total:>6} {row.currency}{why}")

        customers = sorted({row.customer for row in rows})
        say("\n7. Read model customer_totals (these customers, every day so far)")
        say("   customer  placed  confirmed  cancelled  spent")
        totals = await customer_totals(engine, customers)
        for total in totals:
            say(f"   {total.customer:<8}  {total.placed:>6}  {total.confirmed:>9}  "
                f"{total.cancelled:>9}  {total.spent} {total.currency}")

        say(f"\n8. What bob's declined order caused "
            f"(eventfold events trace checkout-{ids['declined']})")
        forest = await trace(store, f"checkout-{ids['declined']}")
        tree = _render(forest)
        for text in tree:
            say(f"   {text}")

        say("\n9. Snapshots: the sweep snapshots inventory streams with "
            f"{SWEEP_THRESHOLD}+ new events")
        report = await running.sweep_snapshots(
            threshold=SWEEP_THRESHOLD, categories=[InventoryItem.category]
        )
        taken = tuple(f"{s.stream_id}@{s.version}" for s in report.taken)
        say(f"   examined {report.examined} streams, took {len(taken)}: "
            f"{', '.join(taken) or 'none'}")
        for snapshot in report.taken[:1]:
            item = await repository.get(InventoryItem, snapshot.stream_id.split("-", 1)[1])
            say(f"   {item.stream_id} now loads from its snapshot at v{snapshot.version} "
                f"plus {item.version - snapshot.version} events: {item.available} available")

        say("\n10. Rebuild order_list blue/green while the runner serves it")
        order_list = app.projections.get(OrderList.name)
        before = await list_orders(engine)
        progress = await rebuild(store, engine, order_list)
        after = await list_orders(engine)
        same = "identical" if after == before else "DIFFERENT"
        say(f"   replayed {progress.events_done} events into a shadow table and swapped it in: "
            f"{len(after)} orders, {same} to the live table before")
        if after != before:
            raise AssertionError("the rebuilt order list differs from the live one")

        directory = await _forget(app, running, ids["out_of_stock"], say)

        say(f"\n12. A cart given up today is deleted {CART_KEPT_FOR.days} days later")
        deleted_carts = await _expire_carts(running, run, say)
        await settle(store, runner)  # the subscribers (a relay) see the carts' events too

        relayed: GlobalPosition | None = None
        relay = next((s for s in app.subscribers if not isinstance(s, Fulfilment)), None)
        if relay is not None and broker is not None:
            [state] = [s for s in runner.states() if s.name == relay.name]
            relayed = state.checkpoint
            say(f"\n13. Relay {relay.name}: every event up to position {tuple(relayed)} "
                f"published to {masked(broker)} and confirmed")

    return ShopRun(
        run=run, orders=ids, order_list=tuple(rows), totals=tuple(totals), fired=fired,
        late_answer=late_answer, trace=tuple(tree), snapshots=taken,
        rebuilt_rows=len(after), relayed_through=relayed, customers=tuple(directory),
        deleted_carts=deleted_carts,
    )


async def _expire_carts(running: Running, run: str, say: Say) -> tuple[str, ...]:
    """Erin fills a cart and gives it up, Finn keeps his open; the retention job, run as if
    the period had passed, deletes Erin's cart alone."""
    given_up, kept = f"{run}-erin", f"{run}-finn"
    repository = running.repository
    await repository.create(Cart, given_up, lambda cart: cart.open("erin"))
    await repository.update(Cart, given_up, lambda cart: cart.put("mug", 2))
    await repository.update(Cart, given_up, Cart.cancel)
    await repository.create(Cart, kept, lambda cart: cart.open("finn"))
    say(f"   {Cart.stream_id_for(given_up)} cancelled, {Cart.stream_id_for(kept)} still open")
    # A deployment runs the job (eventfold run --retention-every); the story moves the clock.
    later = datetime.now(UTC) + CART_KEPT_FOR + timedelta(days=1)
    report = await running.apply_retention(now=later)
    say(f"   {report.summary()}")
    deleted = tuple(e.stream_id for e in report.expired if e.action == "delete")
    for stream_id in deleted:
        say(f"   {stream_id}: deleted (reads as not found; StreamDeleted is in the log)")
    still = await repository.get(Cart, kept)
    say(f"   {still.stream_id}: kept, open for {still.customer}")
    return deleted


async def _register_customers(running: Running, say: Say) -> None:
    """Register the customers new today; dave corrects his address right after."""
    new: list[str] = []
    for customer_id, (name, email, address) in CUSTOMERS.items():
        if await running.store.stream_version(Customer.stream_id_for(customer_id)):
            continue
        register = partial(Customer.register, name=name, email=email, address=address)
        await running.repository.create(Customer, customer_id, register)
        new.append(customer_id)
    if FORGOTTEN_CUSTOMER in new:
        await running.repository.update(
            Customer, FORGOTTEN_CUSTOMER, lambda customer: customer.move(DAVE_MOVED_TO)
        )
    say(f"   registered today: {', '.join(new) or 'nobody new'} (name, e-mail and address "
        "are personal data, sealed with each customer's own key)")


async def _forget(
    app: App, running: Running, order_id: str, say: Say
) -> list[CustomerRow]:
    """Dave asks to be forgotten: destroy his key, rebuild the directory, show what is left."""
    who = FORGOTTEN_CUSTOMER
    say(f"\n11. {who} asks to be forgotten (eventfold forget {who})")
    forgetting = await running.forget(who)
    if forgetting.already_forgotten:
        say(f"   forgotten on an earlier day: his {forgetting.events} events read as "
            f"{FORGOTTEN!r}")
    else:
        say(f"   his key is destroyed: his personal data in {forgetting.events} events of "
            f"{len(forgetting.streams)} stream(s) reads as {FORGOTTEN!r} from now on")
    directory = app.projections.get(CustomerDirectory.name)
    await rebuild(running.store, running.engine, directory)
    customers = await list_customers(running.engine, CUSTOMERS)
    say("   customer_directory, rebuilt (it copied the data):")
    for row in customers:
        say(f"   {row.customer_id:<5}  {row.name:<12}  {row.email:<17}  {row.address}")
    order = await running.repository.get(Order, order_id)
    customer = await running.repository.get(Customer, who)
    say(f"   everything still folds: Customer-{who} at v{customer.version}, his order "
        f"{order_id} {order.status} ({order.total} {order.currency})")
    return customers


async def _restock(running: Running, sku: str, level: int) -> None:
    """Bring the product to ``level`` units available (creating its stream on day one)."""
    repository = running.repository
    if await running.store.stream_version(InventoryItem.stream_id_for(sku)) == 0:
        await repository.create(InventoryItem, sku, lambda item: item.restock_to(level))
    else:
        await repository.update(InventoryItem, sku, lambda item: item.restock_to(level))


async def settle(store: EventStore, runner: Runner) -> None:
    """Wait until every subscriber handled the log, including what their commands appended."""
    while True:
        head = await store.committed_head()
        await runner.wait_until(head, timeout=60)
        if await store.committed_head() == head:
            return


async def _progress(running: Running, fulfilment: Fulfilment, order_id: str) -> str:
    """One line on where an order's fulfilment stands."""
    instance = await fulfilment.instance(running.engine, order_id)
    order = await running.repository.get(Order, order_id)
    if instance is None:
        return f"order {order.status}"
    if instance.status == "active":
        payment = await running.repository.get(Payment, order_id)
        reserved = ", ".join(step.data["sku"] for step in instance.steps if step.data)
        return f"stock reserved ({reserved}), payment {payment.status}: waiting"
    if instance.status == "compensated":
        return f"compensated ({instance.reason}): order {order.status}"
    return f"order {order.status}"


def _render(forest: Sequence[TraceNode]) -> list[str]:
    """The causation tree as text lines, drawn with box characters."""
    lines: list[str] = []

    def draw(node: TraceNode, prefix: str, branch: str, below: str) -> None:
        lines.append(f"{prefix}{branch}{_describe(node.record)}")
        for index, child in enumerate(node.children):
            last = index == len(node.children) - 1
            draw(child, prefix + below, "└─ " if last else "├─ ", "   " if last else "│  ")

    for root in forest:
        draw(root, "", "", "")
    return lines


def _describe(record: RecordedEvent) -> str:
    data = record.data
    detail = next(
        (str(data[key]) for key in ("reason", "sku") if isinstance(data.get(key), str)), ""
    )
    return (f"{record.event_type} {record.stream_id}@{record.stream_version}"
            + (f" ({detail})" if detail else ""))


def _json(data: dict[str, object]) -> str:
    return json.dumps(data, separators=(", ", ": "))
