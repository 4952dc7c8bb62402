"""An in-memory event store for unit tests: the reference behaviour of the protocol."""

from __future__ import annotations

import asyncio
import bisect
import copy
import dataclasses
import json
import uuid
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

from eventfold.eventstore.archiving import archive_batches, check_archive
from eventfold.eventstore.encoding import (
    StoredFacts,
    check_expected_version,
    encode_batch,
    replayed,
)
from eventfold.eventstore.errors import ConcurrencyError
from eventfold.eventstore.event import Event
from eventfold.eventstore.import_batch import (
    check_follows_on,
    check_import,
    check_not_tombstoned,
    duplicate_id,
)
from eventfold.eventstore.instrumentation import traced_append
from eventfold.eventstore.keys import KeyStore, MemoryKeyStore
from eventfold.eventstore.lifecycle import (
    LIVE,
    OnScavengeProgress,
    Scavenge,
    ScavengeProgress,
    StreamLife,
    changed_life,
    check_open,
    check_truncate,
    delete_expected,
    life_changes,
    matches,
)
from eventfold.eventstore.read_arguments import (
    check_list_limit,
    check_log_read,
    check_stream_id_read,
    check_stream_read,
)
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
    category_of,
    partition_of,
)
from eventfold.eventstore.registry import EventRegistry
from eventfold.eventstore.shredder import Forgetting, Shredder
from eventfold.eventstore.stream_appends import (
    check_appends,
    conflicts,
    in_call_order,
    replayed_call,
)
from eventfold.eventstore.system_events import (
    SYSTEM_EVENT_TYPES,
    StreamDeleted,
    StreamTruncated,
)
from eventfold.eventstore.typed_stream import TypedStream


