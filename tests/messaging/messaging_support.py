"""Brokers, stores and a counting consumer shared by the messaging tests.

The tests talk to the real RabbitMQ and NATS of the machine (never a mock); a broker that
does not answer fails the test with the command that starts it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from eventfold.eventstore import Event, EventRegistry, EventStore, GlobalPosition, NewEvent
from eventfold.eventstore.records import RecordedEvent
from eventfold.messaging.relay import Message, Publisher

RABBITMQ_URL = os.environ.get("EVENTFOLD_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
NATS_URL = os.environ.get("EVENTFOLD_TEST_NATS_URL", "nats://127.0.0.1:4222")
NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"

START_RABBITMQ = "rabbitmq-server -detached"
START_NATS = (
    "start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- "
    "-a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log"
)


def require(host: str, port: int, what: str, how: str) -> None:
    """Fail (never skip) the test when a broker does not accept connections."""
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as exc:
        pytest.fail(
            f"{what} is not reachable at {host}:{port} ({exc}). The messaging tests need the "
            f"real broker: start it with `{how}` (or run `bash .ci/run`, which starts it).",
            pytrace=False,
        )


def unique(prefix: str) -> str:
    """A name no other test (or engineer) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class ItemAdded(Event):
    """What the tests relay."""

    sku: str
    n: int = 0


class Finished(Event):
    """The sentinel appended last: when a consumer handled it, it handled all before it."""


def make_registry() -> EventRegistry:
    """The messaging tests' registry."""
    return EventRegistry([ItemAdded, Finished])


effects_metadata = sa.MetaData()
effects = sa.Table(
    "test_msg_effects",
    effects_metadata,
    # No unique key on event_id on purpose: an effect applied twice shows as two rows.
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("consumer", sa.Text(), nullable=False),
    sa.Column("event_id", sa.Uuid(), nullable=False),
    sa.Column("stream_id", sa.Text(), nullable=False),
    sa.Column("stream_version", sa.Integer(), nullable=False),
)


async def create_effects(engine: AsyncEngine) -> None:
    """Create the consumers' effect table (once per database)."""
    async with engine.begin() as conn:
        await conn.run_sync(effects_metadata.create_all)


def effect_handler(consumer: str):  # type: ignore[no-untyped-def]
    """A consumer handler that records one effect row per handled event."""

    async def handle(record: RecordedEvent, conn: AsyncConnection) -> None:
        await conn.execute(
            effects.insert().values(
                consumer=consumer, event_id=record.event_id, stream_id=record.stream_id,
                stream_version=record.stream_version,
            )
        )

    return handle


