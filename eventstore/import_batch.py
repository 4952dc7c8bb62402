"""The checks every backend runs on a batch of ``import_events`` before writing it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pydantic_core

from eventfold.eventstore.encoding import stream_id_problem
from eventfold.eventstore.errors import ImportRefused
from eventfold.eventstore.records import RecordedEvent
from eventfold.eventstore.system_events import StreamDeleted


@dataclass(frozen=True, slots=True)
class StreamRun:
    """One stream's events in an import batch: the first one, and the last version."""

    first: RecordedEvent
    last_version: int


def check_import(records: Sequence[RecordedEvent]) -> dict[str, StreamRun]:
    """Each stream's run of versions in the batch; ``ImportRefused`` for an event that
    cannot be stored as it is (damaged, a bad stream id, a version that does not follow
    the stream's previous one in the batch, an event after its stream's hard deletion in
    the batch, an id twice, a time without a zone)."""
    firsts: dict[str, RecordedEvent] = {}
    last: dict[str, int] = {}
    tombstones: dict[str, int] = {}
    for record in records:
        stream_id = record.stream_id
        previous = last.get(stream_id)
        problem: str | None
        if stream_id in tombstones:
            problem = _tombstone_problem(tombstones[stream_id])
        elif previous is None:
            firsts[stream_id] = record
            problem = stream_id_problem(stream_id) or _version_problem(record, None)
        elif record.stream_version != previous + 1:
            problem = _version_problem(record, previous + 1)
        else:
            problem = None
        if problem is None and (
            record.corrupt is not None or not record.event_type or record.schema_version < 1
            or record.recorded_at.utcoffset() is None
        ):
            problem = _problem(record)
        if problem is not None:
            raise ImportRefused(record.event_id, stream_id, problem)
        last[stream_id] = record.stream_version
        if record.event_type == StreamDeleted.event_type and record.data.get("hard"):
            tombstones[stream_id] = record.stream_version
    if len({record.event_id for record in records}) != len(records):
        seen: set[object] = set()
        for record in records:
            if record.event_id in seen:
                raise ImportRefused(
                    record.event_id, record.stream_id, "the batch holds its id twice"
                )
            seen.add(record.event_id)
    return {stream_id: StreamRun(first, last[stream_id]) for stream_id, first in firsts.items()}


def _version_problem(record: RecordedEvent, expected: int | None) -> str | None:
    if expected is None and record.stream_version >= 1:
        return None
    want = "at least 1" if expected is None else str(expected)
    return f"its version is {record.stream_version} where it must be {want}"


def check_follows_on(runs: Mapping[str, StreamRun], stored: Mapping[str, int]) -> None:
    """``ImportRefused`` unless each stream's first imported version is the one after its
    stored version (``stored``: the stream's version, absent for 0)."""
    for stream_id, run in runs.items():
        version = stored.get(stream_id, 0)
        if run.first.stream_version != version + 1:
            raise ImportRefused(
                run.first.event_id, stream_id,
                f"it has version {run.first.stream_version} and the stream is at version "
                f"{version} (it must be {version + 1})",
            )


def check_not_tombstoned(runs: Mapping[str, StreamRun], tombstones: Mapping[str, int]) -> None:
    """``ImportRefused`` for the first event of a stream that is hard-deleted
    (``tombstones``: each such stream's deletion version)."""
    for stream_id, run in runs.items():
        if stream_id in tombstones:
            raise ImportRefused(
                run.first.event_id, stream_id, _tombstone_problem(tombstones[stream_id])
            )


def _tombstone_problem(version: int) -> str:
    return (
        f"the stream was hard-deleted at version {version} (a tombstone) and takes no more "
        "events; leave its events out of the import"
    )


def duplicate_id(event_id: object, stream_id: str) -> ImportRefused:
    """The refusal of an event whose id is stored already."""
    return ImportRefused(event_id, stream_id, "an event with this id is stored already")


def _problem(record: RecordedEvent) -> str:
    if record.corrupt is not None:
        return f"its stored row is damaged ({record.corrupt})"
    if not record.event_type:
        return "its event type is empty"
    if record.schema_version < 1:
        return f"its schema version is {record.schema_version} (it must be at least 1)"
    return "its recorded time has no time zone"


def stored_json(value: dict[str, Any]) -> str:
    """Imported data or metadata as compact JSON text (pydantic-core writes it several
    times faster than ``json.dumps``)."""
    return pydantic_core.to_json(value).decode() if value else "{}"
