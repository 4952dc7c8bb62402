"""The shop's day end to end: on memory, SQLite (twice in one file) and PostgreSQL, as
``python -m examples.shop``, and relaying to the real RabbitMQ and NATS of the machine and
to Kafka (tests/kafka_broker.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from decimal import Decimal
from pathlib import Path

import pytest

from eventfold import RecordedEvent, connect
from eventfold.eventstore.engine import create_engine
from eventfold.eventstore.migrate import migrate
from eventfold.messaging.inbox import Inbox
from examples.shop.app import build_app
from examples.shop.story import ShopRun, run_shop

ROOT = Path(__file__).resolve().parents[2]
RABBITMQ_URL = os.environ.get("EVENTFOLD_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
NATS_URL = os.environ.get("EVENTFOLD_TEST_NATS_URL", "nats://127.0.0.1:4222")


async def run(url: str, **options: str) -> tuple[ShopRun, str]:
    said: list[str] = []
    result = await run_shop(url, say=said.append, **options)
    return result, "\n".join(said)


def check_day(day: ShopRun, text: str) -> None:
    """What every day of the shop does, whatever the store."""
    ids = day.orders
    assert [(row.order_id, row.customer, row.status, row.total, row.reason)
            for row in day.order_list] == [
        (ids["legacy"], "alice", "confirmed", Decimal("1.20"), None),
        (ids["paid"], "alice", "confirmed", Decimal("26.20"), None),
        (ids["declined"], "bob", "cancelled", Decimal("8.00"), "payment failed: card declined"),
        (ids["overdue"], "carol", "cancelled", Decimal("14.90"), "no payment within 15 minutes"),
        (ids["out_of_stock"], "dave", "cancelled", Decimal("52.50"),
         "out of stock: 5 x mug wanted, 2 available"),
    ]
    assert {row.currency for row in day.order_list} == {"EUR"}
    assert day.fired == 1
    assert day.late_answer.startswith(f"payment {ids['overdue']} is voided")
    declined = ids["declined"]
    # The checkout wrote the order and the payment request (two roots of the
    # correlation); the fulfilment's reservation was caused by the order.
    assert [text.split(" InventoryItem")[0] for text in day.trace] == [
        f"OrderPlaced Order-{declined}@1",
        "└─ StockReserved",
        f"PaymentRequested Payment-{declined}@1",
        f"└─ PaymentFailed Payment-{declined}@2 (card declined)",
        "   ├─ StockReleased",
        f"   └─ OrderCancelled Order-{declined}@2 (payment failed: card declined)",
    ]
    assert "4 of 4 checkouts placed the order and reserved its payment in one" in text
    assert "the short mug line kept the book line from being reserved (0 reservations); " \
        "the payment is voided" in text
    assert day.rebuilt_rows >= 5
    [stored] = [said for said in text.splitlines() if "stored:" in said]
    assert stored.startswith("   stored:  OrderPlaced v1 {") and '"currency"' not in stored
    assert "read as: OrderPlaced v2 currency=EUR" in text
    assert "identical to the live table before" in text


def totals_of(day: ShopRun) -> dict[str, tuple[int, int, int, Decimal]]:
    return {t.customer: (t.placed, t.confirmed, t.cancelled, t.spent) for t in day.totals}


async def test_a_day_on_memory() -> None:
    day, text = await run("memory://")
    check_day(day, text)
    assert totals_of(day) == {
        "alice": (2, 2, 0, Decimal("27.40")), "bob": (1, 0, 1, Decimal("0.00")),
        "carol": (1, 0, 1, Decimal("0.00")), "dave": (1, 0, 1, Decimal("0.00")),
    }
    assert day.snapshots == ("InventoryItem-book@4", "InventoryItem-pen@5")
    assert day.relayed_through is None


async def test_two_days_in_one_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    first, text = await run(url)
    check_day(first, text)
    second, text = await run(url)  # migrating again is a no-op; a new day has new ids
    check_day(second, text)
    assert set(first.orders.values()).isdisjoint(second.orders.values())
    assert totals_of(second)["alice"] == (4, 4, 0, Decimal("54.80"))  # both days
    assert second.rebuilt_rows == 10
    async with connect(url, build_app().registry) as store:
        assert len(await store.list_streams(category="Order")) == 10


@pytest.mark.postgres
async def test_a_day_on_postgres(shop_pg_url: str) -> None:
    day, text = await run(shop_pg_url)
    check_day(day, text)
    assert day.snapshots == ("InventoryItem-book@4", "InventoryItem-pen@5")


def test_python_dash_m_runs_it_on_the_default_sqlite_file(tmp_path: Path) -> None:
    """As the README says: ``python -m examples.shop`` writes eventfold.db where it runs."""
    env = {key: value for key, value in os.environ.items() if key != "EVENTFOLD_DATABASE_URL"}
    env["PYTHONPATH"] = str(ROOT)
    for _ in range(2):  # and again on the same file
        done = subprocess.run([sys.executable, "-m", "examples.shop"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("Shop on sqlite:///eventfold.db: day ")
        assert "compensated (payment failed: card declined): order cancelled" in done.stdout
    assert (tmp_path / "eventfold.db").exists()


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--database", "postgresql://x:pw@127.0.0.1:1/x",
         "error: event store at postgresql://x:***@127.0.0.1:1/x"),
        ("--broker", "redis://127.0.0.1", "error: cannot relay to 'redis://127.0.0.1'"),
    ],
)
def test_a_bad_option_is_one_error_line(
    tmp_path: Path, option: str, value: str, message: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "examples.shop", "--database", f"sqlite:///{tmp_path}/s.db",
         option, value],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 1
    assert done.stderr.startswith(message)
    assert done.stderr.count("\n") == 1 and "pw" not in done.stderr


# --- relaying to the real brokers -----------------------------------------------------------


def require(url: str, default_port: int, what: str) -> None:
    """Fail (never skip) when the broker does not accept connections."""
    host_port = url.split("://", 1)[1].split("@")[-1].split("/")[0]
    host, _, port = host_port.partition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port or default_port)), 2).close()
    except OSError as exc:
        pytest.fail(f"{what} is not reachable at {url} ({exc}): start it, or run "
                    "`bash .ci/run`, which starts it", pytrace=False)


class Received:
    """A consumer's handler: records each relayed envelope, in the inbox's transaction."""

    def __init__(self) -> None:
        self.records: list[RecordedEvent] = []

    async def __call__(self, record: RecordedEvent, conn: object) -> None:
        self.records.append(record)


async def consumer_inbox(tmp_path: Path) -> Inbox:
    """The inbox of another service, in a database of its own."""
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    await migrate(url)
    return Inbox(create_engine(url), "billing")


async def check_relayed(url: str, day: ShopRun, received: Received) -> None:
    """Every event of the store reached the consumer once, in per-stream order."""
    async with connect(url, build_app().registry) as store:
        log = await store.read_all(limit=10_000)
    assert day.relayed_through == log[-1].global_position
    assert sorted(r.event_id for r in received.records) == sorted(r.event_id for r in log)
    for stream in {r.stream_id for r in log}:
        versions = [r.stream_version for r in received.records if r.stream_id == stream]
        assert versions == sorted(versions), stream


async def test_a_day_relayed_to_rabbitmq(tmp_path: Path) -> None:
    from eventfold.messaging.rabbitmq import RabbitMQConsumer

    require(RABBITMQ_URL, 5672, "RabbitMQ")
    topic = f"shop-test-{uuid.uuid4().hex[:8]}"
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    inbox = await consumer_inbox(tmp_path)
    received = Received()
    consumer = RabbitMQConsumer(inbox, received, queue=topic, url=RABBITMQ_URL, exchange=topic)
    await consumer.start()  # bound before the relay publishes
    try:
        day, text = await run(url, broker=RABBITMQ_URL, topic=topic)
        check_day(day, text)
        assert f"Relay {topic}-to-rabbitmq: every event" in text
        async with connect(url, build_app().registry) as store:
            count = len(await store.read_all(limit=10_000))
        await consumer.wait_until(lambda stats: stats.processed == count, timeout=30)
        await check_relayed(url, day, received)
        kinds = {r.event_type for r in received.records}
        assert {"OrderPlaced", "PaymentVoided", "StockReleased", "OrderConfirmed"} <= kinds
    finally:
        await consumer.stop()
        await inbox.engine.dispose()
        await _delete_rabbitmq(topic)


async def test_a_day_relayed_to_nats_jetstream(tmp_path: Path) -> None:
    from eventfold.messaging.nats import JetStreamConsumer

    require(NATS_URL, 4222, "NATS")
    topic = f"shop_test_{uuid.uuid4().hex[:8]}"
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    inbox = await consumer_inbox(tmp_path)
    received = Received()
    consumer = JetStreamConsumer(inbox, received, durable="billing", servers=NATS_URL,
                                 stream=topic.upper(), subject_prefix=topic)
    await consumer.start()
    try:
        day, text = await run(url, broker=NATS_URL, topic=topic)
        check_day(day, text)
        async with connect(url, build_app().registry) as store:
            count = len(await store.read_all(limit=10_000))
        await consumer.wait_until(lambda stats: stats.processed == count, timeout=30)
        await check_relayed(url, day, received)
        subjects = {f"{topic}.{r.category}.{r.event_type}" for r in received.records}
        assert f"{topic}.Order.OrderPlaced" in subjects
    finally:
        await consumer.stop()
        await inbox.engine.dispose()
        await _delete_nats(topic.upper())


async def test_a_day_relayed_to_kafka(tmp_path: Path, kafka_url: str) -> None:
    from eventfold.messaging.kafka import KafkaConsumer

    topic = f"shop-test-{uuid.uuid4().hex[:8]}"
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    inbox = await consumer_inbox(tmp_path)
    received = Received()
    consumer = KafkaConsumer(inbox, received, group="billing", servers=kafka_url, topic=topic)
    await consumer.start()
    try:
        day, text = await run(url, broker=f"kafka://{kafka_url}", topic=topic)
        check_day(day, text)
        assert f"Relay {topic}-to-kafka: every event" in text
        async with connect(url, build_app().registry) as store:
            count = len(await store.read_all(limit=10_000))
        await consumer.wait_until(lambda stats: stats.processed == count, timeout=30)
        await check_relayed(url, day, received)
    finally:
        await consumer.stop()
        await inbox.engine.dispose()


async def _delete_rabbitmq(name: str) -> None:
    import aio_pika

    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(name)
        await channel.exchange_delete(name)


async def _delete_nats(stream: str) -> None:
    import nats

    client = await nats.connect(NATS_URL)
    try:
        await client.jetstream().delete_stream(stream)
    finally:
        await client.close()


def test_the_app_is_what_the_cli_loads() -> None:
    from eventfold.app import load_app
    from examples.shop import app

    loaded = load_app("examples.shop:app")
    assert loaded is app
    assert sorted(loaded.projections.names()) == [
        "customer_directory", "customer_totals", "order_list",
    ]
    assert [s.name for s in loaded.subscribers] == ["fulfilment"]
