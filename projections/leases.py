"""Exclusive holding of a subscriber: a lease row with an expiry on the database's clock.

Why a lease table rather than a PostgreSQL advisory lock: the same code serves PostgreSQL
and SQLite; the holder is visible to ``status`` from any process; and failover is bounded
by the lease's time to live even when a holder's machine vanishes without closing its TCP
connection (an advisory lock would stay held until the server's TCP keepalive gave up,
which defaults to hours). A holder renews every third of the TTL; a holder killed with
kill -9 is replaced within one TTL plus the contenders' retry interval.

The lease row also carries the holder's view of the subscriber (``report``): its state
(running, retrying after an error, halted), since when, and the last error, so that
``status`` run from any process shows what the holder is doing.

A lease is a courtesy that keeps runners from doing the same work twice. Correctness does
not rest on it: a holder that lost its lease without noticing (paused past the TTL) still
cannot commit a batch, because the checkpoint advances by compare-and-set.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass

import sqlalchemy as sa

from eventfold.eventstore.schema import leases
from eventfold.projections.database import Database


def default_holder() -> str:
    """A name for this process that says where it runs: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    """Who holds a lease and for how much longer."""

    name: str
    holder: str
    acquired_at: float
    expires_at: float
    now: float
    state: str | None = None
    """What the holder reported doing (``Lease.report``); None until it reported."""
    state_since: float | None = None
    last_error: str | None = None

    @property
    def active(self) -> bool:
        """Whether the lease is still held (not expired)."""
        return self.expires_at > self.now


class Lease:
    """One holder's claim on one name."""

    def __init__(
        self,
        db: Database,
        name: str,
        holder: str,
        ttl: float,
        *,
        partition: tuple[int, int] = (0, 1),
    ) -> None:
        if ttl <= 0:
            raise ValueError("a lease's ttl must be positive")
        self.db = db
        self.name = name
        self.holder = holder
        self.ttl = ttl
        self.partition = partition
        """Which partition of how many the lease is for (recorded on its row)."""
        self.token: int | None = None

    @property
    def held(self) -> bool:
        """Whether this holder believes it holds the lease (the last renewal succeeded)."""
        return self.token is not None

    async def acquire(self) -> bool:
        """Take the lease if it is free, expired, or already ours; return whether we hold it."""
        now = self.db.now()
        statement = self.db.insert(leases).values(
            name=self.name, holder=self.holder, token=1, acquired_at=now,
            expires_at=now + self.ttl, partition=self.partition[0],
            partitions=self.partition[1],
        )
        statement = statement.on_conflict_do_update(
            index_elements=["name"],
            set_={
                "holder": statement.excluded.holder,
                "token": leases.c.token + 1,
                "acquired_at": now,
                "expires_at": now + self.ttl,
                "state": None,
                "state_since": None,
                "last_error": None,
                "partition": self.partition[0],
                "partitions": self.partition[1],
            },
            where=sa.or_(leases.c.expires_at < now, leases.c.holder == self.holder),
        ).returning(leases.c.token)
        async with self.db.transaction() as conn:
            row = (await conn.execute(statement)).first()
        self.token = None if row is None else int(row[0])
        return self.token is not None

    async def renew(self) -> bool:
        """Extend the lease; returns False (and forgets it) if another holder has it now."""
        if self.token is None:
            return False
        async with self.db.transaction() as conn:
            result = await conn.execute(
                leases.update()
                .where(
                    leases.c.name == self.name,
                    leases.c.holder == self.holder,
                    leases.c.token == self.token,
                )
                .values(expires_at=self.db.now() + self.ttl)
            )
        if result.rowcount != 1:
            self.token = None
        return self.token is not None

    async def report(self, state: str, last_error: str | None) -> bool:
        """Record on the lease row what this holder is doing with the subscriber (for
        ``status`` in other processes); returns False if the lease is not ours."""
        if self.token is None:
            return False
        async with self.db.transaction() as conn:
            result = await conn.execute(
                leases.update()
                .where(
                    leases.c.name == self.name,
                    leases.c.holder == self.holder,
                    leases.c.token == self.token,
                )
                .values(state=state, state_since=self.db.now(), last_error=last_error)
            )
        return bool(result.rowcount == 1)

    async def release(self) -> None:
        """Give the lease up so another runner takes over at once."""
        token, self.token = self.token, None
        if token is None:
            return
        async with self.db.transaction() as conn:
            await conn.execute(
                leases.delete().where(
                    leases.c.name == self.name,
                    leases.c.holder == self.holder,
                    leases.c.token == token,
                )
            )


async def lease_info(db: Database, names: list[str]) -> dict[str, LeaseInfo]:
    """The current lease rows (expired ones included; see ``LeaseInfo.active``)."""
    if not names:
        return {}
    async with db.reading() as conn:
        rows = (await conn.execute(
            sa.select(
                leases.c.name, leases.c.holder, leases.c.acquired_at, leases.c.expires_at,
                db.now(), leases.c.state, leases.c.state_since, leases.c.last_error,
            ).where(leases.c.name.in_(names))
        )).all()
    return {
        row[0]: LeaseInfo(
            row[0], row[1], float(row[2]), float(row[3]), float(row[4]), row[5],
            None if row[6] is None else float(row[6]), row[7],
        )
        for row in rows
    }
