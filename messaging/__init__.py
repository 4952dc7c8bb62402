"""Messaging beyond the store: the events table is the outbox.

A ``Relay`` is a subscriber that publishes each event to a broker at least once, in
per-stream order, with the event id as the message id; an ``Inbox`` makes a consumer
idempotent. The broker adapters need extras and are imported from their modules:
``eventfold.messaging.rabbitmq`` (``pip install 'eventfold[rabbitmq]'``),
``eventfold.messaging.nats`` (``pip install 'eventfold[nats]'``) and
``eventfold.messaging.kafka`` (``pip install 'eventfold[kafka]'``).
"""

from eventfold.messaging.errors import BrokerClientMissing, BrokerUnavailable, MessageRejected
from eventfold.messaging.inbox import BrokerConsumer, Inbox, PartitionLag, schedule_prune
from eventfold.messaging.relay import Message, Publisher, Relay

__all__ = [
    "BrokerClientMissing",
    "BrokerConsumer",
    "BrokerUnavailable",
    "Inbox",
    "Message",
    "MessageRejected",
    "PartitionLag",
    "Publisher",
    "Relay",
    "schedule_prune",
]
