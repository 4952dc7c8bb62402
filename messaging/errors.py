"""Errors of broker relays and the inbox: each says what went wrong and what to do."""

from __future__ import annotations

from eventfold.eventstore.errors import EventfoldError
from eventfold.projections.errors import ProjectionError, SubscriberUnavailable


class BrokerUnavailable(SubscriberUnavailable):
    """A message broker could not be reached, or did not confirm in time."""

    def __init__(self, broker: str, reason: str) -> None:
        self.broker = broker
        self.reason = reason
        super().__init__(
            f"{broker} is unavailable ({reason}): check that the broker runs and the URL "
            "is right (a relay retries its batch from the same checkpoint; nothing is skipped)"
        )


class MessageRejected(ProjectionError):
    """A broker refused one message (a nack, an error reply): retried, then parked."""

    def __init__(self, broker: str, message_id: object, reason: str) -> None:
        self.broker = broker
        self.message_id = message_id
        self.reason = reason
        super().__init__(
            f"{broker} refused message {message_id} ({reason}); it is retried and then "
            "parked: fix the broker's configuration, then retry the parked event"
        )


class RelayBatchStale(SubscriberUnavailable):
    """An event reached a relay's transaction without having been published ahead of it.

    A relay publishes a batch before the batch's transaction and holds back the events of
    streams with parked events; when the parked events changed in between (an operator
    retried or skipped one), the transaction sees a different batch: it is rolled back and
    read again (nothing is parked, skipped, or published from inside the transaction)."""

    def __init__(self, relay: str, event_id: object, stream_id: str) -> None:
        self.relay = relay
        self.event_id = event_id
        self.stream_id = stream_id
        super().__init__(
            f"relay {relay!r}: event {event_id} (stream {stream_id!r}) was not published "
            "ahead of its batch's transaction (the stream's parked events changed "
            "meanwhile); the batch is rolled back and read again from the same checkpoint"
        )


class BrokerClientMissing(EventfoldError):
    """A relay or consumer was built for a broker whose client library is not installed."""

    def __init__(self, broker: str, library: str, extra: str) -> None:
        self.broker = broker
        self.library = library
        self.extra = extra
        super().__init__(
            f"{broker} support needs {library}, which is not installed: "
            f"pip install 'eventfold[{extra}]'"
        )
