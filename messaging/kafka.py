"""Kafka for relays and inbox consumers, through aiokafka (the ``kafka`` extra).

Publishing: one topic (``eventfold`` by default, created when missing), the **stream id as
the message key**, so each stream's events land in one partition, in order. The value is
the CloudEvents 1.0 JSON envelope (structured mode, as the RabbitMQ and NATS relays send
it), with the headers ``content-type: application/cloudevents+json``, ``message-id`` (the
event id, for de-duplication) and correlation, causation and trace context. The producer
waits for all in-sync replicas (``acks="all"``) and needs no idempotent producer: aiokafka
keeps one request in flight per partition, so a retry cannot reorder a partition, and a
copy sent twice (a relay crash between the acks and its commit) is dropped by the
consumer's inbox. ``publish`` returns once Kafka acknowledged every message of the batch.

Consuming: ``KafkaConsumer`` reads the topic as a consumer group, runs a handler per
message through the inbox and commits each partition's offset only after the messages
before it committed their effect: at least once from Kafka, exactly once in effect.
``lag()`` tells how far each assigned partition's committed offset is behind its end.

aiokafka is imported when a publisher or consumer is built, so eventfold works without it
and an application that needs it refuses to start (``BrokerClientMissing``). An outage is
logged as a state change (``BrokerHealth``); aiokafka's own line per failed attempt is
kept for debug logging.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from eventfold.eventstore.backoff import Backoff
from eventfold.eventstore.urls import masked
from eventfold.messaging.errors import BrokerClientMissing, BrokerUnavailable, MessageRejected
from eventfold.messaging.inbox import (
    BrokerConsumer,
    Inbox,
    InboxDispatch,
    InboxHandler,
    PartitionLag,
)
from eventfold.messaging.outage import RECONNECT, BrokerHealth
from eventfold.messaging.relay import RELAY_FAILURE, Message, Publisher, Relay
from eventfold.projections.subscriber import FailurePolicy

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from eventfold.projections.observability import Metrics

logger = logging.getLogger("eventfold.kafka")

DEFAULT_SERVERS = "127.0.0.1:9092"
DEFAULT_TOPIC = "eventfold"
TOPIC_PARTITIONS = 6
"""The partitions of a topic the relay or consumer creates (``ensure_topic``)."""
METADATA_MAX_AGE = 10.0
"""Seconds between a consumer's metadata refreshes: partitions added to its topic (or a
topic created again) are consumed within this long."""
MESSAGE_ID_HEADER = "message-id"
CONTENT_TYPE_HEADER = "content-type"


def _aiokafka() -> Any:
    try:
        import aiokafka
        import aiokafka.admin
        import aiokafka.errors
    except ImportError:
        raise BrokerClientMissing("Kafka", "aiokafka", "kafka") from None
    _quiet_client_errors()
    return aiokafka


class _UnlessDebugging(logging.Filter):
    """Drops aiokafka's warnings and errors (several lines per failed attempt during an
    outage): ``BrokerHealth`` says once that the broker is down and once that it is back;
    with debug logging on, all show."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.WARNING or logger.isEnabledFor(logging.DEBUG)


_QUIET = _UnlessDebugging()
_CLIENT_LOGGERS = (
    "aiokafka", "aiokafka.conn", "aiokafka.cluster", "aiokafka.admin.client",
    "aiokafka.consumer.consumer", "aiokafka.consumer.fetcher",
    "aiokafka.consumer.group_coordinator", "aiokafka.producer.producer",
    "aiokafka.producer.sender",
)


def _quiet_client_errors() -> None:
    for name in _CLIENT_LOGGERS:
        client_logger = logging.getLogger(name)
        if _QUIET not in client_logger.filters:
            client_logger.addFilter(_QUIET)


def broker_name(servers: str) -> str:
    """``Kafka at <servers>`` with passwords masked, for messages and logs."""
    return f"Kafka at {masked(servers)}"


def _is_outage(error: BaseException) -> bool:
    """Whether the broker (not the message) is the problem: connection losses, timeouts and
    every error Kafka calls retriable (no leader, not enough replicas, coordinator moving)."""
    errors = _aiokafka().errors
    return isinstance(
        error, (OSError, TimeoutError, errors.KafkaConnectionError, errors.KafkaTimeoutError)
    ) or bool(getattr(error, "retriable", False))


