"""RabbitMQ for relays and inbox consumers, through aio-pika (the ``rabbitmq`` extra).

Publishing: a durable topic exchange (``eventfold`` by default), routing key
``<category>.<event_type>``, persistent messages with ``message_id`` = the event id,
``type`` = the event type, ``content_type`` = ``application/cloudevents+json``, the
correlation id as ``correlation_id``, and correlation, causation and trace context in the
headers. The channel runs in publisher-confirm mode: ``publish`` returns once RabbitMQ
has confirmed every message of the batch, so the relay's checkpoint never runs ahead of
the broker. RabbitMQ does not de-duplicate: a batch published again after a crash reaches
the queues twice, and consumers drop the copies with the inbox (``RabbitMQConsumer``).

aio-pika is imported when a publisher or consumer is built, so eventfold works without it
and an application that needs it refuses to start (``BrokerClientMissing``) instead of
failing on every event. An outage is logged as a state change (``BrokerHealth``).
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
from eventfold.messaging.inbox import BrokerConsumer, Inbox, InboxDispatch, InboxHandler
from eventfold.messaging.outage import RECONNECT, BrokerHealth
from eventfold.messaging.relay import CORRELATION_HEADER, RELAY_FAILURE, Message, Publisher, Relay
from eventfold.projections.subscriber import FailurePolicy

if TYPE_CHECKING:
    import aio_pika.abc

logger = logging.getLogger("eventfold.rabbitmq")

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_EXCHANGE = "eventfold"


def _aio_pika() -> Any:
    try:
        import aio_pika
        import aiormq
    except ImportError:
        raise BrokerClientMissing("RabbitMQ", "aio-pika", "rabbitmq") from None
    _quiet_connection_errors(aiormq)
    return aio_pika


class _UnlessDebugging(logging.Filter):
    """Drops aiormq's line per failed connection attempt: ``BrokerHealth`` says once that
    the broker is down; with debug logging on, every attempt shows."""

    def filter(self, record: logging.LogRecord) -> bool:
        return logger.isEnabledFor(logging.DEBUG)


_QUIET = _UnlessDebugging()


def _quiet_connection_errors(aiormq: Any) -> None:
    connection_logger = logging.getLogger(aiormq.connection.__name__)
    if _QUIET not in connection_logger.filters:
        connection_logger.addFilter(_QUIET)


def _outage_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean the broker (not the message) is the problem."""
    import aiormq.exceptions

    return (
        ConnectionError,
        OSError,
        TimeoutError,
        aiormq.exceptions.AMQPConnectionError,
        aiormq.exceptions.AMQPChannelError,
        aiormq.exceptions.ChannelInvalidStateError,
    )


