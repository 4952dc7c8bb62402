"""``python -m benchmarks.relay``: relay throughput, events per second confirmed by the broker.

Appends N benchmark events (``benchmarks.payload``, ~200-byte JSON) to a store, then times a
runner with one relay from the first event until its checkpoint passes the last one: every
event read from the log, turned into a CloudEvents message, published, and confirmed by the
broker (RabbitMQ publisher confirms; JetStream PubAcks; Kafka acks=all), batch by batch,
checkpoint committed after each. Each broker gets fresh names (exchange / stream / topic),
removed afterwards.

    python -m benchmarks.relay [--events 20000] [--batch 500] [--broker rabbitmq,nats,kafka]
                               [--kafka 127.0.0.1:9092]
                               [--dsn postgresql://postgres@127.0.0.1:5432/eventfold_bench_relay
                                | --sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

from benchmarks.database import ensure_database, migrate_store, store_url
from benchmarks.payload import SAMPLE, bench_registry
from eventfold.eventstore import connect
from eventfold.eventstore.engine import create_engine
from eventfold.eventstore.migrate import migrate
from eventfold.eventstore.records import NewEvent
from eventfold.messaging.relay import Relay
from eventfold.projections import Runner

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/eventfold_bench_relay"
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
NATS_URL = "nats://127.0.0.1:4222"


async def _publisher(broker: str, tag: str, kafka: str) -> tuple[object, object]:
    """The broker's publisher and a coroutine function that removes what it created."""
    if broker == "kafka":
        from aiokafka.admin import AIOKafkaAdminClient

        from eventfold.messaging.kafka import KafkaPublisher

        topic = f"bench-{tag}"

        async def cleanup_topic() -> None:
            admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
            await admin.start()
            try:
                await admin.delete_topics([topic])
            finally:
                await admin.close()

        return KafkaPublisher(kafka, topic=topic), cleanup_topic
    if broker == "rabbitmq":
        import aio_pika

        from eventfold.messaging.rabbitmq import RabbitMQPublisher

        exchange = f"bench-{tag}"

        async def cleanup() -> None:
            connection = await aio_pika.connect(RABBITMQ_URL)
            async with connection:
                channel = await connection.channel()
                await channel.exchange_delete(exchange)

        return RabbitMQPublisher(RABBITMQ_URL, exchange=exchange), cleanup
    import nats

    from eventfold.messaging.nats import JetStreamPublisher

    stream = f"BENCH_{tag}"

    async def cleanup_stream() -> None:
        client = await nats.connect(NATS_URL)
        try:
            await client.jetstream().delete_stream(stream)
        finally:
            await client.close()

    publisher = JetStreamPublisher(NATS_URL, stream=stream, subject_prefix=f"bench_{tag}")
    return publisher, cleanup_stream


async def measure(url: str, broker: str, events: int, batch: int, kafka: str) -> float:
    """Relay ``events`` fresh events to ``broker``; return confirmed events per second."""
    tag = uuid.uuid4().hex[:8]
    store = await connect(url, bench_registry())
    engine = create_engine(url)
    publisher, cleanup = await _publisher(broker, tag, kafka)
    relay = Relay(f"bench-relay-{tag}", publisher)  # type: ignore[arg-type]
    try:
        last = None
        for start in range(0, events, 1000):
            count = min(1000, events - start)
            last = await store.append(
                f"Reading-{tag}-{start // 1000}", [NewEvent(SAMPLE) for _ in range(count)]
            )
        assert last is not None
        # Warm the connection (and create the exchange / stream) outside the timing.
        await publisher.publish([])  # type: ignore[attr-defined]
        runner = Runner(store, [relay], engine=engine, batch_size=batch, idle_wait=0.1)
        started = time.perf_counter()
        async with runner:
            await runner.wait_until(last.global_position, timeout=600)
            seconds = time.perf_counter() - started
        if relay.published < events:
            raise RuntimeError(f"only {relay.published} of {events} events were relayed")
        return relay.published / seconds
    finally:
        await relay.close()
        await cleanup()  # type: ignore[operator]
        await store.close()
        await engine.dispose()


async def _main(args: argparse.Namespace) -> None:
    if args.sqlite:
        directory = tempfile.mkdtemp(prefix="eventfold-relay-bench-")
        url = f"sqlite:///{Path(directory) / 'store.db'}"
        await migrate(url)
    else:
        await ensure_database(args.dsn)
        url = store_url(args.dsn)
        await migrate_store(url)
    backend = "SQLite" if args.sqlite else "PostgreSQL"
    print(f"relay throughput, {args.events} events, batches of {args.batch}, store on {backend}")
    for broker in args.broker.split(","):
        rate = await measure(url, broker.strip(), args.events, args.batch, args.kafka)
        print(f"  {broker.strip():<9} {rate:>10,.0f} events/s (broker-confirmed)")


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run, print the figures."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.relay", description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--broker", default="rabbitmq,nats")
    parser.add_argument("--kafka", default="127.0.0.1:9092", help="Kafka bootstrap servers")
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    parser.add_argument("--sqlite", action="store_true", help="store on a temp SQLite file")
    args = parser.parse_args(argv)
    asyncio.run(_main(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
