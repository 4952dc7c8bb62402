"""Group commit for the PostgreSQL store: appends that wait at the same time share one
statement and one transaction.

A store keeps a queue of appends. A group is whatever is queued when a sender starts, up
to ``GROUP_EVENTS`` events, with at most one append per stream (another append of a
stream in the group goes alone, at once, racing it as concurrent appends of one stream
always do); no delay is added to gather more. Up to ``in_flight`` groups (the pool's size)
run at once, each on its own connection: a new append starts a group at once while fewer
are running, and queues behind them otherwise, so the busier the store the larger its
groups.

Each append in a group keeps its own expected-version check and its own result (the group
statement numbers each stream after its own head and writes nothing for an append whose
check fails; that append then takes the store's usual slow path alone). When the statement
fails as a whole for a reason that may concern only some of its appends (a unique index, a
value the server refuses), every member is sent again alone, so each gets exactly the
result it would have had alone. A lost connection reports to every member.

Cancelling an append that is still queued removes it; cancelling one whose group is in
flight leaves the group to the others (the append may or may not be written, as with any
append cancelled in flight), and the statement is cancelled only when every member of the
group has given up on it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from eventfold.eventstore.backends.postgres_lifecycle import life_of, version_check
from eventfold.eventstore.encoding import EncodedEvent

GROUP_EVENTS = 16
"""At most this many events go into one group (one append may exceed it alone). Grouping
pays for small appends, whose cost is mostly their commit and round trip; a larger batch
spreads those over its own events already, and groups on several connections at once keep
the server's cores busy where one large group would keep one."""

Rows = list[asyncpg.Record]
Outcome = Rows | BaseException | None
"""What one member of a group gets: the rows written (none: its check failed or its stream
was locked), the error to raise, or None when it must be sent again alone."""

# The appends of a group, each numbered after its own stream's head and written only when
# that head lies within its [low, high] and the stream's shared lock is free (the single
# append's rules, in postgres.py, per stream). The head is materialized first, one index
# probe and one lock try per stream, before any row is inserted. Rows go in ordinal order:
# the client sorts the group by stream id, so two groups that meet on the unique index
# always wait for each other in the same order and cannot deadlock; within a stream the
# order is the version order, and so are the positions.
HEAD_CHECK = version_check("head.version", "head.deleted", "head.low", "head.high")
"""Each stream's check (its version, tombstone and soft deletion; see ``postgres_lifecycle``)."""
APPEND_GROUP = f"""
WITH head AS MATERIALIZED (
    SELECT r.ord, r.stream_id, r.low, r.high,
           (SELECT coalesce(max(e.stream_version), 0) FROM eventfold_events AS e
            WHERE e.stream_id = r.stream_id) AS version,
           pg_try_advisory_xact_lock_shared(hashtextextended(r.stream_id, 0)) AS free,
           {life_of("r.stream_id")} AS deleted
    FROM unnest($1::text[], $2::integer[], $3::integer[])
             WITH ORDINALITY AS r(stream_id, low, high, ord)
)
INSERT INTO eventfold_events
    (stream_id, stream_version, event_id, event_type, schema_version, data, metadata)
SELECT head.stream_id, head.version + b.number, b.event_id, b.event_type, b.schema_version,
       b.data, b.metadata
FROM unnest($4::bigint[], $5::integer[], $6::uuid[], $7::text[], $8::integer[],
            $9::jsonb[], $10::jsonb[])
         WITH ORDINALITY AS b(request, number, event_id, event_type, schema_version, data,
                              metadata, ord)
JOIN head ON head.ord = b.request
WHERE {HEAD_CHECK} AND head.free
ORDER BY b.ord
RETURNING stream_version, position, transaction_id::text::bigint, stream_id
"""


@dataclass(eq=False, slots=True)
class PendingAppend:
    """One append waiting for (or in) a group."""

    stream_id: str
    batch: Sequence[EncodedEvent]
    low: int
    high: int
    query: str
    """The append's own statement and arguments, for sending it alone."""
    args: tuple[Any, ...]
    done: asyncio.Future[Outcome] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    group: Group | None = None
    """Its group, once it is in one."""
    abandoned: bool = False


@dataclass(eq=False, slots=True)
class Group:
    """Appends sent together, and the task sending them."""

    members: list[PendingAppend]
    sender: asyncio.Task[None]


def group_arguments(group: Sequence[PendingAppend]) -> tuple[Any, ...]:
    """The arguments of ``APPEND_GROUP`` for appends of distinct streams, sorted by stream."""
    ordered = sorted(group, key=lambda item: item.stream_id)
    return statement_arguments([(i.stream_id, i.batch, i.low, i.high) for i in ordered])


