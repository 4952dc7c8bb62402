"""A relay never waits for its broker with a database transaction open (issue 9).

It publishes a batch before the batch's transaction (``around_batch``) and the transaction
only records what the broker confirmed. These tests stand a publisher in for the broker
(the broker is a boundary the project does not own; the tests against the real RabbitMQ
and NATS are in ``test_messaging_rabbitmq.py`` and ``test_messaging_nats.py``) and the
database is real: a SQLite file and the test PostgreSQL server.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence

import pytest
from messaging_support import Env, Finished, ItemAdded
from transaction_probe import open_transactions

from eventfold.eventstore import NewEvent
from eventfold.eventstore.records import START
from eventfold.messaging.errors import BrokerUnavailable, MessageRejected, RelayBatchStale
from eventfold.messaging.relay import Message, Relay
from eventfold.projections import FailurePolicy, Runner, list_parked, retry_parked, skip_parked
from eventfold.projections.database import Database
from eventfold.projections.subscription import Subscription

Hook = Callable[[], Awaitable[None]]


class StandInBroker:
    """A publisher at the broker boundary: confirms in order, refuses the messages in
    ``refuse`` (a nack, after confirming those before it), is down for ``down`` calls, and
    runs ``during`` while "waiting for the confirms" and ``after`` once they came."""

    broker = "stand-in broker"

    def __init__(self) -> None:
        self.sent: list[str] = []
        """Confirmed message ids, in the order confirmed (copies included)."""
        self.tries: Counter[str] = Counter()
        self.refuse: set[str] = set()
        self.down = 0
        self.during: Hook | None = None
        self.after: Hook | None = None

    async def publish(self, messages: Sequence[Message]) -> None:
        if self.during is not None:
            await self.during()
        if self.down:
            self.down -= 1
            raise BrokerUnavailable(self.broker, "connection refused")
        for message in messages:
            self.tries[message.message_id] += 1
            if message.message_id in self.refuse:
                raise MessageRejected(self.broker, message.message_id, "nack")
            self.sent.append(message.message_id)
        if self.after is not None:
            await self.after()

    async def close(self) -> None:
        """Nothing to close."""


async def append(env: Env, *items: tuple[str, str]) -> list[str]:
    """Append one event per (stream, sku), in that order; return their ids."""
    ids: list[str] = []
    for stream_id, sku in items:
        new = NewEvent(ItemAdded(sku=sku))
        await env.store.append(stream_id, [new])
        ids.append(str(new.event_id))
    return ids


async def no_wait(seconds: float) -> None:
    """The retry backoff, without the wait (tests never sleep)."""


def subscription(env: Env, relay: Relay) -> Subscription:
    return Subscription(env.store, Database(env.engine), relay, sleep=no_wait)


async def drain(env: Env, sub: Subscription) -> None:
    """Step until every committed event is done (bounded)."""
    head = await env.store.committed_head()
    async with asyncio.timeout(60):
        while sub.done_through < head:
            await sub.step()


async def parked(env: Env, name: str) -> list[tuple[str, int, bool]]:
    """(event id, attempts, parked behind another) of the relay's parked events."""
    return [
        (str(p.event_id), p.attempts, p.blocked_by is not None)
        for p in await list_parked(env.engine, name)
    ]


async def test_no_transaction_is_open_while_the_broker_confirms(env: Env) -> None:
    """Batch, retry and parked-retry publishes all wait with nothing held."""
    a1, b1, a2 = await append(env, ("A", "a1"), ("B", "b1"), ("A", "a2"))
    broker = StandInBroker()
    look = open_transactions(env.kind, env.url)
    seen_open: list[str] = []
    calls = 0

    async def confirming_slowly() -> None:
        nonlocal calls
        calls += 1
        seen_open.extend(await asyncio.to_thread(look))
        if env.kind == "postgres":
            # Another writer commits meanwhile, and another reader sees it at once.
            new = NewEvent(Finished())
            await env.store.append(f"Other-{calls}", [new])
            seen = await env.store.read_all(after=START, limit=10_000)
            assert new.event_id in {r.event_id for r in seen}

    broker.during = confirming_slowly
    broker.refuse = {b1}
    relay = Relay("out", broker, event_types={"ItemAdded"},
                  failure=FailurePolicy(retries=1, backoff=0))
    sub = subscription(env, relay)
    await sub.setup()
    await drain(env, sub)  # publishes the batch, retries b1 once, parks it
    broker.refuse = set()
    result = await retry_parked(env.store, env.engine, relay)

    assert seen_open == []
    assert calls >= 4  # batch, again without B, b1's retry, the parked retry
    assert [str(p.event_id) for p in result.applied] == [b1]
    assert broker.sent[:2] == [a1, a2] and broker.sent[-1] == b1


