"""Moving a whole store: into another store (``copy_store``), out to a file of CloudEvents
JSON lines (``export_events``) and back in (``import_file``).

Events move as stored: ids, stream ids and versions, types, schema versions, data, metadata
and recorded times (open the stores with an empty ``EventRegistry``: no upcaster runs). The
target gives them its own positions and transaction ids in the source's order, through
``EventStore.import_events``, one transaction per batch, so a restored PostgreSQL store keeps
the global log's horizon guarantee and takes appends at once.

Personal data moves sealed, as stored, so a copy carries the keys of data subjects too
(``EventStore.keys``): all of them, forgotten ones as forgotten, before the events (an
interrupted copy's events can always be read) and again after them (a subject forgotten in
the source meanwhile is forgotten in the target too), then compared. A file of CloudEvents
cannot carry keys: ``export_events`` refuses a store holding personal data
(``ExportRefused``) unless told to write it revealed (``eventfold.eventstore.revealed``),
which ``import_file`` seals again with the target's keys.

Resuming: each batch commits on its own, in the source's order, so the target of an
interrupted run is a prefix of the source. A new run checks that (the target's first event
is the source's first, its last event is in the source) and goes on after the target's last
event; a target holding anything else is refused (``CopyRefused``). At the end the whole of
both logs is read again and their counts and checksums compared (``CopyMismatch``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

import pydantic_core

from eventfold.eventstore import revealed
from eventfold.eventstore.cloudevents import from_cloudevent, to_cloudevent_json
from eventfold.eventstore.errors import (
    CloudEventError,
    CopyMismatch,
    CopyRefused,
    ExportRefused,
)
from eventfold.eventstore.personal import personal_fields
from eventfold.eventstore.protocol import EventStore
from eventfold.eventstore.records import START, GlobalPosition, RecordedEvent

BATCH_SIZE = 10_000
"""Events per read of the source and per import transaction of the target."""


@dataclass(frozen=True, slots=True)
class TransferProgress:
    """How far a copy, export or import is, for a progress bar.

    ``done`` and ``total`` are in the unit the run can measure ahead: the source's log
    position for a copy or an export, bytes of the file for an import (``total`` is None
    when unknown, e.g. from stdin). ``phase`` is ``"copying"`` then ``"verifying"``.
    """

    phase: str
    events: int
    done: int
    total: int | None


@dataclass(frozen=True, slots=True)
class TransferResult:
    """What a finished run did: events written by this run, events in the target (all
    verified), and the checksum both sides share (``LogDigest``; an export's and the
    import's of its file are the same, key-order-free one)."""

    written: int
    events: int
    checksum: str
    keys: int = 0
    """Keys of data subjects in the target, forgotten ones too (all verified)."""


OnProgress = Callable[[TransferProgress], None]


def _ignore(_: TransferProgress) -> None:
    """The default progress report: none."""


async def copy_store(
    source: EventStore,
    target: EventStore,
    *,
    batch_size: int = BATCH_SIZE,
    on_progress: OnProgress = _ignore,
) -> TransferResult:
    """Copy every event of ``source`` into ``target`` (empty, or an interrupted copy of the
    same source, which the copy continues), then verify counts and checksums.

    Between two PostgreSQL stores the events stream from server to server and the servers
    compute the checksums (``backends.postgres_copy``); between others they move as
    records. The keys of data subjects are copied before the events and again after them, then
    compared. Raises ``CopyRefused`` for a target holding other events and ``CopyMismatch``
    when the finished copy differs from its source (something wrote to either during the
    copy, or the target holds another key for a subject).
    """
    _check_raw(source)
    after = await _resume_after(source, target)
    await _copy_keys(source, target, batch_size)
    # Every event committed before the copy starts is copied, even one that an older open
    # transaction still hides from readers (PostgreSQL's horizon): the copy waits for it.
    await _visible(source, await source.committed_head())
    total = (await source.committed_head()).position
    copy = _copy_between_postgres if _both_postgres(source, target) else _copy_records
    result = await copy(source, target, after, total, batch_size, on_progress)
    await _copy_keys(source, target, batch_size)
    keys = await _verified_keys(source, target, batch_size)
    return dataclasses.replace(result, keys=keys)


def _both_postgres(source: EventStore, target: EventStore) -> bool:
    from eventfold.eventstore.backends.postgres import PostgresEventStore

    return isinstance(source, PostgresEventStore) and isinstance(target, PostgresEventStore)


async def _copy_between_postgres(
    source: EventStore,
    target: EventStore,
    after: GlobalPosition,
    total: int,
    batch_size: int,
    on_progress: OnProgress,
) -> TransferResult:
    """``copy_store``'s events between two PostgreSQL stores: streamed from server to
    server and checked by the servers (``postgres_copy``)."""
    from eventfold.eventstore.backends import postgres_copy
    from eventfold.eventstore.backends.postgres import PostgresEventStore

    assert isinstance(source, PostgresEventStore) and isinstance(target, PostgresEventStore)
    # Both digests are computed while the target writes (other cores' work), the
    # target's following the copy page by page.
    growing = postgres_copy.Growing()

    def copied(events: int, last: GlobalPosition) -> None:
        on_progress(TransferProgress("copying", events, last.position, total))
        growing.grew()

    def verified(events: int) -> None:
        if growing.ended:
            on_progress(TransferProgress("verifying", events, events, None))

    digests = asyncio.gather(
        postgres_copy.log_digest(source, batch_size, on_page=lambda _: None),
        postgres_copy.log_digest(target, batch_size, on_page=verified, growing=growing),
    )
    try:
        written = await postgres_copy.copy_log(
            source, target, after=after, batch_size=batch_size, on_page=copied
        )
        await _visible(target, await target.committed_head())
        growing.end()
        source_digest, target_digest = await digests
    except BaseException:
        digests.cancel()
        with contextlib.suppress(BaseException):
            await digests
        raise
    return _compared(
        (source_digest.count, source_digest.checksum),
        (target_digest.count, target_digest.checksum),
        source.url, target.url, written,
    )


async def _copy_records(
    source: EventStore,
    target: EventStore,
    after: GlobalPosition,
    total: int,
    batch_size: int,
    on_progress: OnProgress,
) -> TransferResult:
    """``copy_store``'s events between any two stores: read as records, imported with
    ``import_events``, then both logs read again and their ``LogDigest`` compared.
    The next batch is read from the source while the target writes the last one."""
    # The source's digest: what an earlier run copied, then every page as it is copied.
    source_digest = await _digest_of(source, batch_size, until=after)
    written = 0
    page = await source.read_all(after=after, limit=batch_size)
    while page:
        following = asyncio.ensure_future(
            source.read_all(after=page[-1].global_position, limit=batch_size)
        )
        try:
            await target.import_events(page)
            source_digest.add(page)
        except BaseException:
            following.cancel()
            with contextlib.suppress(BaseException):
                await following
            raise
        written += len(page)
        on_progress(TransferProgress("copying", written, page[-1].position, total))
        page = await following
    await _visible(target, await target.committed_head())
    target_digest = await _digest_of(
        target, batch_size, on_progress=on_progress, total=source_digest.count
    )
    if target_digest.hexdigest() != source_digest.hexdigest():
        # Perhaps only the order of keys in JSON objects differs: compare again without it.
        source_digest, target_digest = await asyncio.gather(
            _digest_of(source, batch_size, canonical=True),
            _digest_of(target, batch_size, canonical=True),
        )
    return _verified(source_digest, target_digest, source.url, target.url, written)


async def export_events(
    source: EventStore,
    output: IO[bytes],
    *,
    reveal_personal_data: bool = False,
    batch_size: int = BATCH_SIZE,
    on_progress: OnProgress = _ignore,
) -> TransferResult:
    """Write every event of ``source`` to ``output`` as CloudEvents 1.0 JSON, one per line
    (``cloudevents.to_cloudevent``), in log order.

    A store holding keys of data subjects has its personal data sealed with them, and a
    file cannot carry keys: sealed values are written revealed, with their subjects
    (``revealed.reveal``; forgotten ones without their value), for ``import_file`` to seal
    again. Unless ``reveal_personal_data``, a store holding a key that is not forgotten
    raises ``ExportRefused`` (``copy_store`` carries the keys instead)."""
    _check_raw(source)
    keys = await revealed.keys_by_id(source.keys)
    if not reveal_personal_data and any(key.secret is not None for key in keys.values()):
        raise ExportRefused(
            source.url, "it holds personal data, sealed with keys a file cannot carry: "
            "pass --reveal-personal-data to write it in the clear (the import seals it "
            "again), or move the store with `eventfold copy`, which carries the keys",
        )
    await _visible(source, await source.committed_head())
    total = (await source.committed_head()).position
    digest = LogDigest(canonical=True)  # the file's checksum, as ``import_file`` takes it
    after = START
    while page := await source.read_all(after=after, limit=batch_size):
        if keys:
            try:
                page = revealed.reveal(page, keys)
            except ValueError as exc:
                raise ExportRefused(source.url, str(exc)) from exc
        output.write(b"".join(to_cloudevent_json(record) + b"\n" for record in page))
        digest.add(page)
        after = page[-1].global_position
        on_progress(TransferProgress("copying", digest.count, after.position, total))
    output.flush()
    return TransferResult(digest.count, digest.count, digest.hexdigest())


async def import_file(
    lines: Iterable[bytes],
    target: EventStore,
    *,
    name: str = "the file",
    size: int | None = None,
    batch_size: int = BATCH_SIZE,
    on_progress: OnProgress = _ignore,
) -> TransferResult:
    """Import CloudEvents JSON lines written by ``export_events`` into ``target`` (empty, or
    an interrupted import of the same file, which the import continues), then verify the
    target against the file's count and checksum.

    ``name`` names the file in errors, ``size`` (bytes) is the progress bar's total.
    Raises ``CloudEventError`` naming the line of an event that cannot be read,
    ``CopyRefused`` and ``CopyMismatch`` as ``copy_store`` does.
    """
    await _visible(target, await target.committed_head())
    target_first, target_last = await _ends(target)
    skipping = target_last is not None
    file_digest = LogDigest(canonical=True)
    written = 0
    read = 0
    batch: list[RecordedEvent] = []
    for record, line_size in _records(lines, name):
        read += line_size
        if file_digest.count == 0 and target_first is not None and (
            record.event_id != target_first.event_id
        ):
            raise CopyRefused(
                target.url, f"its first event is not the first event of {name}"
            )
        file_digest.add([record])
        if skipping:
            skipping = target_last is None or record.event_id != target_last.event_id
            continue
        batch.append(record)
        if len(batch) >= batch_size:
            await target.import_events(await revealed.reseal(batch, target.keys))
            written += len(batch)
            batch = []
            on_progress(TransferProgress("copying", written, read, size))
    if skipping and target_last is not None:
        raise CopyRefused(target.url, f"its last event {target_last.event_id} is not in {name}")
    if batch:
        await target.import_events(await revealed.reseal(batch, target.keys))
        written += len(batch)
        on_progress(TransferProgress("copying", written, read, size))
    await _visible(target, await target.committed_head())
    keys = await revealed.keys_by_id(target.keys)
    target_digest = await _digest_of(
        target, batch_size, canonical=True,
        transform=lambda page: revealed.reveal(page, keys) if keys else page,
    )
    return _verified(file_digest, target_digest, name, target.url, written)


class LogDigest:
    """A count and a SHA-256 of events in log order, over what a copy must keep (ids,
    streams, versions, types, schema versions, times, data and metadata) and not over
    what it may change (positions, transaction ids).

    Stores may keep a JSON object's keys in another order (PostgreSQL's jsonb orders them
    its own way); a ``canonical`` digest sorts them first, which costs more than the rest
    of the digest together, so copies compare the plain digests first.
    """

    def __init__(self, *, canonical: bool = False) -> None:
        self.count = 0
        self.canonical = canonical
        # One hash per part, each fed a page's JSON array without its brackets and with a
        # comma after, so the digest does not depend on where pages begin and end; every
        # part is one JSON document per page (a document per event costs several times
        # more).
        self._ids = hashlib.sha256()
        self._envelopes = hashlib.sha256()
        self._times = hashlib.sha256()
        self._data = hashlib.sha256()
        self._metadata = hashlib.sha256()

    def add(self, records: Sequence[RecordedEvent]) -> None:
        """Take the next events of the log into the digest."""
        if not records:
            return
        to_json = pydantic_core.to_json
        self._ids.update(b"".join([record.event_id.bytes for record in records]))
        self._envelopes.update(to_json([
            (record.stream_id, record.stream_version, record.event_type, record.schema_version)
            for record in records
        ])[1:-1] + b",")
        self._times.update(
            to_json([_utc(record.recorded_at) for record in records])[1:-1] + b","
        )
        data: list[Any]
        metadata: list[Any]
        if self.canonical:
            data = [_canonical(record.data) for record in records]
            metadata = [_canonical(record.metadata) for record in records]
        else:
            data = [record.data for record in records]
            metadata = [record.metadata for record in records]
        self._data.update(to_json(data)[1:-1] + b",")
        self._metadata.update(to_json(metadata)[1:-1] + b",")
        self.count += len(records)

    def hexdigest(self) -> str:
        """The digest so far, in hex."""
        parts = (self._ids, self._envelopes, self._times, self._data, self._metadata)
        return hashlib.sha256(b"".join(part.digest() for part in parts)).hexdigest()


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is UTC else moment.astimezone(UTC)


def _canonical(value: dict[str, Any]) -> list[Any]:
    """A JSON object as its (key, value) pairs sorted by key, nested objects likewise:
    stores may keep keys in another order (PostgreSQL's jsonb orders them its own way)."""
    items: list[Any] = sorted(value.items())
    for index, (key, item) in enumerate(items):
        if type(item) is dict or type(item) is list:
            items[index] = (key, _nested(item))
    return items


def _nested(value: Any) -> Any:
    if type(value) is dict:
        return {"{}": _canonical(value)}
    if type(value) is list:
        return [_nested(item) for item in value]
    return value


def _check_raw(source: EventStore) -> None:
    if source.registry.upcaster is not None:
        raise ValueError(
            "the source store's registry has upcasters: open it with an empty "
            "EventRegistry(), a copy moves events as they are stored"
        )
    if any(personal_fields(cls) for cls in source.registry):
        raise ValueError(
            "the source store's registry has events with personal data, which its reads "
            "open: open it with an empty EventRegistry(), a copy moves events as they are "
            "stored"
        )


async def _visible(store: EventStore, position: GlobalPosition) -> None:
    """Wait until readers of the store's log see ``position`` (at once but on PostgreSQL,
    where an older transaction anywhere in the cluster can hold them back)."""
    while (head := await store.head()) < position:
        await store.wait_for_events(head, timeout=1.0)


async def _ends(store: EventStore) -> tuple[RecordedEvent | None, RecordedEvent | None]:
    """A store's first and last events (None, None when it is empty)."""
    head = await store.head()
    if head == START:
        return None, None
    first = await store.read_all(limit=1)
    # Nothing lies between (t, p - 1) and (t, p) in (transaction_id, position) order.
    last = await store.read_all(
        after=GlobalPosition(head.transaction_id, head.position - 1), limit=1
    )
    return first[0], last[0]


async def _resume_after(source: EventStore, target: EventStore) -> GlobalPosition:
    """Where in the source a copy into ``target`` goes on: START for an empty target,
    after the target's last event for an earlier copy of this source."""
    await _visible(target, await target.committed_head())
    target_first, target_last = await _ends(target)
    if target_first is None or target_last is None:
        return START
    source_first = await source.read_all(limit=1)
    if not source_first or source_first[0].event_id != target_first.event_id:
        raise CopyRefused(
            target.url, f"it holds events and its first is not the first event of {source.url}"
        )
    found = await source.read_event(target_last.event_id)
    if not found:
        raise CopyRefused(
            target.url, f"its last event {target_last.event_id} is not in {source.url}"
        )
    return found[0].global_position


async def _digest_of(
    store: EventStore,
    batch_size: int,
    *,
    until: GlobalPosition | None = None,
    on_progress: OnProgress | None = None,
    total: int | None = None,
    canonical: bool = False,
    transform: Callable[[list[RecordedEvent]], list[RecordedEvent]] | None = None,
) -> LogDigest:
    """The digest of a store's log, read in pages, up to ``until`` inclusive (the whole
    log when None), each page through ``transform`` first when given; the next page is
    read while the last one is hashed."""
    digest = LogDigest(canonical=canonical)
    if until == START:
        return digest
    page = await store.read_all(limit=batch_size)
    while page:
        if transform is not None:
            page = transform(page)
        if until is not None and page[-1].global_position >= until:
            digest.add([record for record in page if record.global_position <= until])
            break
        following: Awaitable[list[RecordedEvent]] = asyncio.ensure_future(
            store.read_all(after=page[-1].global_position, limit=batch_size)
        )
        digest.add(page)
        if on_progress is not None:
            on_progress(TransferProgress("verifying", digest.count, digest.count, total))
        page = await following
    return digest


async def _copy_keys(source: EventStore, target: EventStore, batch_size: int) -> None:
    """Store every key of data subjects of ``source`` in ``target`` as it is (idempotent:
    keys stored already stay, forgotten ones get forgotten)."""
    after: str | None = None
    while page := await source.keys.page(after=after, limit=batch_size):
        await target.keys.import_keys(page)
        after = page[-1].subject


async def _keys_digest(store: EventStore, batch_size: int) -> tuple[int, str]:
    """How many keys of data subjects a store holds and a SHA-256 of them in subject order
    (subjects, key ids, secrets, forgotten or not)."""
    digest = hashlib.sha256()
    count = 0
    after: str | None = None
    while page := await store.keys.page(after=after, limit=batch_size):
        for key in page:
            digest.update(pydantic_core.to_json(
                (key.subject, key.key_id, None if key.secret is None else key.secret.hex())
            ))
        count += len(page)
        after = page[-1].subject
    return count, digest.hexdigest()


async def _verified_keys(source: EventStore, target: EventStore, batch_size: int) -> int:
    """The number of keys of data subjects both stores hold; ``CopyMismatch`` unless they
    hold the same ones."""
    (source_count, source_digest), (target_count, target_digest) = await asyncio.gather(
        _keys_digest(source, batch_size), _keys_digest(target, batch_size)
    )
    if source_count != target_count:
        raise CopyMismatch(
            source.url, target.url,
            f"the source has {source_count} keys of data subjects, the target {target_count}",
        )
    if source_digest != target_digest:
        raise CopyMismatch(
            source.url, target.url,
            f"both have {source_count} keys of data subjects but they differ (a subject "
            "forgotten in one only, or holding another key)",
        )
    return target_count


def _verified(
    source: LogDigest, target: LogDigest, source_name: str, target_name: str, written: int
) -> TransferResult:
    return _compared(
        (source.count, source.hexdigest()), (target.count, target.hexdigest()),
        source_name, target_name, written,
    )


def _compared(
    source: tuple[int, str],
    target: tuple[int, str],
    source_name: str,
    target_name: str,
    written: int,
) -> TransferResult:
    """The result of a run whose source and target have these counts and checksums;
    ``CopyMismatch`` unless they are the same."""
    (source_count, source_checksum), (target_count, target_checksum) = source, target
    if source_count != target_count:
        raise CopyMismatch(
            source_name, target_name,
            f"the source has {source_count} events, the target {target_count}",
        )
    if source_checksum != target_checksum:
        raise CopyMismatch(
            source_name, target_name,
            f"both have {source_count} events but their checksums differ "
            f"({source_checksum[:12]} and {target_checksum[:12]})",
        )
    return TransferResult(written, target_count, target_checksum)


def _records(lines: Iterable[bytes], name: str) -> Iterator[tuple[RecordedEvent, int]]:
    """The events of CloudEvents JSON lines, each with its line's size in bytes."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = from_cloudevent(json.loads(line, parse_constant=_no_constant))
        except ValueError as exc:
            problem = exc.problem if isinstance(exc, CloudEventError) else str(exc)
            raise CloudEventError(f"{name}, line {number}: {problem}") from exc
        revealed.check_not_sealed(record, f"{name}, line {number}")
        yield record, len(line)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (stores hold no NaN or infinities)")
