"""A test application for the multi-process runner tests, and the runner process itself.

``app`` has three projections whose read models make a double effect visible:

- ``mp_ledger`` and ``mp_audit`` insert one row per applied event with no uniqueness on the
  event id, so an event applied twice shows up as two rows (a primary key would turn the
  second application into a parked event and hide it);
- ``mp_tally`` keeps a counter and a sum per stream, checked against the log.

Each projection also writes one row per batch into a batch table of its own, in the batch's
transaction: who committed which range, so a test sees the first batch a new holder commits.
Every row carries the applying process's pid.

Run as ``python -m runner_child URL --holder NAME [--lease-ttl S]``: it starts a runner of
``app``, prints ``ready <pid>`` and serves until SIGTERM or SIGINT (printing ``stopping``),
then stops gracefully (the batch in progress commits), prints ``stopped`` and exits 0. The
same ``app`` serves ``eventfold run --app runner_child:app``.

A side channel for the checkpoint-atomicity test: with ``EVENTFOLD_MP_STALL`` set to
``projection:seq:path``, that projection, in the batch holding the event with that ``seq``,
writes its rows, then writes ``path`` (the pid) and blocks inside the transaction until the
process gets SIGUSR1 (the batch then goes on and commits) or is killed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from eventfold import App
from eventfold.eventstore import Event
from eventfold.projections import Projection
from eventfold.projections.projection import ReadModel
from eventfold.projections.subscriber import Delivery

STALL_ENV = "EVENTFOLD_MP_STALL"
"""``projection:seq:path``: block in the batch holding that seq, after writing ``path``,
until SIGUSR1."""

READY = "ready"
STOPPING = "stopping"
STOPPED = "stopped"


class Ticked(Event):
    """The first event of the test log; ``seq`` numbers events across all streams."""

    seq: int


class Tocked(Event):
    """The second event type (``mp_audit`` only receives these)."""

    seq: int


def _batch_table(prefix: str, metadata: sa.MetaData) -> sa.Table:
    """One row per committed batch: who applied which stretch of the log."""
    return sa.Table(
        f"{prefix}_batches",
        metadata,
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("first_position", sa.BigInteger(), nullable=False),
        sa.Column("last_position", sa.BigInteger(), nullable=False),
        sa.Column(
            "applied_at", sa.Float(), nullable=False,
            server_default=sa.text("extract(epoch from clock_timestamp())"),
        ),
    )


async def _stall_if_asked(name: str, batch: Sequence[Delivery]) -> None:
    """Block inside the batch's transaction if the test asked for it (see the module doc)."""
    spec = os.environ.get(STALL_ENV)
    if not spec:
        return
    projection, seq, path = spec.split(":", 2)
    if projection != name or not any(
        getattr(delivery.event, "seq", None) == int(seq) for delivery in batch
    ):
        return
    # Written to a temporary name and renamed, so the test never reads half a file.
    marker = Path(path)
    partial = marker.with_suffix(".partial")
    partial.write_text(str(os.getpid()))
    partial.replace(marker)
    await _released().wait()


_release: asyncio.Event | None = None


def _released() -> asyncio.Event:
    """Set by SIGUSR1: lets a stalled batch go on (and commit)."""
    global _release
    if _release is None:
        _release = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, _release.set)
    return _release


class _Recorded(Projection):
    """Inserts one row per applied event (no unique key: a double effect stays visible)."""

    applied: ClassVar[sa.Table]
    batches: ClassVar[sa.Table]
    handled: ClassVar[frozenset[str]]

    @property
    def event_types(self) -> frozenset[str] | None:
        """The types this projection receives (declared by ``handled``)."""
        return self.handled

    async def apply_batch(self, batch: Sequence[Delivery], model: ReadModel) -> None:
        """Insert the batch's rows at once (the same effect as one by one), then the
        batch's own row."""
        if not batch:
            return
        pid = os.getpid()
        await model.connection.execute(
            model.tables[self.applied.name].insert(),
            [
                {
                    "event_id": d.record.event_id,
                    "stream_id": d.record.stream_id,
                    "position": d.record.position,
                    "pid": pid,
                }
                for d in batch
            ],
        )
        await model.connection.execute(
            model.tables[self.batches.name].insert().values(
                pid=pid, events=len(batch), first_position=batch[0].record.position,
                last_position=batch[-1].record.position,
            )
        )
        await _stall_if_asked(self.name, batch)


