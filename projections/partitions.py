"""Partitioned subscribers: a subscriber split into N units of work shared by the runners.

A subscriber that declares ``partitions = N`` (N > 1) is served as N partitions. Partition
``i`` gets the events whose partition key (the stream id unless the subscriber says
otherwise) hashes to ``i``, in log order; it has its own checkpoint, lease and parked
events, all stored under ``"<name>/<i>"``. Per-key order and exactly-once hold per
partition exactly as for an unpartitioned subscriber. An unpartitioned one is partition 0
of 1 and keeps its plain name.

The hash is the first four bytes of the key's MD5 modulo N (``records.partition_of``):
stable across processes, machines and Python versions (Python's own ``hash`` of a str is
salted per process), and computed by PostgreSQL too, so when the key is the stream id the
store returns only the partition's events. A key of the subscriber's own (read from the
event) is filtered here instead, after each partition has read the whole log.

Runners share partitions fairly (``Share``): each runner keeps a membership row
(``"<name>@<holder>"``) in the lease table while it serves the subscriber; the live members,
sorted, give each runner its target (N // R, plus one for the first N % R). A runner takes
free or expired partitions while it holds fewer than its target and releases its surplus
when it holds more, so a runner that joins gets its share within a few lease periods and a
dead one's partitions are taken over once their leases expire.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from eventfold.eventstore.records import RecordedEvent, partition_of
from eventfold.eventstore.schema import checkpoints, leases
from eventfold.projections.database import Database
from eventfold.projections.errors import PartitionsChanged
from eventfold.projections.leases import Lease

MEMBER = -1
"""The ``partition`` of a runner's membership row in the lease table."""


@runtime_checkable
class Partitioned(Protocol):
    """A subscriber that may be split into partitions (``Projection`` is one)."""

    @property
    def name(self) -> str:
        """The subscriber's stable name."""
        ...

    @property
    def partitions(self) -> int:
        """How many partitions to serve it as (1: unpartitioned)."""
        ...

    def partition_key(self, record: RecordedEvent) -> str:
        """What decides an event's partition (events with one key keep their order)."""
        ...


def stream_key(subscriber: object, record: RecordedEvent) -> str:
    """The default partition key, the stream id (the store filters partitions by it)."""
    return record.stream_id


def partition_name(name: str, index: int) -> str:
    """The name partition ``index`` of subscriber ``name`` is stored under."""
    return f"{name}/{index}"


@dataclass(frozen=True, slots=True)
class Partition:
    """Partition ``index`` of ``count``: which events it takes."""

    index: int
    count: int
    key: Callable[[RecordedEvent], str] | None = None
    """The subscriber's own partition key; None: the stream id."""

    def accepts(self, record: RecordedEvent) -> bool:
        """Whether the event belongs to this partition."""
        key = record.stream_id if self.key is None else self.key(record)
        return partition_of(key, self.count) == self.index

    @property
    def in_store(self) -> tuple[int, int] | None:
        """What ``read_all(partition=...)`` takes, when the store can filter by the key."""
        return (self.index, self.count) if self.key is None else None


def partitions_of(subscriber: object) -> list[Partition]:
    """The partitions a subscriber is served as; empty when it is unpartitioned."""
    if not isinstance(subscriber, Partitioned) or subscriber.partitions == 1:
        return []
    count = subscriber.partitions
    by_stream = getattr(type(subscriber), "partition_key", None) is stream_key
    key = None if by_stream else subscriber.partition_key
    return [Partition(index, count, key) for index in range(count)]


def unit_names(subscriber: object, name: str) -> list[str]:
    """The names the subscriber's checkpoints and leases are stored under."""
    parts = partitions_of(subscriber)
    return [partition_name(name, p.index) for p in parts] if parts else [name]