class MemoryEventStore:
    """Holds events in process memory; each instance is its own empty store."""

    def __init__(self, registry: EventRegistry, url: str = "memory://") -> None:
        self.registry = registry
        self.url = url
        self._log: list[RecordedEvent] = []
        self._streams: dict[str, list[RecordedEvent]] = {}
        self._by_id: dict[object, RecordedEvent] = {}
        # Ids of archived events: they stay in the lists above (a stream's version is its
        # list's length) and every ordinary read leaves them out.
        self._archived: set[uuid.UUID] = set()
        self._lives: dict[str, StreamLife] = {}
        # Events ever written: positions continue after it, whatever a scavenge removed.
        self._written = 0
        self._changed = asyncio.Condition()
        # Each instance is a store of its own: its keys are cached apart from any other's.
        self._shredder = Shredder(
            registry, MemoryKeyStore(), self._sealed_streams, database=str(uuid.uuid4())
        )

    @property
    def keys(self) -> KeyStore:
        return self._shredder.keys

    @traced_append
    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent | Event],
        *,
        expected_version: ExpectedVersion = ANY,
    ) -> AppendResult:
        expected = check_expected_version(expected_version)
        batch = await self._shredder.seal(encode_batch(self.registry, stream_id, events))
        replay = replayed(stream_id, batch, [self._stored_facts(item.event_id) for item in batch])
        if replay is not None:
            return replay
        actual = self._version(stream_id)
        life = self._lives.get(stream_id, LIVE)
        check_open(stream_id, life, actual)
        if not matches(expected, actual, life):
            raise ConcurrencyError(stream_id, expected, actual)
        now = datetime.now(UTC)
        transaction_id = self._written + 1
        records = [
            RecordedEvent(
                event_id=item.event_id,
                stream_id=stream_id,
                stream_version=actual + offset,
                transaction_id=transaction_id,
                position=self._written + offset,
                event_type=item.event_type,
                schema_version=item.schema_version,
                data=json.loads(item.data),
                metadata=json.loads(item.metadata),
                recorded_at=now,
            )
            for offset, item in enumerate(batch, start=1)
        ]
        self._log.extend(records)
        self._written += len(records)
        self._streams.setdefault(stream_id, []).extend(records)
        self._by_id.update((record.event_id, record) for record in records)
        async with self._changed:
            self._changed.notify_all()
        return AppendResult(
            stream_id, records[-1].stream_version, records[0].position, records[-1].position,
            transaction_id,
        )

    async def append_streams(self, appends: Sequence[StreamAppend]) -> list[AppendResult]:
        """Append to several streams as one unit (see ``EventStore.append_streams``)."""
        parts = check_appends(self.registry, appends)
        sealed = [
            dataclasses.replace(part, batch=await self._shredder.seal(part.batch))
            for part in parts
        ]
        replay = replayed_call(sealed, [
            [self._stored_facts(item.event_id) for item in part.batch] for part in sealed
        ])
        if replay is not None:
            return in_call_order(appends, replay)
        conflict = conflicts(
            sealed, {part.stream_id: self._version(part.stream_id) for part in sealed},
            self._lives,
        )
        if conflict is not None:
            raise conflict
        now = datetime.now(UTC)
        transaction_id = self._written + 1
        results: dict[str, AppendResult] = {}
        for part in sealed:
            actual = self._version(part.stream_id)
            records = [
                RecordedEvent(
                    event_id=item.event_id,
                    stream_id=part.stream_id,
                    stream_version=actual + offset,
                    transaction_id=transaction_id,
                    position=self._written + offset,
                    event_type=item.event_type,
                    schema_version=item.schema_version,
                    data=json.loads(item.data),
                    metadata=json.loads(item.metadata),
                    recorded_at=now,
                )
                for offset, item in enumerate(part.batch, start=1)
            ]
            self._log.extend(records)
            self._written += len(records)
            self._streams.setdefault(part.stream_id, []).extend(records)
            self._by_id.update((record.event_id, record) for record in records)
            results[part.stream_id] = AppendResult(
                part.stream_id, records[-1].stream_version, records[0].position,
                records[-1].position, transaction_id,
            )
        async with self._changed:
            self._changed.notify_all()
        return in_call_order(appends, results)

    def _stored_facts(self, event_id: uuid.UUID) -> StoredFacts | None:
        record = self._by_id.get(event_id)
        if record is None:
            return None
        return StoredFacts(
            record.stream_id, record.stream_version, record.event_type, record.position,
            record.transaction_id, record.schema_version, json.dumps(record.data),
            json.dumps(record.metadata),
        )

    async def import_events(self, records: Sequence[RecordedEvent]) -> None:
        """Store recorded events as they are (see ``EventStore.import_events``)."""
        runs = check_import(records)
        check_not_tombstoned(runs, {
            stream_id: life.deleted_version or 0
            for stream_id in runs if (life := self._lives.get(stream_id, LIVE)).hard
        })
        check_follows_on(runs, {
            stream_id: self._version(stream_id) for stream_id in runs if stream_id in self._streams
        })
        for record in records:
            if record.event_id in self._by_id:
                raise duplicate_id(record.event_id, record.stream_id)
        if not records:
            return
        transaction_id = self._written + 1
        stored = [
            dataclasses.replace(
                record, transaction_id=transaction_id, position=self._written + offset,
                data=copy.deepcopy(record.data), metadata=copy.deepcopy(record.metadata),
            )
            for offset, record in enumerate(records, start=1)
        ]
        self._log.extend(stored)
        self._written += len(stored)
        for record in stored:
            self._streams.setdefault(record.stream_id, []).append(record)
            self._by_id[record.event_id] = record
        for change in life_changes(
            (r.stream_id, r.stream_version, r.event_type, r.data) for r in stored
        ):
            life = self._lives.get(change.stream_id, LIVE)
            self._lives[change.stream_id] = changed_life(life, change)
        async with self._changed:
            self._changed.notify_all()

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
        read = check_stream_read(stream_id, from_version, to_version, backwards, limit, as_of)
        readable_from = self._lives.get(read.stream_id, LIVE).readable_from
        selected = [
            record for record in self._streams.get(read.stream_id, [])
            if max(read.low, readable_from) <= record.stream_version <= read.high
            and record.event_id not in self._archived
            and (read.as_of is None or record.recorded_at <= read.as_of)
        ]
        if backwards:
            selected.reverse()
        if read.limit is not None:
            selected = selected[:read.limit]
        return self.registry.upcast_all(await self._shredder.reveal(selected))

    async def read_typed_stream(
        self,
        stream_id: str,
        *,
        from_version: int | None = None,
        to_version: int | None = None,
        as_of: datetime | None = None,
        skip_unknown: bool = False,
    ) -> TypedStream:
        records = await self.read_stream(
            stream_id, from_version=from_version, to_version=to_version, as_of=as_of
        )
        # The version of the last stored event read, which a split's records share.
        version = records[-1].stream_version if records else 0
        return TypedStream(
            self.registry, stream_id, version, skip_unknown, records=records,
            readable_from=self._lives.get(stream_id, LIVE).readable_from,
        )

    async def read_all(
        self,
        *,
        after: GlobalPosition = START,
        limit: int = 1000,
        event_types: Collection[str] | None = None,
        partition: tuple[int, int] | None = None,
    ) -> list[RecordedEvent]:
        read = check_log_read(after, limit, event_types, partition)
        start = bisect.bisect_right(self._log, read.after, key=lambda r: r.global_position)
        types = None if read.event_types is None else set(
            self.registry.stored_types(read.event_types)
        )
        out: list[RecordedEvent] = []
        if read.limit == 0:
            return out
        for record in self._log[start:]:
            if record.event_id in self._archived:
                continue
            if (types is None or record.event_type in types) and (
                read.partition is None
                or partition_of(record.stream_id, read.partition[1]) == read.partition[0]
            ):
                out.append(record)
                if len(out) >= read.limit:
                    break
        return self.registry.upcast_all(await self._shredder.reveal(out))

    async def head(self) -> GlobalPosition:
        return self._log[-1].global_position if self._log else START

    async def committed_head(self) -> GlobalPosition:
        """Every committed event is visible here: the same as ``head``."""
        return await self.head()

    async def stream_version(self, stream_id: str) -> int:
        return self._version(check_stream_id_read(stream_id))

    def _version(self, stream_id: str) -> int:
        stream = self._streams.get(stream_id)
        return stream[-1].stream_version if stream else 0

    async def list_streams(
        self, *, category: str | None = None, after: str | None = None, limit: int = 100
    ) -> list[StreamInfo]:
        limit = check_list_limit(limit)
        ids = sorted(
            stream_id for stream_id in self._streams
            if (category is None or category_of(stream_id) == category)
            and (after is None or stream_id > after)
            and not self._lives.get(stream_id, LIVE).reads_as_absent(self._version(stream_id))
        )[:limit]
        return [
            StreamInfo(stream_id, self._version(stream_id),
                       self._streams[stream_id][-1].recorded_at)
            for stream_id in ids
        ]

    async def stream_life(self, stream_id: str) -> StreamLife:
        """The stream's deletions and truncations (see ``EventStore.stream_life``)."""
        return self._lives.get(check_stream_id_read(stream_id), LIVE)

    async def read_event(self, event_id: uuid.UUID) -> list[RecordedEvent]:
        record = self._by_id.get(event_id)
        if record is None or event_id in self._archived:
            return []
        return self.registry.upcast_all(await self._shredder.reveal([record]))

    async def read_correlation(self, correlation_id: str) -> list[RecordedEvent]:
        return self.registry.upcast_all(await self._shredder.reveal([
            record for record in self._log
            if record.event_id not in self._archived and (
                record.metadata.get("correlation_id") == correlation_id
                or str(record.event_id) == correlation_id
            )
        ]))

    async def archive_stream(self, stream_id: str, *, before: int | None = None) -> int:
        """Move events of the stream to the archive (see ``EventStore.archive_stream``)."""
        stream_id, before = check_archive(stream_id, before)
        hot = [
            record for record in self._streams.get(stream_id, [])
            if record.event_id not in self._archived
        ]
        if not hot:
            return 0
        moved = 0
        for low, high in archive_batches(hot[0].stream_version, hot[-1].stream_version, before):
            ids = {record.event_id for record in hot if low <= record.stream_version < high}
            self._archived |= ids
            moved += len(ids)
        return moved

    async def read_stream_with_archive(self, stream_id: str) -> list[RecordedEvent]:
        """The stream's archived and hot events (see ``EventStore.read_stream_with_archive``)."""
        stream_id = check_stream_id_read(stream_id)
        readable_from = self._lives.get(stream_id, LIVE).readable_from
        records = [
            record for record in self._streams.get(stream_id, [])
            if record.stream_version >= readable_from
        ]
        return self.registry.upcast_all(await self._shredder.reveal(records))

    async def read_all_with_archive(
        self, *, after: GlobalPosition = START, limit: int = 1000
    ) -> list[RecordedEvent]:
        """The whole log after ``after`` (see ``EventStore.read_all_with_archive``)."""
        read = check_log_read(after, limit, None, None)
        start = bisect.bisect_right(self._log, read.after, key=lambda r: r.global_position)
        records = self._log[start:start + read.limit]
        return self.registry.upcast_all(await self._shredder.reveal(records))

    async def forget(self, subject: str, *, dry_run: bool = False) -> Forgetting:
        return await self._shredder.forget(subject, dry_run=dry_run)

    async def _sealed_streams(self, key_id: str) -> dict[str, int]:
        streams: dict[str, int] = {}
        for record in self._log:
            if key_id in json.dumps(record.data):
                streams[record.stream_id] = streams.get(record.stream_id, 0) + 1
        return dict(sorted(streams.items()))

    async def delete_stream(
        self, stream_id: str, *, expected_version: int | None = None, hard: bool = False
    ) -> AppendResult:
        """Append ``StreamDeleted`` and hide the stream (see ``EventStore.delete_stream``)."""
        result = await self.append(
            stream_id, [StreamDeleted(hard=hard)],
            expected_version=delete_expected(expected_version),
        )
        self._lives[stream_id] = StreamLife(result.version + 1, result.version, hard)
        return result

    async def truncate_stream(
        self, stream_id: str, before: int, *, expected_version: int | None = None
    ) -> AppendResult:
        """Append ``StreamTruncated`` and hide the events before ``before`` (see
        ``EventStore.truncate_stream``)."""
        expected = delete_expected(expected_version)
        before = check_truncate(stream_id, before, self._version(check_stream_id_read(stream_id)))
        result = await self.append(
            stream_id, [StreamTruncated(before=before)], expected_version=expected
        )
        life = self._lives.get(stream_id, LIVE)
        self._lives[stream_id] = dataclasses.replace(
            life, readable_from=max(life.readable_from, before)
        )
        return result

    async def scavenge(
        self, *, dry_run: bool = False, on_progress: OnScavengeProgress | None = None
    ) -> Scavenge:
        """Drop the hidden events (see ``EventStore.scavenge``)."""
        doomed = {
            stream_id: [
                record for record in self._streams.get(stream_id, [])
                if record.stream_version < life.readable_from
                and record.event_type not in SYSTEM_EVENT_TYPES
            ]
            for stream_id, life in sorted(self._lives.items())
        }
        counts = {stream_id: len(records) for stream_id, records in doomed.items() if records}
        if dry_run:
            return Scavenge(True, counts)
        total = sum(counts.values())
        removed = 0
        for stream_id, records in doomed.items():
            if not records:
                continue
            gone = {record.event_id for record in records}
            self._streams[stream_id] = [
                record for record in self._streams[stream_id] if record.event_id not in gone
            ]
            self._log = [record for record in self._log if record.event_id not in gone]
            for event_id in gone:
                del self._by_id[event_id]
            removed += len(gone)
            if on_progress is not None:
                on_progress(ScavengeProgress(removed, total, stream_id))
        return Scavenge(False, counts)

    async def horizon_holders(self) -> list[HorizonHolder]:
        """No transactions, no horizon: none."""
        return []

    async def wait_for_events(self, after: GlobalPosition, timeout: float) -> bool:
        async def arrived() -> None:
            async with self._changed:
                await self._changed.wait_for(
                    lambda: bool(self._log) and self._log[-1].global_position > after
                )

        try:
            await asyncio.wait_for(arrived(), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Nothing to release."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