def statement_arguments(
    parts: Sequence[tuple[str, Sequence[EncodedEvent], int, int]],
) -> tuple[Any, ...]:
    """The arguments of ``APPEND_GROUP`` (and the statements made from it) for parts given
    as (stream id, batch, lowest and highest version accepted), in the order given."""
    request: list[int] = []
    number: list[int] = []
    events: list[EncodedEvent] = []
    for index, (_, batch, _, _) in enumerate(parts, start=1):
        request.extend([index] * len(batch))
        number.extend(range(1, len(batch) + 1))
        events.extend(batch)
    return (
        [stream_id for stream_id, _, _, _ in parts],
        [low for _, _, low, _ in parts],
        [high for _, _, _, high in parts],
        request,
        number,
        [event.event_id for event in events],
        [event.event_type for event in events],
        [event.schema_version for event in events],
        [event.data for event in events],
        [event.metadata for event in events],
    )


def rows_by_stream(group: Sequence[PendingAppend], rows: Rows) -> list[Outcome]:
    """Each member's rows of an ``APPEND_GROUP`` result, in the group's order."""
    written: dict[str, Rows] = {item.stream_id: [] for item in group}
    for row in rows:
        written[row[3]].append(row)
    return [written[item.stream_id] for item in group]


Send = Callable[[list[PendingAppend]], Awaitable[list[Outcome]]]


class GroupCommit:
    """The queue of one store's appends and the tasks that send them in groups."""

    def __init__(self, send: Send, in_flight: int) -> None:
        self._send = send
        self._limit = in_flight
        self._queue: collections.deque[PendingAppend] = collections.deque()
        self._senders: set[asyncio.Task[None]] = set()
        self._starting: asyncio.Task[None] | None = None
        """A sender started that has not taken its group yet (it will take what is queued)."""

    async def append(self, item: PendingAppend) -> Rows | None:
        """The rows ``item`` wrote (none when its check failed), None when it must be sent
        alone; raises what its group's failure means for it."""
        self._queue.append(item)
        if self._starting is None and len(self._senders) < self._limit:
            self._start_sender()
        try:
            outcome = await item.done  # cancelled with the caller: a sender skips it
        except asyncio.CancelledError:
            await self._abandon(item)
            raise
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def close(self) -> None:
        """Wait for the groups in flight."""
        if self._senders:
            await asyncio.wait(self._senders)

    def _start_sender(self) -> None:
        task = asyncio.get_running_loop().create_task(self._send_next())
        self._starting = task
        self._senders.add(task)
        task.add_done_callback(self._sender_done)

    def _sender_done(self, task: asyncio.Task[None]) -> None:
        self._senders.discard(task)
        if self._starting is task:
            self._starting = None  # cancelled before it ran
        if self._queue and self._starting is None and len(self._senders) < self._limit:
            self._start_sender()

    async def _send_next(self) -> None:
        self._starting = None
        group = self._take_group()
        if not group:
            return
        try:
            outcomes: list[Outcome] = await self._send(group)
        except asyncio.CancelledError:
            for item in group:
                item.done.cancel()
            raise
        except Exception as exc:  # not the server's answer: every member meets it
            outcomes = [exc] * len(group)
        for item, outcome in zip(group, outcomes, strict=True):
            if not item.done.done():
                item.done.set_result(outcome)

    def _take_group(self) -> list[PendingAppend]:
        """The appends queued now, oldest first, up to ``GROUP_EVENTS`` events (the rest
        stay queued). A group holds one append per stream: another append of a stream in
        the group goes alone at once, racing it as two appends of one stream always do."""
        sender = asyncio.current_task()
        assert sender is not None
        group: list[PendingAppend] = []
        taken = Group(group, sender)
        streams: set[str] = set()
        events = 0
        while self._queue:
            item = self._queue[0]
            if group and events + len(item.batch) > GROUP_EVENTS:
                break
            self._queue.popleft()
            if item.done.done():
                continue  # its caller was cancelled
            if item.stream_id in streams:
                item.done.set_result(None)
                continue
            item.group = taken
            group.append(item)
            streams.add(item.stream_id)
            events += len(item.batch)
        if self._queue and self._starting is None and len(self._senders) < self._limit:
            self._start_sender()
        return group

    async def _abandon(self, item: PendingAppend) -> None:
        """The caller of ``item`` was cancelled: drop it if still queued; otherwise cancel
        its group's statement once no member waits for it, and wait until it has ended."""
        item.abandoned = True
        if item.group is None:
            with contextlib.suppress(ValueError):  # not there when sent alone already
                self._queue.remove(item)
            return
        if all(member.abandoned for member in item.group.members):
            item.group.sender.cancel()
            await asyncio.wait([item.group.sender])