def _applied_table(name: str, metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("stream_id", sa.Text(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
    )


class Ledger(_Recorded):
    """Every event, one row each."""

    name = "mp_ledger"
    metadata = sa.MetaData()
    applied = _applied_table("mp_ledger", metadata)
    batches = _batch_table("mp_ledger", metadata)
    handled = frozenset({Ticked.event_type, Tocked.event_type})


class Audit(_Recorded):
    """``Tocked`` events only, one row each."""

    name = "mp_audit"
    metadata = sa.MetaData()
    applied = _applied_table("mp_audit", metadata)
    batches = _batch_table("mp_audit", metadata)
    handled = frozenset({Tocked.event_type})


class Tally(Projection):
    """Per stream: how many events and the sum of their ``seq`` (a counter read model)."""

    name = "mp_tally"
    metadata = sa.MetaData()
    streams = sa.Table(
        "mp_tally",
        metadata,
        sa.Column("stream_id", sa.Text(), primary_key=True),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("seq_sum", sa.BigInteger(), nullable=False),
    )
    batches = _batch_table("mp_tally", metadata)

    @property
    def event_types(self) -> frozenset[str] | None:
        """Both event types."""
        return frozenset({Ticked.event_type, Tocked.event_type})

    async def apply_batch(self, batch: Sequence[Delivery], model: ReadModel) -> None:
        """Add the batch's counts per stream (the same effect as adding one by one)."""
        if not batch:
            return
        counts: dict[str, tuple[int, int]] = {}
        for delivery in batch:
            events, seq_sum = counts.get(delivery.record.stream_id, (0, 0))
            seq = int(delivery.record.data["seq"])
            counts[delivery.record.stream_id] = (events + 1, seq_sum + seq)
        table = model.tables[self.streams.name]
        for stream_id, (events, seq_sum) in counts.items():
            statement = postgresql.insert(table).values(
                stream_id=stream_id, events=events, seq_sum=seq_sum
            )
            await model.connection.execute(
                statement.on_conflict_do_update(
                    index_elements=["stream_id"],
                    set_={
                        "events": table.c.events + statement.excluded.events,
                        "seq_sum": table.c.seq_sum + statement.excluded.seq_sum,
                    },
                )
            )
        await model.connection.execute(
            model.tables[self.batches.name].insert().values(
                pid=os.getpid(), events=len(batch), first_position=batch[0].record.position,
                last_position=batch[-1].record.position,
            )
        )
        await _stall_if_asked(self.name, batch)


app = App(events=[Ticked, Tocked], projections=[Ledger(), Audit(), Tally()])
"""The application the runner processes serve."""

PROJECTIONS: tuple[type[Ledger] | type[Audit] | type[Tally], ...] = (Ledger, Audit, Tally)


async def serve(url: str, holder: str, lease_ttl: float, batch_size: int) -> None:
    """Run ``app``'s projections until SIGTERM/SIGINT, then stop gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def stopping() -> None:
        # Said out loud so a test knows the signal arrived before it lets a batch go on.
        print(STOPPING, flush=True)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping)
    _released()  # SIGUSR1 is handled from the start, so it never kills the process
    async with app.connect(url) as running:
        runner = running.runner(
            holder=holder, lease_ttl=lease_ttl, lease_retry=min(0.2, lease_ttl / 4),
            batch_size=batch_size,
        )
        await runner.start()
        print(READY, os.getpid(), flush=True)
        await stop.wait()
        await runner.stop()
    print(STOPPED, flush=True)


def main() -> None:
    """Parse the command line and serve."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--holder", required=True)
    parser.add_argument("--lease-ttl", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=25)
    args = parser.parse_args()
    asyncio.run(serve(args.url, args.holder, args.lease_ttl, args.batch_size))


if __name__ == "__main__":
    main()
