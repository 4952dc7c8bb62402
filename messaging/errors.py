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
