"""NATS JetStream for relays and inbox consumers, through nats-py (the ``nats`` extra).

Publishing: subject ``<prefix>.<category>.<event_type>`` (prefix ``eventfold`` by default)
into a JetStream stream that is created when missing (name ``EVENTFOLD``, subjects
``<prefix>.>``, file storage, a duplicate window). Each message carries the event id as
``Nats-Msg-Id``, so JetStream itself drops a copy published again within the window (the
relay's crash-and-republish case); the body is the CloudEvents JSON envelope and the
headers carry correlation, causation and trace context. ``publish`` sends the batch
pipelined, in order, and returns once JetStream acknowledged (stored) every message.

Consuming: ``JetStreamConsumer`` pulls from a durable consumer and runs a handler per
message through the inbox, acknowledging after the commit.

nats-py is imported when a publisher or consumer is built, so eventfold works without it
and an application that needs it refuses to start (``BrokerClientMissing``) instead of
failing on every event. An outage is logged as a state change (``BrokerHealth``); nats-py's
own error log (a traceback per reconnect attempt) is turned into debug lines.
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
from eventfold.messaging.relay import RELAY_FAILURE, Message, Publisher, Relay, token
from eventfold.projections.subscriber import FailurePolicy

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js.client import JetStreamContext

logger = logging.getLogger("eventfold.nats")

DEFAULT_SERVERS = "nats://127.0.0.1:4222"
DEFAULT_STREAM = "EVENTFOLD"
DEFAULT_PREFIX = "eventfold"
DEFAULT_DUPLICATE_WINDOW = 120.0
MSG_ID_HEADER = "Nats-Msg-Id"
CONTENT_TYPE_HEADER = "Content-Type"
"""The body is a whole CloudEvent (structured mode): ``application/cloudevents+json``, as
RabbitMQ messages say in their ``content_type`` property."""


def _nats() -> Any:
    try:
        import nats
        import nats.errors
        import nats.js.errors
    except ImportError:
        raise BrokerClientMissing("NATS JetStream", "nats-py", "nats") from None
    return nats


def _outage_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean the server (not the message) is the problem."""
    nats = _nats()
    return (
        ConnectionError,
        OSError,
        TimeoutError,
        nats.errors.ConnectionClosedError,
        nats.errors.StaleConnectionError,
        nats.errors.OutboundBufferLimitError,
        nats.errors.NoServersError,
        nats.errors.ConnectionReconnectingError,
        nats.errors.ConnectionDrainingError,
        nats.js.errors.ServiceUnavailableError,
        # No stream answers on the subject: JetStream is down or not enabled, or the stream
        # was deleted (it is created again on reconnect).
        nats.js.errors.NoStreamResponseError,
        nats.js.errors.TooManyStalledMsgsError,
    )


def broker_name(servers: str | list[str]) -> str:
    """``NATS JetStream at <servers>`` with passwords and tokens masked, for messages and logs."""
    joined = servers if isinstance(servers, str) else ",".join(servers)
    return f"NATS JetStream at {masked(joined)}"


async def _connect(servers: str | list[str], name: str, connect_timeout: float) -> Client:
    nats = _nats()
    # Reconnect forever in the background: an outage shows as publishes that are not
    # acknowledged in time, and the relay retries the batch; a closed client is replaced.
    async with asyncio.timeout(connect_timeout + 1):
        client: Client = await nats.connect(
            servers, name=name, connect_timeout=max(1, int(connect_timeout)),
            allow_reconnect=True, max_reconnect_attempts=-1, reconnect_time_wait=0.5,
            error_cb=_client_error, disconnected_cb=_client_event, reconnected_cb=_client_event,
        )
    return client


async def _client_error(error: Exception) -> None:
    # nats-py logs each failed reconnect attempt with a traceback unless given a callback;
    # the outage is reported once, by BrokerHealth, so these are debug lines.
    logger.debug("nats client: %s", _describe(error), exc_info=logger.isEnabledFor(logging.DEBUG))


async def _client_event() -> None:
    logger.debug("nats client: connection state changed")