async def effect_rows(engine: AsyncEngine, consumer: str) -> list[tuple[uuid.UUID, str, int]]:
    """(event_id, stream_id, stream_version) of the consumer's effects, in handling order."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(effects.c.event_id, effects.c.stream_id, effects.c.stream_version)
            .where(effects.c.consumer == consumer).order_by(effects.c.id)
        )
        return [(row[0], row[1], row[2]) for row in rows]


async def append_events(store: EventStore, streams: int, per_stream: int) -> list[uuid.UUID]:
    """Interleaved appends over several streams; returns the event ids in append order."""
    ids: list[uuid.UUID] = []
    for n in range(per_stream):
        for s in range(streams):
            new = NewEvent(ItemAdded(sku=f"s{s}", n=n))
            await store.append(f"Item-{s}", [new])
            ids.append(new.event_id)
    return ids


async def last_position(store: EventStore, stream_id: str) -> GlobalPosition:
    """Where the last event of a stream lies in the global log (what to wait for: on a
    shared PostgreSQL server ``head()`` may lag behind it while others' transactions run)."""
    return (await store.read_stream(stream_id, backwards=True, limit=1))[0].global_position


async def append_many(store: EventStore, streams: int, per_stream: int) -> int:
    """Append ``per_stream`` events to each of ``streams`` streams in batches; return count."""
    for s in range(streams):
        await store.append(f"Item-{s}", [ItemAdded(sku=f"s{s}", n=n) for n in range(per_stream)])
    return streams * per_stream


def assert_exactly_once_in_order(
    rows: list[tuple[uuid.UUID, str, int]], expected_ids: Sequence[uuid.UUID]
) -> None:
    """Every expected event has exactly one effect, and each stream's effects are in order."""
    got = [row[0] for row in rows]
    assert len(got) == len(set(got)), "an effect was applied twice"
    assert set(got) == set(expected_ids)
    by_stream: dict[str, list[int]] = {}
    for _, stream_id, version in rows:
        by_stream.setdefault(stream_id, []).append(version)
    for stream_id, versions in by_stream.items():
        assert versions == sorted(versions), f"stream {stream_id} out of order: {versions}"


@dataclass
class Env:
    """A store and an engine on its database (the inbox and the effects live there too)."""

    kind: str
    url: str
    store: EventStore
    engine: AsyncEngine


async def empty_store_tables(engine: AsyncEngine) -> None:
    """Empty every eventfold table of a PostgreSQL database (not the migration version)."""
    async with engine.begin() as conn:
        names = (await conn.execute(sa.text(
            "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = current_schema() "
            "AND tablename LIKE 'eventfold\\_%' AND tablename <> 'eventfold_alembic_version'"
        ))).scalars().all()
        if names:
            await conn.execute(sa.text(f"TRUNCATE {', '.join(names)} RESTART IDENTITY CASCADE"))


@dataclass
class Interruption:
    """What a ``HookedPublisher`` did when it interrupted a batch."""

    published: int = 0
    interrupted: bool = False


class HookedPublisher:
    """A real publisher that interrupts the first batch after ``after`` messages.

    ``mode="hang"``: publishes part of the batch for real, then never returns (the test
    kills the runner, as a crash would). ``mode="hook"``: publishes part, awaits ``hook``
    (which breaks the broker connection), then publishes the rest through the real
    publisher, which must fail. Later batches pass straight through.
    """

    def __init__(self, real: Publisher, after: int, mode: str = "hang", hook=None) -> None:  # type: ignore[no-untyped-def]
        self.real = real
        self.after = after
        self.mode = mode
        self.hook = hook
        self.state = Interruption()
        self.reached = asyncio.Event()
        self.error: BaseException | None = None
        self.failed = asyncio.Event()

    @property
    def broker(self) -> str:
        return self.real.broker

    async def publish(self, messages: Sequence[Message]) -> None:
        if self.state.interrupted or len(messages) <= self.after:
            await self.real.publish(messages)
            return
        self.state.interrupted = True
        await self.real.publish(messages[: self.after])
        self.state.published = self.after
        self.reached.set()
        if self.mode == "hang":
            await asyncio.Event().wait()
        await self.hook()
        try:
            await self.real.publish(messages[self.after:])
        except BaseException as exc:
            self.error = exc
            self.failed.set()
            raise

    async def close(self) -> None:
        await self.real.close()


async def close_rabbitmq_connection(connection_name: str) -> int:
    """Close, from the server side, every RabbitMQ connection with that client name."""
    listing = await run(
        "rabbitmqctl", "-q", "list_connections", "pid", "client_properties",
        "--no-table-headers",
    )
    closed = 0
    for line in listing.splitlines():
        pid, _, properties = line.partition("\t")
        if f'{{"connection_name","{connection_name}"}}' in properties:
            await run("rabbitmqctl", "-q", "close_connection", pid, "test: connection loss")
            closed += 1
    return closed


async def run(*command: str) -> str:
    """Run a command; return its standard output; raise if it fails."""
    process = await asyncio.create_subprocess_exec(
        *command, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {err.decode()}")
    return out.decode()


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class NatsServer:
    """A nats-server with JetStream of the test's own (port, storage), to stop and restart."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.port), "-js",
            "-sd", str(self.directory), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        # Readiness of a process we just started: nothing else to wait on but its port.
        async with asyncio.timeout(20):
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                except OSError:
                    await asyncio.sleep(0.05)
                    continue
                writer.close()
                return

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()
