"""A shop on eventfold: orders, stock and payments, a fulfilment process with compensation
and a payment timeout, read models, and (optionally) a relay to RabbitMQ, NATS or Kafka.

``python -m examples.shop`` runs the story on SQLite (``eventfold.db`` in the working
directory); ``--database postgresql://...`` and ``--broker amqp://...|nats://...|kafka://...``
run it on real services. ``eventfold --app examples.shop:app ...`` works on its store. The design
is walked through in docs/example.md.
"""

from examples.shop.app import app, build_app

__all__ = ["app", "build_app"]
