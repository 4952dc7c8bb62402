"""Run as a process of its own by the Kafka crash tests, which ``kill -9`` it mid-batch.

``python kafka_crash.py relay DB KAFKA TOPIC AFTER``: relays the log; the first batch's
first AFTER messages are acknowledged by Kafka, then the process kills itself (SIGKILL)
before the rest is sent and before the batch's transaction.

``python kafka_crash.py consumer DB KAFKA TOPIC GROUP AFTER``: consumes through the inbox;
after AFTER messages committed their effect, the process kills itself while handling the
next, before any offset of that fetch was committed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Sequence

from messaging_support import effect_handler, make_registry
from sqlalchemy.ext.asyncio import AsyncConnection

from eventfold.eventstore import connect
from eventfold.eventstore.engine import create_engine
from eventfold.eventstore.records import RecordedEvent
from eventfold.messaging.inbox import Inbox
from eventfold.messaging.kafka import KafkaConsumer, KafkaPublisher
from eventfold.messaging.relay import Message, Relay
from eventfold.projections import Runner


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class DyingPublisher(KafkaPublisher):
    """Publishes the first ``after`` messages of the first batch for real, then dies."""

    def __init__(self, servers: str, topic: str, after: int) -> None:
        super().__init__(servers, topic=topic)
        self.after = after

    async def publish(self, messages: Sequence[Message]) -> None:
        await super().publish(messages[: self.after])
        die()


async def relay(db: str, kafka: str, topic: str, after: int) -> None:
    store = await connect(db, make_registry())
    relay = Relay("to-kafka", DyingPublisher(kafka, topic, after))
    async with Runner(store, [relay], engine=create_engine(db), batch_size=40):
        await asyncio.Event().wait()


async def consumer(db: str, kafka: str, topic: str, group: str, after: int) -> None:
    effect = effect_handler("orders-view")
    handled = 0

    async def handler(record: RecordedEvent, conn: AsyncConnection) -> None:
        nonlocal handled
        if handled == after:
            die()  # inside the inbox's transaction: this one's effect is rolled back
        await effect(record, conn)
        handled += 1

    inbox = Inbox(create_engine(db), "orders-view")
    async with KafkaConsumer(inbox, handler, group=group, servers=kafka, topic=topic):
        await asyncio.Event().wait()


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "relay":
        asyncio.run(relay(args[0], args[1], args[2], int(args[3])))
    else:
        asyncio.run(consumer(args[0], args[1], args[2], args[3], int(args[4])))