def unit_of(subscriber: object, name: str, records: Sequence[RecordedEvent]) -> str:
    """The name of the unit (``name``, or the partition's ``"<name>/<i>"``) a batch of
    ``records`` is served by: a batch is always one partition's. Subscribers that look up
    their own stored rows (parked events) from ``around_batch`` ask it."""
    parts = partitions_of(subscriber)
    if not parts or not records:
        return name
    first = parts[0]
    key = records[0].stream_id if first.key is None else first.key(records[0])
    return partition_name(name, partition_of(key, first.count))


async def stored_units(conn: AsyncConnection, name: str) -> dict[str, int]:
    """The checkpoints stored for subscriber ``name`` (its own, its partitions' whatever
    their count), with the partition count each was stored with."""
    rows = (await conn.execute(
        sa.select(checkpoints.c.name, checkpoints.c.partitions).where(
            sa.or_(
                checkpoints.c.name == name,
                sa.and_(
                    checkpoints.c.name.startswith(name + "/", autoescape=True),
                    checkpoints.c.partitions > 1,
                ),
            )
        )
    )).all()
    return {str(row[0]): int(row[1]) for row in rows}


async def check_count(
    conn: AsyncConnection, name: str, declared: int, *, rebuild: bool = True
) -> None:
    """Raise ``PartitionsChanged`` if the subscriber's checkpoints were stored with another
    partition count than ``declared`` (a rebuild is how a projection's count changes,
    ``repartition`` how a process manager's or relay's does: ``rebuild=False``)."""
    for stored in (await stored_units(conn, name)).values():
        if stored != declared:
            raise PartitionsChanged(name, stored, declared, rebuild=rebuild)


class Share:
    """One runner's fair share of one partitioned subscriber's partitions.

    ``refresh`` (every third of the lease TTL) renews this runner's membership row and
    recounts the live members; ``may_take`` and ``must_release`` are what the runner asks
    before taking a partition's lease and while it holds one.
    """

    def __init__(
        self, db: Database, name: str, count: int, holder: str, ttl: float
    ) -> None:
        self.db = db
        self.name = name
        self.count = count
        self.holder = holder
        self.member = Lease(db, f"{name}@{holder}", holder, ttl, partition=(MEMBER, count))
        self.leases: list[Lease] = []
        """The partitions' leases in this runner, by partition."""
        self.target = count
        """How many partitions this runner should hold (all, until it has seen the others)."""
        self.lock = asyncio.Lock()
        """Taken to count and take leases, so the share is never overshot."""
        self.preparing = asyncio.Lock()
        """Taken by the partitions' setups, which create the same tables."""

    def held(self) -> list[int]:
        """The partitions this runner holds."""
        return [index for index, lease in enumerate(self.leases) if lease.held]

    async def refresh(self) -> None:
        """Keep the membership row alive and recompute the target from the live members."""
        if not await self.member.renew():
            await self.member.acquire()
        self.target = _target(await self._members(), self.holder, self.count)

    async def may_take(self, index: int) -> bool:
        """Take partition ``index``'s lease if under target; return whether it is held."""
        async with self.lock:
            if len(self.held()) >= self.target:
                return False
            return await self.leases[index].acquire()

    def must_release(self, index: int) -> bool:
        """Whether this runner holds more than its share and ``index`` is one to give up
        (the highest-numbered of those it holds)."""
        held = self.held()
        surplus = len(held) - self.target
        return surplus > 0 and index in held[-surplus:]

    async def leave(self) -> None:
        """Drop the membership row so the other runners take this one's share at once."""
        await self.member.release()

    async def _members(self) -> list[str]:
        async with self.db.reading() as conn:
            rows = (await conn.execute(
                sa.select(leases.c.holder).where(
                    leases.c.name.startswith(self.name + "@", autoescape=True),
                    leases.c.partition == MEMBER,
                    leases.c.expires_at > self.db.now(),
                )
            )).scalars().all()
        return sorted(set(rows))


def _target(members: Sequence[str], holder: str, count: int) -> int:
    if holder not in members:
        return count
    runners = len(members)
    return count // runners + (1 if members.index(holder) < count % runners else 0)