class KafkaPublisher(Publisher):
    """Publishes relay messages to a Kafka topic, keyed by stream id, and waits for the acks.

    Connects on first use and again after an outage (the producer is dropped on any
    outage, so nothing of a failed batch is sent after the relay published it again).
    ``ack_timeout`` bounds the wait for a batch's acks; past it the broker counts as
    unavailable. A missing topic is created (``ensure_topic``).
    """

    def __init__(
        self,
        servers: str = DEFAULT_SERVERS,
        *,
        topic: str = DEFAULT_TOPIC,
        acks: int | str = "all",
        ack_timeout: float = 30.0,
        client_id: str = "eventfold-relay",
        reconnect: Backoff = RECONNECT,
    ) -> None:
        self.servers = servers
        self.topic = topic
        self.acks = acks
        self.ack_timeout = ack_timeout
        self.client_id = client_id
        _aiokafka()  # refuse to build without the client library
        self.health = BrokerHealth(logger, self.broker, reconnect)
        # A partitioned relay publishes from several tasks: one connection for all.
        self._connecting = asyncio.Lock()
        self._producer: AIOKafkaProducer | None = None

    @property
    def broker(self) -> str:
        """``Kafka at <servers>``, passwords masked."""
        return broker_name(self.servers)

    async def publish(self, messages: Sequence[Message]) -> None:
        """Publish in order, keyed by stream id; return once every message is acknowledged."""
        if not messages:
            return
        futures: list[asyncio.Future[Any]] = []
        refused: tuple[Message, BaseException] | None = None
        self.health.check()
        try:
            async with asyncio.timeout(self.ack_timeout):
                producer = await self._ensure()
                # send() appends to the partition's batch in call order; the acks are
                # awaited together afterwards.
                for message in messages:
                    try:
                        futures.append(await producer.send(
                            self.topic, message.body, key=_key(message),
                            headers=_headers(message),
                        ))
                    except Exception as exc:
                        if _is_outage(exc):
                            raise
                        refused = (message, exc)  # too large, say: the client refuses it
                        break
                results = await asyncio.gather(*futures, return_exceptions=True)
        except TimeoutError:
            await self._outage(f"no ack within {self.ack_timeout}s", None)
        except Exception as exc:
            if not _is_outage(exc):
                raise
            await self._outage(_describe(exc), exc)
        for message, result in zip(messages, results, strict=False):
            if isinstance(result, BaseException):
                if _is_outage(result):
                    await self._outage(_describe(result), result)
                refused = (message, result)
                break
        self.health.reachable()
        if refused is not None:
            message, error = refused
            raise MessageRejected(self.broker, message.message_id, _describe(error)) from error

    async def _outage(self, reason: str, error: BaseException | None) -> NoReturn:
        await self.close()
        self.health.failed(reason, error)
        raise BrokerUnavailable(self.broker, reason) from error

    async def close(self) -> None:
        """Close the producer (what it still holds of a failed batch is dropped)."""
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                # Unsent batches expire after the request timeout (= ack_timeout).
                async with asyncio.timeout(self.ack_timeout):
                    await producer.stop()

    async def _ensure(self) -> AIOKafkaProducer:
        async with self._connecting:
            return await self._ensure_unlocked()

    async def _ensure_unlocked(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        aiokafka = _aiokafka()
        await ensure_topic(self.servers, self.topic, self.client_id)
        timeout_ms = max(1000, int(self.ack_timeout * 1000))
        producer: AIOKafkaProducer = aiokafka.AIOKafkaProducer(
            bootstrap_servers=self.servers, client_id=self.client_id, acks=self.acks,
            enable_idempotence=False, request_timeout_ms=timeout_ms,
        )
        try:
            await producer.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise
        self._producer = producer
        return producer


async def ensure_topic(servers: str, topic: str, client_id: str = "eventfold") -> None:
    """Create ``topic`` with ``TOPIC_PARTITIONS`` partitions and one replica unless it exists
    (an existing topic is left as it is). In production, create the topic yourself with
    the partitions and replication you need."""
    aiokafka = _aiokafka()
    admin = aiokafka.admin.AIOKafkaAdminClient(bootstrap_servers=servers, client_id=client_id)
    await admin.start()
    try:
        if topic in await admin.list_topics():
            return
        # "Already exists" (created meanwhile) comes back as an error code, not raised.
        await admin.create_topics([aiokafka.admin.NewTopic(
            topic, num_partitions=TOPIC_PARTITIONS, replication_factor=1
        )])
    finally:
        await admin.close()


def kafka_relay(
    name: str,
    servers: str = DEFAULT_SERVERS,
    *,
    topic: str = DEFAULT_TOPIC,
    event_types: frozenset[str] | set[str] | None = None,
    source: str = "eventfold",
    type_prefix: str = "",
    failure: FailurePolicy = RELAY_FAILURE,
    partitions: int = 1,
    ack_timeout: float = 30.0,
) -> Relay:
    """A relay publishing to the Kafka topic ``topic`` on ``servers`` (``host:port,...``)."""
    publisher = KafkaPublisher(
        servers, topic=topic, ack_timeout=ack_timeout, client_id=f"eventfold-relay:{name}"
    )
    return Relay(
        name, publisher, event_types=event_types, source=source, type_prefix=type_prefix,
        failure=failure, partitions=partitions,
    )


class KafkaConsumer(BrokerConsumer):
    """Consumes relayed events from a Kafka topic as consumer group ``group``, through an inbox.

    Each message's handler runs in the inbox's transaction; the partition's offset is
    committed after the messages before it committed (duplicates included). A message whose
    handler keeps failing is not passed over: the partition is rewound to it and it is
    delivered again after ``redeliver_delay``. A message that is not an eventfold
    CloudEvent is logged and passed over (Kafka has no dead-letter queue of its own).
    A new group starts at the topic's beginning. Messages of a partition are handled one
    at a time, in partition (so per-stream) order. ``lag()`` is each assigned partition's
    lag as this consumer sees it; with ``metrics`` (``Metrics.of(registry)``) it is the
    gauge ``eventfold_consumer_lag{consumer=<group>, topic, partition}``. ``backlog()``
    asks the broker, from any process.
    """

    def __init__(
        self,
        inbox: Inbox,
        handler: InboxHandler,
        *,
        group: str,
        servers: str = DEFAULT_SERVERS,
        topic: str = DEFAULT_TOPIC,
        batch: int = 100,
        failure: FailurePolicy | None = None,
        redeliver_delay: float = 1.0,
        reconnect: Backoff = RECONNECT,
        metrics: Metrics | None = None,
    ) -> None:
        self.servers = servers
        self.group = group
        self.metrics = metrics
        self.topic = topic
        self.batch = batch
        self.redeliver_delay = redeliver_delay
        _aiokafka()  # refuse to build without the client library
        self.health = BrokerHealth(logger, broker_name(servers), reconnect)
        self.dispatch = InboxDispatch(inbox, handler, failure=failure)
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._committed: dict[tuple[str, int], int] = {}

    async def start(self) -> None:
        """Connect, join the group and start consuming."""
        if self._task is not None:
            return
        aiokafka = _aiokafka()
        consumer: AIOKafkaConsumer = aiokafka.AIOKafkaConsumer(
            self.topic, bootstrap_servers=self.servers, group_id=self.group,
            client_id=f"eventfold-inbox:{self.group}", enable_auto_commit=False,
            auto_offset_reset="earliest", metadata_max_age_ms=int(METADATA_MAX_AGE * 1000),
        )
        try:
            # Subscribing to a missing topic lets the broker create it with its defaults;
            # created here, it has the partitions the relay's topic would have.
            await ensure_topic(self.servers, self.topic, f"eventfold-inbox:{self.group}")
            await consumer.start()
        except Exception as exc:
            with contextlib.suppress(Exception):
                await consumer.stop()
            if not _is_outage(exc):
                raise
            raise BrokerUnavailable(broker_name(self.servers), _describe(exc)) from exc
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(consumer), name=f"kafka:{self.group}")

    async def stop(self) -> None:
        """Stop consuming and leave the group (a message in hand is rolled back: its offset
        was not committed, so the group gets it again)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(Exception):
                await consumer.stop()

    async def backlog(self) -> list[PartitionLag]:
        """The group's lag on every partition of the topic, read from the broker (works
        from any process, whether this consumer runs or not)."""
        return await group_lag(self.servers, self.topic, self.group)

    def lag(self) -> list[PartitionLag]:
        """Each assigned partition's committed offset and end, as of the last fetch."""
        consumer = self._consumer
        if consumer is None:
            return []
        out = []
        for tp in sorted(consumer.assignment()):
            end = consumer.highwater(tp)
            if end is None:
                continue  # not fetched yet
            committed = self._committed.get((tp.topic, tp.partition), 0)
            out.append(PartitionLag(tp.topic, tp.partition, committed, end))
        return out

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=1000, max_records=self.batch)
            if not batches:
                # aiokafka reconnects by itself and fetches nothing meanwhile: ask for the
                # cluster's metadata to tell an idle topic from an outage.
                await self._probe(consumer)
            if not self.health.down:
                await self._track_assignment(consumer)
            for tp, messages in batches.items():
                await self._handle(consumer, tp, messages)
            self._report()

    def _report(self) -> None:
        if self.metrics is None:
            return
        for partition in self.lag():
            self.metrics.consumer_lag.labels(
                self.group, partition.topic, str(partition.partition)
            ).set(partition.lag)

    async def _track_assignment(self, consumer: AIOKafkaConsumer) -> None:
        """Start each newly assigned partition's lag from the group's committed offset."""
        assigned = {(tp.topic, tp.partition): tp for tp in consumer.assignment()}
        for key in [key for key in self._committed if key not in assigned]:
            del self._committed[key]  # revoked: another member commits it now
        new = [(key, tp) for key, tp in assigned.items() if key not in self._committed]
        for key, tp in new:
            with contextlib.suppress(Exception):  # an outage: tried again next round
                async with asyncio.timeout(5):
                    self._committed[key] = await consumer.committed(tp) or 0
        if new:
            self._report()
            await self.dispatch.notify()

    async def _probe(self, consumer: AIOKafkaConsumer) -> None:
        try:
            async with asyncio.timeout(10):
                await consumer.topics()
        except Exception as exc:
            delay = self.health.failed(_describe(exc), exc)
            await self.dispatch.notify()
            await asyncio.sleep(delay)
            return
        self.health.reachable()

    async def _handle(self, consumer: AIOKafkaConsumer, tp: Any, messages: list[Any]) -> None:
        done = None
        for message in messages:
            outcome = await self.dispatch.deliver(message.value or b"")
            if outcome == "failed":
                consumer.seek(tp, message.offset)  # delivered again, after a pause
                await self._commit(consumer, tp, done)
                await asyncio.sleep(self.redeliver_delay)
                return
            done = message.offset + 1
        await self._commit(consumer, tp, done)

    async def _commit(self, consumer: AIOKafkaConsumer, tp: Any, offset: int | None) -> None:
        """Commit ``offset`` for the partition, retrying through an outage (no transaction
        is open: every message before it committed its effect)."""
        if offset is None:
            return
        while True:
            try:
                await consumer.commit({tp: offset})
            except Exception as exc:
                if _is_outage(exc):
                    await asyncio.sleep(self.health.failed(_describe(exc), exc))
                    continue
                # The partition went to another member (a rebalance): it resumes from the
                # last commit, and the inbox drops what this member already handled.
                logger.info("%s: commit of %s refused (%s)", self.group, tp, _describe(exc))
                return
            self.health.reachable()
            self._committed[(tp.topic, tp.partition)] = offset
            self._report()
            await self.dispatch.notify()
            return