class JetStreamPublisher(Publisher):
    """Publishes relay messages to a JetStream stream and waits for every PubAck."""

    def __init__(
        self,
        servers: str | list[str] = DEFAULT_SERVERS,
        *,
        stream: str = DEFAULT_STREAM,
        subject_prefix: str = DEFAULT_PREFIX,
        duplicate_window: float = DEFAULT_DUPLICATE_WINDOW,
        ack_timeout: float = 30.0,
        connect_timeout: float = 5.0,
        connection_name: str = "eventfold-relay",
        reconnect: Backoff = RECONNECT,
    ) -> None:
        self.servers = servers
        self.stream = stream
        self.subject_prefix = subject_prefix
        self.duplicate_window = duplicate_window
        self.ack_timeout = ack_timeout
        self.connect_timeout = connect_timeout
        self.connection_name = connection_name
        _nats()  # refuse to build without the client library
        self.health = BrokerHealth(logger, self.broker, reconnect)
        # A partitioned relay publishes from several tasks: one connection for all.
        self._connecting = asyncio.Lock()
        self._client: Client | None = None
        self._js: JetStreamContext | None = None

    @property
    def broker(self) -> str:
        """``NATS JetStream at <servers>``, passwords and tokens masked."""
        return broker_name(self.servers)

    def subject(self, message: Message) -> str:
        """``<prefix>.<category>.<event_type>``."""
        return f"{self.subject_prefix}.{message.topic}"

    async def publish(self, messages: Sequence[Message]) -> None:
        """Publish in order, pipelined; return once every message is acknowledged."""
        if not messages:
            return
        nats = _nats()
        outage = _outage_errors()
        futures: list[asyncio.Future[Any]] = []
        self.health.check()
        try:
            try:
                js = await self._ensure()
            except TimeoutError:
                raise ConnectionError(f"no connection within {self.connect_timeout}s") from None
            async with asyncio.timeout(self.ack_timeout):
                # Awaiting each publish_async in turn writes the messages to the socket in
                # log order; the acknowledgements are awaited together afterwards.
                for message in messages:
                    headers = {
                        **message.headers, MSG_ID_HEADER: message.message_id,
                        CONTENT_TYPE_HEADER: message.content_type,
                    }
                    futures.append(
                        await js.publish_async(
                            self.subject(message), message.body, headers=headers,
                            stream=self.stream,
                        )
                    )
                results = await asyncio.gather(*futures, return_exceptions=True)
        except TimeoutError:
            _cancel(futures)
            self._outage(f"no ack within {self.ack_timeout}s", None)
        except outage as exc:
            _cancel(futures)
            await self._drop_if_closed()
            self._outage(_describe(exc), exc)
        for message, result in zip(messages, results, strict=True):
            if isinstance(result, outage):
                self._outage(_describe(result), result)
            if isinstance(result, nats.js.errors.APIError):
                raise MessageRejected(
                    self.broker, message.message_id, _describe(result)
                ) from result
            if isinstance(result, BaseException):
                self._outage(_describe(result), result)
        self.health.reachable()

    def _outage(self, reason: str, error: BaseException | None) -> NoReturn:
        self.health.failed(reason, error)
        raise BrokerUnavailable(self.broker, reason) from error

    async def close(self) -> None:
        """Close the connection."""
        client, self._client, self._js = self._client, None, None
        if client is not None and not client.is_closed:
            with contextlib.suppress(Exception):
                await client.close()

    async def ensure_stream(self) -> None:
        """Create the stream if it is missing (done on connect; idempotent)."""
        await self._ensure()

    async def _ensure(self) -> JetStreamContext:
        async with self._connecting:
            return await self._ensure_unlocked()

    async def _ensure_unlocked(self) -> JetStreamContext:
        if self._js is not None and self._client is not None and not self._client.is_closed:
            return self._js
        await self.close()
        client = await _connect(self.servers, self.connection_name, self.connect_timeout)
        try:
            js = client.jetstream()
            await ensure_stream(
                js, self.stream, [f"{self.subject_prefix}.>"], self.duplicate_window
            )
        except BaseException:
            await client.close()
            raise
        self._client, self._js = client, js
        return js

    async def _drop_if_closed(self) -> None:
        if self._client is not None and self._client.is_closed:
            await self.close()


async def ensure_stream(
    js: JetStreamContext, name: str, subjects: list[str], duplicate_window: float
) -> None:
    """Create the JetStream stream ``name`` over ``subjects`` unless it exists (an existing
    stream is left as it is configured)."""
    nats = _nats()
    from nats.js.api import StorageType

    try:
        await js.stream_info(name)
    except nats.js.errors.NotFoundError:
        with contextlib.suppress(nats.js.errors.BadRequestError):  # created meanwhile
            await js.add_stream(
                name=name, subjects=subjects, duplicate_window=duplicate_window,
                storage=StorageType.FILE,
            )


