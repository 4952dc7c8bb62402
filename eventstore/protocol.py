"""The port every event store backend implements."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from eventfold.eventstore.event import Event
from eventfold.eventstore.keys import KeyStore
from eventfold.eventstore.lifecycle import OnScavengeProgress, Scavenge, StreamLife
from eventfold.eventstore.records import (
    ANY,
    START,
    AppendResult,
    ExpectedVersion,
    GlobalPosition,
    HorizonHolder,
    NewEvent,
    RecordedEvent,
    StreamAppend,
    StreamInfo,
)
from eventfold.eventstore.registry import EventRegistry
from eventfold.eventstore.shredder import Forgetting
from eventfold.eventstore.typed_stream import TypedStream


@runtime_checkable
class EventStore(Protocol):
    """An append-only store of event streams with a global log.

    Open one with ``eventfold.eventstore.connect(url, registry)``; use it as an async context
    manager (or call ``close``). Every read applies the registry's upcasters.
    """

    registry: EventRegistry
    url: str
    """The store's URL with any password masked."""

    @property
    def keys(self) -> KeyStore:
        """The keys of data subjects whose personal data the store seals (for copies; see
        docs/personal-data.md)."""
        ...

    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent | Event],
        *,
        expected_version: ExpectedVersion = ANY,
    ) -> AppendResult:
        """Append a batch atomically.

        Raises ``ConcurrencyError`` (with expected and actual versions) when the stream is
        not at ``expected_version``; nothing of the batch is written then. Re-appending
        events whose ids are already stored, in the same stream and order, is a no-op that
        returns the original result.
        """
        ...

    async def append_streams(self, appends: Sequence[StreamAppend]) -> list[AppendResult]:
        """Append to several streams as one unit: every stream's batch, or none.

        Each ``StreamAppend`` keeps its own expected version; when any stream is not
        where its part expects it, ``StreamsConflict`` (a ``ConcurrencyError``) names
        every such stream with its expected and actual version, and nothing is written.
        The results line up with ``appends``. The call's events are one transaction in
        the global log, contiguous, stream by stream in stream id order. A stream may
        appear once per call, and arguments are checked as ``append`` checks them,
        before anything is written. Sending the same call again after a lost reply
        stores nothing and returns the original results; a call of which only some parts
        are stored raises ``DuplicateEventId``.
        """
        ...

    async def import_events(self, records: Sequence[RecordedEvent]) -> None:
        """Store recorded events as they are, in one transaction: ids, stream ids and
        versions, types, schema versions, data, metadata and recorded times (no upcaster,
        no validation against event classes). For copies and restores; applications
        ``append``.

        The store gives them its own positions and transaction ids, after everything it
        holds, in the order given: the global log keeps their order. Each stream's first
        event of the batch must follow on from the stream's stored version, and no event
        id may be stored already: ``ImportRefused`` says which event broke the rule, and
        nothing of the batch is written then.
        """
        ...

    async def read_stream(
        self,
        stream_id: str,
        *,
        from_version: int | None = None,
        to_version: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
        as_of: datetime | None = None,
    ) -> list[RecordedEvent]:
        """Events of one stream, forwards from ``from_version`` (default: the first) or
        backwards from it (default: the last), up to ``to_version`` inclusive, and only
        those recorded at or before ``as_of`` when given."""
        ...

    async def read_typed_stream(
        self,
        stream_id: str,
        *,
        from_version: int | None = None,
        to_version: int | None = None,
        as_of: datetime | None = None,
        skip_unknown: bool = False,
    ) -> TypedStream:
        """The typed events of one stream, forwards, for a fold: ``read_stream``'s events
        decoded by the registry as they are iterated (see ``TypedStream``), most straight
        from their stored JSON. ``skip_unknown`` passes over types the registry lacks."""
        ...

    async def read_all(
        self,
        *,
        after: GlobalPosition = START,
        limit: int = 1000,
        event_types: Collection[str] | None = None,
        partition: tuple[int, int] | None = None,
    ) -> list[RecordedEvent]:
        """The next batch of the global log after ``after``, in log order.

        Never passes over an event that commits later at a lower position: continue
        from the last returned event's ``global_position``. ``event_types`` narrows the
        read to those types, including events stored under names that upcasters rename or
        split into them (``registry.stored_types``); a split may then also yield records
        of other types. ``partition=(index, count)`` narrows it to the events of the
        streams whose id falls in that partition (``records.partition_of``).
        """
        ...

    async def head(self) -> GlobalPosition:
        """The position of the last event readers can see (``START`` when empty)."""
        ...

    async def committed_head(self) -> GlobalPosition:
        """The position of the last committed event, whether readers see it yet or not.

        On PostgreSQL an event becomes visible to ``read_all`` only once every older
        transaction in the cluster has finished, so ``head`` can lag behind a fresh
        commit; to wait for everything written so far, wait for this position (e.g.
        ``runner.wait_until(await store.committed_head())``). Elsewhere it is ``head``.
        """
        ...

    async def stream_version(self, stream_id: str) -> int:
        """The stream's version (0 when it has no events)."""
        ...

    async def list_streams(
        self, *, category: str | None = None, after: str | None = None, limit: int = 100
    ) -> list[StreamInfo]:
        """Streams ordered by id, optionally of one category, after a stream id. A stream
        deleted (soft or hard) by its last event reads as absent and is not listed; once
        recreated it is again."""
        ...

    async def stream_life(self, stream_id: str) -> StreamLife:
        """What deletions and truncations left of the stream: ``LIVE`` (readable from 1,
        never deleted) for a stream never deleted or truncated, or never written. It reads
        as not found at its version ``v`` when ``life.reads_as_absent(v)``."""
        ...

    async def read_event(self, event_id: uuid.UUID) -> list[RecordedEvent]:
        """The event with this id, wherever it lies: empty when none has it, several
        records when an upcaster splits it. (A process manager checks with it whether a
        command's events are stored already.)"""
        ...

    async def read_correlation(self, correlation_id: str) -> list[RecordedEvent]:
        """Every event of one correlation, in log order: those whose metadata's
        ``correlation_id`` is ``correlation_id``, and the event whose id it is (the one
        that started the conversation, with no correlation id of its own). Committed
        events that readers of the global log do not see yet are included: this answers
        a diagnosis (``eventfold events trace``), not a subscriber."""
        ...

    async def archive_stream(self, stream_id: str, *, before: int | None = None) -> int:
        """Move the stream's events out of the hot table into the archive, in short
        transactions of a batch each: all but its last event, or those whose version is
        below ``before``. Returns how many moved (0 when there was nothing to move; running
        it again or twice at once moves each event once).

        The last event stays hot: it carries the stream's version, so appends, expected
        versions and ``list_streams`` work as before and versions continue. Ordinary reads
        (``read_stream``, ``read_typed_stream``, ``read_all``, ``read_event``) no longer see
        archived events; ``read_stream_with_archive`` and ``read_all_with_archive`` do.
        See docs/lifecycle.md.
        """
        ...

    async def read_stream_with_archive(self, stream_id: str) -> list[RecordedEvent]:
        """The stream's whole history, forwards: its archived events, then its hot ones."""
        ...

    async def read_all_with_archive(
        self, *, after: GlobalPosition = START, limit: int = 1000
    ) -> list[RecordedEvent]:
        """The next batch of the whole global log after ``after``, archived events
        included, in log order (as ``read_all``: continue from the last returned event's
        ``global_position``). For a full replay or an export; subscribers read ``read_all``.
        """
        ...

    async def forget(self, subject: str, *, dry_run: bool = False) -> Forgetting:
        """Destroy the key of a data subject: from then on, every read gives its
        ``PersonalData`` fields as their placeholders, and appends of new personal data
        of it raise ``SubjectForgotten``. Snapshots and read models are not touched here
        (``Running.forget`` deletes the snapshots). ``dry_run`` only says what would be
        destroyed. See docs/personal-data.md."""
        ...

    async def delete_stream(
        self, stream_id: str, *, expected_version: int | None = None, hard: bool = False
    ) -> AppendResult:
        """Delete a stream by appending ``StreamDeleted`` to it (``expected_version`` as
        ``append``'s; None: any).

        Soft (the default): the stream then reads as not found (``read_stream`` empty,
        ``Repository.get`` raises ``AggregateNotFound``) until an append recreates it
        (``NO_STREAM`` matches it again; versions continue after the deletion event). Hard:
        a tombstone, every later append raises ``StreamTombstoned``. The events stay in the
        table, and in the global log, until ``scavenge``. See docs/lifecycle.md.
        """
        ...

    async def truncate_stream(
        self, stream_id: str, before: int, *, expected_version: int | None = None
    ) -> AppendResult:
        """Stop reading the stream's events before version ``before`` (1 .. version + 1;
        ``InvalidAppend`` otherwise) by appending ``StreamTruncated(before=...)`` to it.
        The events stay in the table, and in the global log, until ``scavenge``."""
        ...

    async def scavenge(
        self, *, dry_run: bool = False, on_progress: OnScavengeProgress | None = None
    ) -> Scavenge:
        """Physically remove the events that deletions and truncations hid (the
        ``StreamDeleted`` and ``StreamTruncated`` events stay), with the stream's snapshots
        of those versions where the store keeps snapshots, in batches of short
        transactions. ``dry_run`` only counts them. The global log keeps its order and
        checkpoints stay valid (positions get gaps)."""
        ...

    async def horizon_holders(self) -> list[HorizonHolder]:
        """Sessions with an open write transaction, oldest first: the oldest holds back
        what ``read_all`` sees (name it when projections lag). Only PostgreSQL has such a
        horizon; other stores return none."""
        ...

    async def wait_for_events(self, after: GlobalPosition, timeout: float) -> bool:
        """Wait until the log has events after ``after`` or the timeout passes.

        Returns whether there are new events. Uses LISTEN/NOTIFY on PostgreSQL, polling
        elsewhere.
        """
        ...

    async def close(self) -> None:
        """Release connections."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