class RabbitMQPublisher(Publisher):
    """Publishes relay messages to a RabbitMQ topic exchange with publisher confirms.

    Connects on first use and again after a lost connection. ``confirm_timeout`` bounds
    the wait for a batch's confirms; past it the broker counts as unavailable. After a
    failure, ``publish`` fails at once until ``reconnect``'s backoff has passed.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        exchange: str = DEFAULT_EXCHANGE,
        confirm_timeout: float = 30.0,
        connect_timeout: float = 10.0,
        connection_name: str = "eventfold-relay",
        reconnect: Backoff = RECONNECT,
    ) -> None:
        self.url = url
        self.exchange_name = exchange
        self.confirm_timeout = confirm_timeout
        self.connect_timeout = connect_timeout
        self.connection_name = connection_name
        self._aio_pika = _aio_pika()  # refuse to build without the client library
        self.health = BrokerHealth(logger, self.broker, reconnect)
        # A partitioned relay publishes from several tasks: one connection for all.
        self._connecting = asyncio.Lock()
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._channel: aio_pika.abc.AbstractChannel | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None

    @property
    def broker(self) -> str:
        """``RabbitMQ at <url>``, password masked."""
        return f"RabbitMQ at {masked(self.url)}"

    async def publish(self, messages: Sequence[Message]) -> None:
        """Publish in order and wait for every confirm."""
        if not messages:
            return
        aio_pika = self._aio_pika
        outage = _outage_errors()
        self.health.check()
        try:
            exchange = await self._ensure()
            async with asyncio.timeout(self.confirm_timeout):
                # One task per message, created in order: aio-pika writes each publish
                # under the channel lock, which asyncio hands out first come first served,
                # so the frames leave in log order while the confirms come back pipelined.
                results = await asyncio.gather(
                    *(
                        exchange.publish(
                            self._amqp_message(aio_pika, message), routing_key=message.topic,
                            mandatory=False,
                        )
                        for message in messages
                    ),
                    return_exceptions=True,
                )
        except TimeoutError:
            await self._outage(f"no confirm within {self.confirm_timeout}s", None)
        except outage as exc:
            await self._outage(_describe(exc), exc)
        for message, result in zip(messages, results, strict=True):
            if isinstance(result, aio_pika.exceptions.DeliveryError):
                raise MessageRejected(self.broker, message.message_id, "nack") from result
            if isinstance(result, BaseException):
                await self._outage(_describe(result), result)
        self.health.reachable()

    async def _outage(self, reason: str, error: BaseException | None) -> NoReturn:
        await self._drop()
        self.health.failed(reason, error)
        raise BrokerUnavailable(self.broker, reason) from error

    async def close(self) -> None:
        """Close the connection."""
        await self._drop()

    async def _ensure(self) -> aio_pika.abc.AbstractExchange:
        async with self._connecting:
            return await self._ensure_unlocked()

    async def _ensure_unlocked(self) -> aio_pika.abc.AbstractExchange:
        if (
            self._exchange is not None
            and self._connection is not None
            and not self._connection.is_closed
            and self._channel is not None
            and not self._channel.is_closed
        ):
            return self._exchange
        await self._drop()
        pika = self._aio_pika
        connection: aio_pika.abc.AbstractConnection = await pika.connect(
            self.url, timeout=self.connect_timeout,
            client_properties={"connection_name": self.connection_name},
        )
        try:
            channel = await connection.channel(publisher_confirms=True)
            exchange: aio_pika.abc.AbstractExchange = await channel.declare_exchange(
                self.exchange_name, pika.ExchangeType.TOPIC, durable=True
            )
        except BaseException:
            await connection.close()
            raise
        self._connection, self._channel, self._exchange = connection, channel, exchange
        return exchange

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        self._channel = self._exchange = None
        if connection is not None and not connection.is_closed:
            with contextlib.suppress(Exception):
                await connection.close()

    @staticmethod
    def _amqp_message(aio_pika: Any, message: Message) -> Any:
        record = message.record
        return aio_pika.Message(
            message.body,
            content_type=message.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message.message_id,
            type=message.event_type,
            correlation_id=message.headers.get(CORRELATION_HEADER),
            timestamp=record.recorded_at if record is not None else None,
            headers=dict(message.headers),
        )


def rabbitmq_relay(
    name: str,
    url: str = DEFAULT_URL,
    *,
    exchange: str = DEFAULT_EXCHANGE,
    event_types: frozenset[str] | set[str] | None = None,
    source: str = "eventfold",
    type_prefix: str = "",
    failure: FailurePolicy = RELAY_FAILURE,
    partitions: int = 1,
    confirm_timeout: float = 30.0,
) -> Relay:
    """A relay publishing to the RabbitMQ topic exchange ``exchange`` at ``url``."""
    publisher = RabbitMQPublisher(
        url, exchange=exchange, confirm_timeout=confirm_timeout,
        connection_name=f"eventfold-relay:{name}",
    )
    return Relay(
        name, publisher, event_types=event_types, source=source, type_prefix=type_prefix,
        failure=failure, partitions=partitions,
    )


class RabbitMQConsumer(BrokerConsumer):
    """Consumes relayed events from a durable queue bound to the exchange, through an inbox.

    Each message's handler runs in the inbox's transaction; the message is acknowledged
    after the commit (or when it is a duplicate), redelivered when the handler keeps
    failing, and rejected (dead-lettered, if the queue has a dead-letter exchange) when it
    is not an eventfold CloudEvent. Messages are handled one at a time, in queue order.
    A lost connection is re-opened with ``reconnect``'s jittered backoff, logged once when
    lost and once when back; unacknowledged messages come back and the inbox drops those
    already processed.
    """

    def __init__(
        self,
        inbox: Inbox,
        handler: InboxHandler,
        *,
        queue: str,
        url: str = DEFAULT_URL,
        exchange: str = DEFAULT_EXCHANGE,
        binding_keys: Sequence[str] = ("#",),
        prefetch: int = 100,
        failure: FailurePolicy | None = None,
        queue_arguments: dict[str, Any] | None = None,
        reconnect: Backoff = RECONNECT,
    ) -> None:
        self.url = url
        self.exchange_name = exchange
        self.queue_name = queue
        self.binding_keys = list(binding_keys)
        self.prefetch = prefetch
        self.queue_arguments = queue_arguments
        self._aio_pika = _aio_pika()  # refuse to build without the client library
        self.health = BrokerHealth(logger, f"RabbitMQ at {masked(url)}", reconnect)
        self.dispatch = InboxDispatch(inbox, handler, failure=failure)
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._connection: aio_pika.abc.AbstractConnection | None = None


    async def start(self) -> None:
        """Declare the exchange, the queue and its bindings, and start consuming.

        Returns once the queue is bound, so events published from then on reach it."""
        if self._task is not None:
            return
        self._ready.clear()
        self._task = asyncio.create_task(self._run(), name=f"rabbitmq-consumer:{self.queue_name}")
        ready = asyncio.create_task(self._ready.wait())
        await asyncio.wait({ready, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
            failed, self._task = self._task, None
            await failed  # it failed before binding: raise its error

    async def stop(self) -> None:
        """Stop consuming and close the connection. A message in hand is cancelled: its
        inbox transaction rolls back and, never acknowledged, it is delivered again (the inbox
        keeps its effect once)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


    async def _run(self) -> None:
        outage = _outage_errors()
        while True:
            try:
                await self._consume(self._aio_pika)
            except outage as exc:
                if not self._ready.is_set():
                    raise BrokerUnavailable(self.health.broker, _describe(exc)) from exc
                # No transaction is open here: the inbox commits each message before its ack.
                await asyncio.sleep(self.health.failed(_describe(exc), exc))
            finally:
                connection, self._connection = self._connection, None
                if connection is not None and not connection.is_closed:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(connection.close())

    async def _consume(self, aio_pika: Any) -> None:
        connection = await aio_pika.connect(
            self.url, client_properties={"connection_name": f"eventfold-inbox:{self.queue_name}"}
        )
        self._connection = connection
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=self.prefetch)
        exchange = await channel.declare_exchange(
            self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(
            self.queue_name, durable=True, arguments=self.queue_arguments
        )
        for key in self.binding_keys:
            await queue.bind(exchange, routing_key=key)
        self._ready.set()
        self.health.reachable()
        async with queue.iterator() as messages:
            async for message in messages:
                outcome = await self.dispatch.deliver(message.body)
                if outcome in ("processed", "duplicate"):
                    await message.ack()
                elif outcome == "failed":
                    await message.nack(requeue=True)
                else:
                    await message.reject(requeue=False)
        # The iterator ends when the channel closes under it.
        raise ConnectionError("the channel was closed")


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