async def test_a_crash_between_confirm_and_commit_publishes_the_same_ids_again(
    env: Env,
) -> None:
    ids = await append(env, ("A", "a1"), ("B", "b1"), ("A", "a2"))
    first = StandInBroker()
    sub = subscription(env, Relay("out", first))
    await sub.setup()
    step = asyncio.create_task(sub.step())

    async def crash() -> None:  # confirmed; the process dies before the commit
        step.cancel()

    first.after = crash
    with pytest.raises(asyncio.CancelledError):
        await step
    assert first.sent == ids

    again = StandInBroker()
    restarted = subscription(env, Relay("out", again))
    await restarted.setup()
    assert restarted.checkpoint == START  # nothing committed
    await drain(env, restarted)
    assert again.sent == ids
    assert restarted.checkpoint == await env.store.head()


async def test_an_outage_backs_off_with_nothing_open_logs_two_lines_and_parks_nothing(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="eventfold.projections")
    ids = await append(env, ("A", "a1"), ("B", "b1"), ("A", "a2"))
    broker = StandInBroker()
    broker.down = 5
    look = open_transactions(env.kind, env.url)
    seen_open: list[str] = []

    async def looking() -> None:
        seen_open.extend(await asyncio.to_thread(look))

    broker.during = looking
    async with Runner(env.store, [Relay("out", broker)], engine=env.engine, lease_ttl=2.0,
                      lease_retry=0.1, idle_wait=0.2, error_backoff=0.01,
                      max_error_backoff=0.05) as runner:
        await runner.wait_until(await env.store.committed_head(), timeout=30)

    assert broker.down == 0 and broker.sent == ids
    assert seen_open == []
    assert await parked(env, "out") == []
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 2, lines
    assert lines[0].startswith("out: waiting for a service it depends on (BrokerUnavailable")
    assert lines[1].startswith("out: running again after ")


@pytest.mark.parametrize("retries", [0, 2])
async def test_a_refused_message_is_retried_then_parked_and_its_stream_waits_behind_it(
    env: Env, retries: int
) -> None:
    a1, b1, a2, b2, a3 = await append(
        env, ("A", "a1"), ("B", "b1"), ("A", "a2"), ("B", "b2"), ("A", "a3"))
    broker = StandInBroker()
    broker.refuse = {a2}
    relay = Relay("out", broker, failure=FailurePolicy(retries=retries, backoff=0))
    sub = subscription(env, relay)
    await sub.setup()
    await drain(env, sub)

    assert broker.tries[a2] == 1 + retries
    assert a3 not in broker.tries  # never sent ahead of the refused one
    assert [m for m in broker.sent if m in (a1, a2, a3)] == [a1]
    assert [m for m in dict.fromkeys(broker.sent) if m in (b1, b2)] == [b1, b2]
    assert await parked(env, "out") == [(a2, 1 + retries, False), (a3, 0, True)]
    assert sub.checkpoint == await env.store.head()

    # Later events of the parked stream are not published either: they park behind it.
    a4, b3 = await append(env, ("A", "a4"), ("B", "b3"))
    await drain(env, sub)
    assert a4 not in broker.tries and broker.sent[-1] == b3
    assert [p[0] for p in await parked(env, "out")] == [a2, a3, a4]


async def test_a_parked_retry_publishes_in_order_and_stops_a_stream_at_its_first_failure(
    env: Env,
) -> None:
    a1, c1, a2, c2 = await append(env, ("A", "a1"), ("C", "c1"), ("A", "a2"), ("C", "c2"))
    broker = StandInBroker()
    broker.refuse = {a1, c1}
    relay = Relay("out", broker, failure=FailurePolicy(retries=0))
    sub = subscription(env, relay)
    await sub.setup()
    await drain(env, sub)
    assert broker.sent == []
    broker.refuse = {c1}  # A's trouble is fixed, C's is not

    result = await retry_parked(env.store, env.engine, relay)

    assert broker.sent == [a1, a2]
    assert broker.tries[c1] == 2 and c2 not in broker.tries
    assert [str(p.event_id) for p in result.applied] == [a1, a2]
    assert [str(p.event_id) for p in result.still_parked] == [c1, c2]


async def test_an_event_not_published_ahead_rolls_the_batch_back_to_be_read_again(
    env: Env,
) -> None:
    """The operator skips the parked events of a stream while the relay publishes: the
    transaction then meets events it held back, and must neither skip them nor publish
    them inline."""
    a1, a2 = await append(env, ("A", "a1"), ("A", "a2"))
    broker = StandInBroker()
    broker.refuse = {a1}
    relay = Relay("out", broker, failure=FailurePolicy(retries=0))
    sub = subscription(env, relay)
    await sub.setup()
    await drain(env, sub)
    assert [p[0] for p in await parked(env, "out")] == [a1, a2]
    a3, b1 = await append(env, ("A", "a3"), ("B", "b1"))

    async def operator_skips() -> None:
        broker.during = None
        await skip_parked(env.engine, "out", [uuid.UUID(a1), uuid.UUID(a2)])

    broker.during = operator_skips
    with pytest.raises(RelayBatchStale):
        await sub.step()
    assert a3 not in broker.tries
    await sub.reload()
    assert sub.checkpoint != await env.store.head()

    await drain(env, sub)
    assert broker.tries[a3] == 1 and broker.sent[-2:] == [a3, b1]
    assert await parked(env, "out") == []