async def group_lag(servers: str, topic: str, group: str) -> list[PartitionLag]:
    """Consumer group ``group``'s committed offset and end on each partition of ``topic``.

    The ends come from a fetch at the committed offsets (its high watermarks), not from a
    ListOffsets request, which some Kafka-compatible brokers (Tansu) answer wrongly for
    batches of several records. Raises ``BrokerUnavailable`` when Kafka cannot be reached.
    """
    aiokafka = _aiokafka()
    consumer: AIOKafkaConsumer = aiokafka.AIOKafkaConsumer(
        bootstrap_servers=servers, group_id=group, client_id=f"eventfold-status:{group}",
        enable_auto_commit=False, auto_offset_reset="earliest",
    )
    try:
        async with asyncio.timeout(30):
            await consumer.start()
            partitions = sorted(
                aiokafka.TopicPartition(topic, n)
                for n in await _partitions(consumer, topic)
            )
            if not partitions:
                return []
            consumer.assign(partitions)
            committed = {tp: await consumer.committed(tp) or 0 for tp in partitions}
            for tp, offset in committed.items():
                consumer.seek(tp, offset)
            while any(consumer.highwater(tp) is None for tp in partitions):
                await consumer.getmany(timeout_ms=200, max_records=1)
            return [
                PartitionLag(topic, tp.partition, committed[tp], consumer.highwater(tp) or 0)
                for tp in partitions
            ]
    except Exception as exc:
        if isinstance(exc, TimeoutError) or _is_outage(exc):
            raise BrokerUnavailable(broker_name(servers), _describe(exc)) from exc
        raise
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    if topic not in await consumer.topics():
        return set()
    return set(consumer.partitions_for_topic(topic) or ())


def _key(message: Message) -> bytes | None:
    record = message.record
    return None if record is None else record.stream_id.encode()


def _headers(message: Message) -> list[tuple[str, bytes]]:
    headers = {
        **message.headers, MESSAGE_ID_HEADER: message.message_id,
        CONTENT_TYPE_HEADER: message.content_type,
    }
    return [(name, value.encode()) for name, value in headers.items()]


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    name = type(exc).__name__
    if not text:
        return name
    return text[0] if text[0].startswith(name) else f"{name}: {text[0]}"  # aiokafka's say it