def nats_relay(
    name: str,
    servers: str | list[str] = DEFAULT_SERVERS,
    *,
    stream: str = DEFAULT_STREAM,
    subject_prefix: str = DEFAULT_PREFIX,
    duplicate_window: float = DEFAULT_DUPLICATE_WINDOW,
    event_types: frozenset[str] | set[str] | None = None,
    source: str = "eventfold",
    type_prefix: str = "",
    failure: FailurePolicy = RELAY_FAILURE,
    partitions: int = 1,
    ack_timeout: float = 30.0,
) -> Relay:
    """A relay publishing to the JetStream stream ``stream`` on ``servers``."""
    publisher = JetStreamPublisher(
        servers, stream=stream, subject_prefix=subject_prefix,
        duplicate_window=duplicate_window, ack_timeout=ack_timeout,
        connection_name=f"eventfold-relay:{name}",
    )
    return Relay(
        name, publisher, event_types=event_types, source=source, type_prefix=type_prefix,
        failure=failure, partitions=partitions,
    )


class JetStreamConsumer(BrokerConsumer):
    """Consumes relayed events from a durable JetStream pull consumer, through an inbox.

    Each message's handler runs in the inbox's transaction; the message is acknowledged
    after the commit (or when it is a duplicate), negatively acknowledged with a delay when
    the handler keeps failing (JetStream redelivers it), and terminated when it is not an
    eventfold CloudEvent. Messages are handled one at a time, in stream order.
    """

    def __init__(
        self,
        inbox: Inbox,
        handler: InboxHandler,
        *,
        durable: str,
        servers: str | list[str] = DEFAULT_SERVERS,
        stream: str = DEFAULT_STREAM,
        subject_prefix: str = DEFAULT_PREFIX,
        filter_subject: str | None = None,
        duplicate_window: float = DEFAULT_DUPLICATE_WINDOW,
        batch: int = 100,
        failure: FailurePolicy | None = None,
        redeliver_delay: float = 1.0,
        reconnect: Backoff = RECONNECT,
    ) -> None:
        self.servers = servers
        self.durable = token(durable)
        self.stream = stream
        self.subject_prefix = subject_prefix
        self.filter_subject = filter_subject or f"{subject_prefix}.>"
        self.duplicate_window = duplicate_window
        self.batch = batch
        self.redeliver_delay = redeliver_delay
        _nats()  # refuse to build without the client library
        self.health = BrokerHealth(logger, broker_name(servers), reconnect)
        self.dispatch = InboxDispatch(inbox, handler, failure=failure)
        self._client: Client | None = None
        self._task: asyncio.Task[None] | None = None


    async def start(self) -> None:
        """Connect, make sure the stream and the durable consumer exist, start pulling."""
        if self._task is not None:
            return
        nats = _nats()
        try:
            self._client = await _connect(
                self.servers, f"eventfold-inbox:{self.durable}", connect_timeout=5.0
            )
            js = self._client.jetstream()
            await ensure_stream(
                js, self.stream, [f"{self.subject_prefix}.>"], self.duplicate_window
            )
            subscription = await js.pull_subscribe(
                self.filter_subject, durable=self.durable, stream=self.stream
            )
        except (*_outage_errors(), nats.errors.Error) as exc:
            await self.stop()
            raise BrokerUnavailable(broker_name(self.servers), _describe(exc)) from exc
        self._task = asyncio.create_task(self._run(subscription), name=f"jetstream:{self.durable}")

    async def stop(self) -> None:
        """Stop consuming and close the connection. A message in hand is cancelled: its
        inbox transaction rolls back and, never acknowledged, it is delivered again (the inbox
        keeps its effect once)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        client, self._client = self._client, None
        if client is not None and not client.is_closed:
            with contextlib.suppress(Exception):
                await client.close()


    async def _run(self, subscription: Any) -> None:
        nats = _nats()
        while True:
            try:
                messages = await subscription.fetch(self.batch, timeout=1.0)
            except nats.errors.TimeoutError:
                self.health.reachable()
                continue  # nothing new yet
            except _outage_errors() as exc:
                await asyncio.sleep(self.health.failed(_describe(exc), exc))
                continue
            self.health.reachable()
            for message in messages:
                outcome = await self.dispatch.deliver(message.data)
                with contextlib.suppress(*_outage_errors()):
                    # A lost ack means a redelivery, which the inbox turns into a no-op.
                    if outcome in ("processed", "duplicate"):
                        await message.ack()
                    elif outcome == "failed":
                        await message.nak(delay=self.redeliver_delay)
                    else:
                        await message.term()


def _cancel(futures: list[asyncio.Future[Any]]) -> None:
    # Pending acknowledgement futures hold slots of nats-py's async-publish window.
    for future in futures:
        if not future.done():
            future.cancel()


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
