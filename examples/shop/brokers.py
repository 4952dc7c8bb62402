"""The shop's relay: its events, published to RabbitMQ, NATS JetStream or Kafka for other
services."""

from __future__ import annotations

from eventfold import Relay


class UnknownBroker(ValueError):
    """The broker URL names neither RabbitMQ (amqp://), NATS (nats://) nor Kafka (kafka://)."""


def relay_for(url: str, *, topic: str = "shop") -> Relay:
    """A relay publishing every event of the log to the broker at ``url``.

    RabbitMQ (``amqp://``): the topic exchange ``topic``, routing keys like
    ``Order.OrderPlaced``. NATS (``nats://``): the JetStream stream ``TOPIC`` (upper case),
    subjects like ``topic.Order.OrderPlaced``. Kafka (``kafka://host:port[,host:port]``):
    the topic ``topic``, keyed by stream id.
    """
    scheme = url.split(":", 1)[0].lower()
    if scheme in ("amqp", "amqps"):
        # Imported here: the broker clients are optional extras.
        from eventfold.messaging.rabbitmq import rabbitmq_relay

        return rabbitmq_relay(
            f"{topic}-to-rabbitmq", url, exchange=topic, source="eventfold://shop"
        )
    if scheme in ("nats", "tls"):
        from eventfold.messaging.nats import nats_relay

        return nats_relay(
            f"{topic}-to-nats", url, stream=topic.upper().replace("-", "_"),
            subject_prefix=topic, source="eventfold://shop",
        )
    if scheme == "kafka":
        from eventfold.messaging.kafka import kafka_relay

        return kafka_relay(
            f"{topic}-to-kafka", url.split("://", 1)[1].rstrip("/"), topic=topic,
            source="eventfold://shop",
        )
    raise UnknownBroker(
        f"cannot relay to {url!r}: use amqp://user:password@host/ for RabbitMQ, "
        "nats://host:4222 for NATS JetStream or kafka://host:9092 for Kafka"
    )
