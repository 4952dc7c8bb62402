"""The repository: loads aggregates by folding their streams, saves their pending events.

All I/O of the write model happens here; aggregates stay pure. Loading reads the stream
(the store upcasts it), validates each event through the registry and applies it; with a
snapshot store it starts from the latest snapshot that fits the class and folds only the
events after it.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import math
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar, overload

from eventfold.aggregates.aggregate import Aggregate, check_aggregate
from eventfold.aggregates.errors import (
    AggregateDefinitionError,
    AggregateExists,
    AggregateNotFound,
    SnapshotStateError,
)
from eventfold.eventstore.backoff import Backoff
from eventfold.eventstore.errors import ConcurrencyError
from eventfold.eventstore.ids import keyed_event_ids, new_event_id
from eventfold.eventstore.instrumentation import traced
from eventfold.eventstore.protocol import EventStore
from eventfold.eventstore.records import (
    NO_STREAM,
    AppendResult,
    NewEvent,
    StreamAppend,
    category_of,
)
from eventfold.eventstore.typed_stream import TypedStream
from eventfold.snapshots.protocol import Snapshot, SnapshotFold, SnapshotStore

A = TypeVar("A", bound=Aggregate)

Command = Callable[[A], object]
"""What ``update`` and ``create`` run on the aggregate: a function (sync or async) that
calls its commands, e.g. ``lambda order: order.ship()``."""

logger = logging.getLogger("eventfold.aggregates")


@dataclass(frozen=True, slots=True)
class AggregateCommand(Generic[A]):
    """One aggregate's part of a unit of work (``Repository.execute_together``): which
    aggregate, and the command to run on it."""

    aggregate: type[A]
    id: str
    command: Command[A]


class Repository:
    """Loads and saves aggregates through an ``EventStore``.

    ``skip_unknown=True`` makes loads tolerant: stored events whose type the registry does
    not know are passed over (the aggregate's version still counts them) instead of raising
    ``UnknownEventType``. ``snapshots`` plugs in a snapshot store (see
    ``eventfold.snapshots.protocol.SnapshotStore``).
    """

    def __init__(
        self,
        store: EventStore,
        *,
        snapshots: SnapshotStore | None = None,
        skip_unknown: bool = False,
        aggregates: Iterable[type[Aggregate]] = (),
    ) -> None:
        self.store = store
        self.snapshots = snapshots
        self.skip_unknown = skip_unknown
        self._checked: set[type[Aggregate]] = set()
        for cls in aggregates:
            self._check(cls)

    def _check(self, cls: type[Aggregate]) -> None:
        # Checked once per class: a handler for an event type the registry lacks is a
        # wiring mistake that should fail on first use, not when such an event turns up.
        if cls not in self._checked:
            check_aggregate(cls, self.store.registry)
            self._checked.add(cls)

    @traced("eventfold.load", lambda self, cls, id, **_: {
        "eventfold.aggregate": cls.__qualname__, "eventfold.stream_id": cls.stream_id_for(id),
    })
    async def get(
        self,
        cls: type[A],
        id: str,
        *,
        version: int | None = None,
        as_of: datetime | None = None,
        skip_unknown: bool | None = None,
    ) -> A:
        """The aggregate with its stream folded in.

        ``version=k`` folds events up to version k (the state right after event k);
        ``as_of=t`` folds those recorded at or before t (timezone-aware). Both may be
        given. Raises ``AggregateNotFound`` when no event matches, ``UnknownEventType``
        for a stored type the registry lacks (unless ``skip_unknown``), and
        ``EventDecodeError`` naming the field when stored data does not validate.
        """
        self._check(cls)
        if version is not None and (isinstance(version, bool) or version < 1):
            raise ValueError(f"version must be >= 1 (the first event is version 1), got {version}")
        if as_of is not None and as_of.tzinfo is None:
            raise ValueError(
                f"as_of {as_of.isoformat()} has no timezone: pass an aware datetime "
                "(e.g. datetime.now(UTC))"
            )
        stream_id = cls.stream_id_for(id)
        aggregate: A | None = None
        if self.snapshots is not None and as_of is None:
            # A snapshot knows its version, not the time of its last event, so loads as
            # of a time always fold from the start.
            aggregate = await self._from_snapshot(cls, id, stream_id, version)
        from_version = aggregate.version + 1 if aggregate is not None else None
        skip = self.skip_unknown if skip_unknown is None else skip_unknown
        events = await self.store.read_typed_stream(
            stream_id, from_version=from_version, to_version=version, as_of=as_of,
            skip_unknown=skip,
        )
        if aggregate is not None and aggregate.version + 1 < events.readable_from:
            # The snapshot holds events the stream deleted or truncated since: a deleted
            # stream must not come back from its snapshot (docs/lifecycle.md).
            aggregate = None
            events = await self.store.read_typed_stream(
                stream_id, to_version=version, skip_unknown=skip
            )
        first = max(aggregate.version + 1 if aggregate is not None else 1, events.readable_from)
        archived_gap = events.first_version > first
        # A stream's last event never leaves the hot table, so only a load up to a version
        # or a time can find nothing there and still have archived events to fold.
        maybe_archived = not events.version and (version is not None or as_of is not None)
        if archived_gap or maybe_archived:
            # The events between were archived: the hot table alone would fold a wrong
            # state, so this (rare) load reads the stream's history with its archive.
            events = await self._with_archive(stream_id, first, version, as_of, skip)
        if aggregate is None:
            if not events.version:
                raise AggregateNotFound(cls, id, stream_id, version=version, as_of=as_of)
            aggregate = cls(id)
        if events.version:
            # Folded as they are decoded: each event is garbage once applied, so a long
            # stream never holds all its typed events at once (fewer objects for the cyclic
            # garbage collector to walk). An event that does not decode raises midway; the
            # half-folded aggregate is dropped with the error.
            aggregate._fold(events)
            # Skipped and split events still advance the version: it is the stream's, and
            # the next save must expect it.
            aggregate.version = events.version
        return aggregate

    async def _with_archive(
        self, stream_id: str, first: int, version: int | None, as_of: datetime | None,
        skip_unknown: bool,
    ) -> TypedStream:
        """The stream's events from version ``first`` (up to ``version``, recorded by
        ``as_of``), its archived ones included, typed for a fold."""
        records = [
            record
            for record in await self.store.read_stream_with_archive(stream_id)
            if record.stream_version >= first
            and (version is None or record.stream_version <= version)
            and (as_of is None or record.recorded_at <= as_of)
        ]
        last = records[-1].stream_version if records else 0
        return TypedStream(
            self.store.registry, stream_id, last, skip_unknown, records=records,
            readable_from=first,
        )

    async def _from_snapshot(
        self, cls: type[A], id: str, stream_id: str, max_version: int | None
    ) -> A | None:
        assert self.snapshots is not None
        snapshot = await self.snapshots.latest(
            stream_id, state_version=cls.state_version, max_version=max_version
        )
        if snapshot is None:
            return None
        # The store promised these, but a snapshot applied to the wrong shape or version
        # corrupts state silently; checking costs nothing.
        if (
            snapshot.stream_id != stream_id
            or snapshot.state_version != cls.state_version
            or snapshot.version < 1
            or (max_version is not None and snapshot.version > max_version)
        ):
            logger.warning(
                "ignoring snapshot of %s at version %s (state version %s): it does not match "
                "the load of %s (state version %s, up to version %s)",
                snapshot.stream_id, snapshot.version, snapshot.state_version, stream_id,
                cls.state_version, max_version,
            )
            return None
        try:
            return cls.from_snapshot(id, snapshot.version, snapshot.state)
        except SnapshotStateError as exc:
            logger.warning("ignoring snapshot, folding all events instead: %s", exc)
            return None

    @overload
    async def save(
        self,
        aggregate: Aggregate,
        /,
        *,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: uuid.UUID | None = None,
    ) -> AppendResult | None: ...

    @overload
    async def save(
        self,
        aggregate: Aggregate,
        other: Aggregate,
        /,
        *more: Aggregate,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: uuid.UUID | None = None,
    ) -> list[AppendResult | None]: ...

    async def save(
        self,
        *aggregates: Aggregate,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: uuid.UUID | None = None,
    ) -> AppendResult | list[AppendResult | None] | None:
        """Append the aggregate's pending events, expecting the version it was loaded at.

        Returns the append's result, or None when nothing was pending. Raises
        ``ConcurrencyError`` when the stream moved on since the load (reload and retry,
        or use ``update``). Event ids are assigned once per pending event, so calling
        ``save`` again after a lost reply does not store the events twice.

        Several aggregates (``save(order, stock)``) are saved as one unit of work with
        ``EventStore.append_streams``: every aggregate's events or none, each expecting
        its own loaded version; ``StreamsConflict`` (a ``ConcurrencyError``) names every
        stream that moved on. The results line up with the aggregates.

        ``idempotency_key`` (a client's request id) gives the events ids derived from it
        (``keyed_event_ids``, over all the aggregates' events in the order given), so the
        same command saved again under the same key, even
        from a fresh load or another process, stores nothing new and returns the original
        result. When the key already holds other events the store raises
        ``DuplicateEventId`` and nothing is written. When they were stored before this
        aggregate was loaded (``result.version`` is not above its
        loaded version) the aggregate in hand has them applied twice: reload it, as
        ``update`` does.
        """
        if not aggregates:
            raise TypeError("save() takes at least one aggregate")
        for aggregate in aggregates:
            self._check(type(aggregate))
        meta: Mapping[str, Any] = dict(metadata) if metadata else {}
        keyed = None if idempotency_key is None else iter(keyed_event_ids(
            idempotency_key, sum(len(aggregate._pending) for aggregate in aggregates)
        ))
        batches: list[list[NewEvent]] = []
        for aggregate in aggregates:
            ids = (
                aggregate._event_ids(new_event_id) if keyed is None
                else [next(keyed) for _ in aggregate._pending]
            )
            batches.append([
                NewEvent(event, event_id, meta)
                for event, event_id in zip(aggregate._pending, ids, strict=True)
            ])
        if len(aggregates) == 1:
            [aggregate], [batch] = aggregates, batches
            if not batch:
                return None
            result = await self.store.append(
                aggregate.stream_id, batch, expected_version=aggregate.version or NO_STREAM
            )
            await self._saved(aggregate, result)
            return result
        parts = [
            StreamAppend(aggregate.stream_id, batch, aggregate.version or NO_STREAM)
            for aggregate, batch in zip(aggregates, batches, strict=True) if batch
        ]
        results = iter(await self.store.append_streams(parts) if parts else [])
        saved: list[AppendResult | None] = []
        for aggregate, batch in zip(aggregates, batches, strict=True):
            if not batch:
                saved.append(None)
                continue
            written = next(results)
            await self._saved(aggregate, written)
            saved.append(written)
        return saved

    async def _saved(self, aggregate: Aggregate, result: AppendResult) -> None:
        previous = aggregate.version
        aggregate._mark_saved(result.version)
        # A replayed batch (result.version <= previous) was snapshotted when first saved.
        if self.snapshots is not None and result.version > previous:
            await self._after_save(aggregate, previous, result.version)

    async def _after_save(self, aggregate: Aggregate, previous: int, version: int) -> None:
        assert self.snapshots is not None
        cls = type(aggregate)

        def capture() -> Snapshot:
            return Snapshot(
                aggregate.stream_id, version, cls.state_version, aggregate.snapshot_state()
            )

        try:
            await self.snapshots.after_save(
                aggregate.stream_id, previous_version=previous, version=version,
                every=cls.snapshot_every, capture=capture,
            )
        except Exception:
            # The events are committed; a snapshot is only a shortcut for later loads, so
            # failing to take one must not report the command as failed.
            logger.warning(
                "could not take a snapshot of %s at version %s", aggregate.stream_id, version,
                exc_info=True,
            )

    async def update(
        self,
        cls: type[A],
        id: str,
        command: Command[A],
        *,
        retries: int = 3,
        metadata: Mapping[str, Any] | None = None,
        backoff: float = 0.0,
        idempotency_key: uuid.UUID | None = None,
    ) -> A:
        """Load, run ``command`` on the aggregate, save; on ``ConcurrencyError`` start over.

        The command runs again on the freshly loaded aggregate at most ``retries`` times,
        then the last ``ConcurrencyError`` propagates. ``backoff`` > 0 waits before retry
        ``n`` a random time between ``backoff * 2**(n-1)`` and ``backoff * 2**n`` seconds
        (``Backoff`` with jitter), to spread out writers that collide repeatedly. A domain
        error from the command propagates at once and saves nothing. Returns the saved
        aggregate.

        With ``idempotency_key`` (see ``save``) a repeated call whose command records the
        same events again stores nothing and returns the aggregate as the first call left
        it (loaded at that call's version), not the command applied a second time.
        """
        aggregate, _ = await self.execute(
            cls, id, command, retries=retries, metadata=metadata, backoff=backoff,
            idempotency_key=idempotency_key,
        )
        return aggregate

    async def execute(
        self,
        cls: type[A],
        id: str,
        command: Command[A],
        *,
        retries: int = 3,
        metadata: Mapping[str, Any] | None = None,
        backoff: float = 0.0,
        create: bool = False,
        event_ids: Callable[[int], uuid.UUID] | None = None,
        idempotency_key: uuid.UUID | None = None,
    ) -> tuple[A, AppendResult | None]:
        """``update``, returning the aggregate and the append's result (None when the
        command recorded nothing): the one load-decide-append-retry of the write model,
        which process managers' commands run through too.

        ``create=True`` runs the command on a new aggregate when the stream has no events
        (a concurrent first append is a conflict, retried like any other). ``event_ids(n)``
        names the ``n``-th event the command records (from 0): a caller that must append
        the same events again after a crash gives them ids derived from what it handles,
        and the store's idempotent append (or ``DuplicateEventId``) tells it so.
        """
        [(aggregate, result)] = await self._decide_and_save(
            [AggregateCommand(cls, id, command)], retries=retries, metadata=metadata,
            backoff=backoff, create=create, event_ids=event_ids,
            idempotency_key=idempotency_key,
        )
        return aggregate, result

    async def execute_together(
        self,
        commands: Sequence[AggregateCommand[Any]],
        *,
        retries: int = 3,
        metadata: Mapping[str, Any] | None = None,
        backoff: float = 0.0,
        create: bool = False,
        event_ids: Callable[[int], uuid.UUID] | None = None,
    ) -> list[tuple[Aggregate, AppendResult | None]]:
        """``execute`` for several aggregates as one unit of work: load each, run its
        command, and save them all in one ``append_streams`` (every aggregate's events or
        none). On ``ConcurrencyError`` - any of the streams moved on - every aggregate is
        loaded again and every command runs again, at most ``retries`` times. A domain
        error from any command propagates at once and saves nothing.

        Each aggregate appears once in a unit (run its commands in one function).
        ``event_ids(n)`` names the ``n``-th event of the unit, counted over the aggregates
        in the order given. Returns each aggregate with its append's result, in order.
        """
        named: set[str] = set()
        for part in commands:
            stream_id = part.aggregate.stream_id_for(part.id)
            if stream_id in named:
                raise ValueError(
                    f"{stream_id} appears twice in one unit of work: run both commands "
                    "in one function of the aggregate"
                )
            named.add(stream_id)
        if not commands:
            return []
        return await self._decide_and_save(
            commands, retries=retries, metadata=metadata, backoff=backoff, create=create,
            event_ids=event_ids, idempotency_key=None,
        )

    async def _decide_and_save(
        self,
        commands: Sequence[AggregateCommand[Any]],
        *,
        retries: int,
        metadata: Mapping[str, Any] | None,
        backoff: float,
        create: bool,
        event_ids: Callable[[int], uuid.UUID] | None,
        idempotency_key: uuid.UUID | None,
    ) -> list[tuple[Any, AppendResult | None]]:
        """The one load-decide-save-retry loop of the write model, for one aggregate or a
        unit of several."""
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        # Uncapped: ``retries`` bounds the waits.
        delays = Backoff(initial=2 * backoff, cap=math.inf, jitter=True)
        attempt = 0
        while True:
            aggregates: list[Aggregate] = []
            for part in commands:
                try:
                    aggregates.append(await self.get(part.aggregate, part.id))
                except AggregateNotFound:
                    if not create:
                        raise
                    aggregates.append(part.aggregate(part.id))
            loaded = [aggregate.version for aggregate in aggregates]
            for part, aggregate in zip(commands, aggregates, strict=True):
                await _run(part.command, aggregate)
            if event_ids is not None:
                numbers = itertools.count()
                for aggregate in aggregates:
                    ids = iter([event_ids(next(numbers)) for _ in aggregate.pending_events])
                    aggregate._event_ids(ids.__next__)
            try:
                saved = await self.save(
                    *aggregates, metadata=metadata, idempotency_key=idempotency_key
                )
            except ConcurrencyError:
                if attempt >= retries:
                    raise
                attempt += 1
                logger.debug(
                    "retrying command on %s (attempt %s)",
                    ", ".join(aggregate.stream_id for aggregate in aggregates), attempt,
                )
                if backoff > 0:
                    await asyncio.sleep(delays.delay(attempt))
                continue
            results = saved if isinstance(saved, list) else [saved]
            done: list[tuple[Any, AppendResult | None]] = []
            for part, aggregate, version, result in zip(
                commands, aggregates, loaded, results, strict=True
            ):
                if idempotency_key is not None and result is not None and result.version <= version:
                    # The key's events were in the stream already: show the state they made.
                    aggregate = await self.get(part.aggregate, part.id, version=result.version)
                done.append((aggregate, result))
            return done

    async def create(
        self,
        cls: type[A],
        id: str,
        command: Command[A],
        *,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: uuid.UUID | None = None,
    ) -> A:
        """Run ``command`` on a new aggregate and save it as a new stream.

        Raises ``AggregateExists`` when the stream already has events (nothing is
        written then). A command that records nothing stores nothing. With
        ``idempotency_key`` (see ``save``) the same call repeated after a lost reply
        returns the aggregate it created instead of raising ``AggregateExists``.
        """
        self._check(cls)
        aggregate = cls(id)
        await _run(command, aggregate)
        try:
            await self.save(aggregate, metadata=metadata, idempotency_key=idempotency_key)
        except ConcurrencyError as exc:
            raise AggregateExists(cls, id, aggregate.stream_id, exc.actual) from exc
        return aggregate

    # --- snapshots on demand --------------------------------------------------------------

    async def capture_snapshot(self, cls: type[A], id: str) -> Snapshot:
        """Load the aggregate (from its latest snapshot, if any) and capture its snapshot
        at the stream's head; nothing is stored."""
        aggregate = await self.get(cls, id)
        return Snapshot(aggregate.stream_id, aggregate.version, cls.state_version,
                        aggregate.snapshot_state())

    async def take_snapshot(self, cls: type[A], id: str) -> Snapshot:
        """Capture the aggregate's snapshot at the stream's head and store it."""
        if self.snapshots is None:
            raise ValueError(
                "this repository has no snapshot store: pass Repository(store, snapshots=...)"
            )
        snapshot = await self.capture_snapshot(cls, id)
        await self.snapshots.save(snapshot)
        return snapshot

    def snapshot_fold(self, *classes: type[Aggregate]) -> SnapshotFold:
        """A function from a stream id to its snapshot, for the snapshot sweep and CLI.

        Streams are matched to ``classes`` by category; a stream of another category
        raises ``AggregateDefinitionError`` naming it.
        """
        by_category: dict[str, type[Aggregate]] = {}
        for cls in classes:
            self._check(cls)
            other = by_category.setdefault(cls.category, cls)
            if other is not cls:
                raise AggregateDefinitionError(
                    f"{other.__qualname__} and {cls.__qualname__} share the category "
                    f"{cls.category!r}: give one of them another `category`"
                )

        async def fold(stream_id: str) -> Snapshot:
            category = category_of(stream_id)
            cls = by_category.get(category)
            if cls is None or stream_id == category:
                known = ", ".join(sorted(by_category)) or "none"
                raise AggregateDefinitionError(
                    f"no aggregate class for stream {stream_id!r} (categories known: {known}): "
                    "pass its class to snapshot_fold()"
                )
            return await self.capture_snapshot(cls, stream_id[len(category) + 1:])

        return fold


async def _run(command: Callable[[A], object], aggregate: A) -> None:
    result = command(aggregate)
    if inspect.isawaitable(result):
        await result
