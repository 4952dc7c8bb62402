"""Deleting and truncating streams: the state a stream's deletions and truncations leave,
the rules every backend applies with it, and what a scavenge reports.

A stream's life is three numbers: ``readable_from`` (reads start there: events before it
are deleted or truncated, and go at the next scavenge), ``deleted_version`` (the version of
its last ``StreamDeleted``, None when it was never deleted) and ``hard`` (a tombstone).
See docs/lifecycle.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from eventfold.eventstore.encoding import check_expected_version
from eventfold.eventstore.errors import InvalidAppend, StreamTombstoned
from eventfold.eventstore.records import ANY, NO_STREAM, STREAM_EXISTS, ExpectedVersion
from eventfold.eventstore.system_events import StreamDeleted, StreamTruncated


@dataclass(frozen=True, slots=True)
class StreamLife:
    """What deletions and truncations left of a stream (see the module's docstring)."""

    readable_from: int = 1
    deleted_version: int | None = None
    hard: bool = False

    def reads_as_absent(self, version: int) -> bool:
        """Whether the stream, at ``version``, reads as not found: soft-deleted by its last
        event."""
        return self.deleted_version is not None and self.deleted_version == version


LIVE = StreamLife()
"""A stream never deleted or truncated."""


@dataclass(frozen=True, slots=True)
class Scavenge:
    """What a scavenge removed (on a dry run: would remove), per stream."""

    dry_run: bool
    streams: dict[str, int] = field(default_factory=dict)
    """Events removed per stream, in stream id order."""

    @property
    def events(self) -> int:
        """How many events were (or would be) removed."""
        return sum(self.streams.values())


@dataclass(frozen=True, slots=True)
class ScavengeProgress:
    """How far a scavenge is: events removed so far of ``total`` (counted at its start)."""

    removed: int
    total: int
    stream_id: str


OnScavengeProgress = Callable[[ScavengeProgress], None]

SCAVENGE_BATCH = 1000
"""Events a scavenge removes per transaction: each batch commits on its own, so no long
transaction holds back writers (SQLite) or readers of the global log (PostgreSQL)."""


@dataclass(frozen=True, slots=True)
class LifeChange:
    """What one stored ``StreamDeleted`` (``hard`` set) or ``StreamTruncated`` (``before``
    set) does to its stream's life: an import replays it, so that a copied store's deleted
    and truncated streams stay so."""

    stream_id: str
    version: int
    hard: bool | None = None
    before: int | None = None


def life_changes(rows: Iterable[tuple[str, int, str, Mapping[str, Any]]]) -> list[LifeChange]:
    """The changes of the store's own events among stored rows (stream id, version, type,
    data), in the order given."""
    changes = []
    for stream_id, version, event_type, data in rows:
        if event_type == StreamDeleted.event_type:
            changes.append(LifeChange(stream_id, version, hard=bool(data.get("hard"))))
        elif event_type == StreamTruncated.event_type:
            changes.append(LifeChange(stream_id, version, before=int(data.get("before", 1))))
    return changes


def changed_life(life: StreamLife, change: LifeChange) -> StreamLife:
    """``life`` after ``change``."""
    if change.hard is not None:
        return StreamLife(change.version + 1, change.version, change.hard)
    return StreamLife(max(life.readable_from, change.before or 1), life.deleted_version, life.hard)


def delete_expected(expected_version: int | None) -> ExpectedVersion:
    """``delete_stream``'s and ``truncate_stream``'s ``expected_version`` as an append's."""
    return ANY if expected_version is None else check_expected_version(expected_version)


def check_truncate(stream_id: str, before: object, version: int) -> int:
    """The ``before`` of a truncation of a stream at ``version``; ``InvalidAppend`` unless
    it lies in 1 .. version + 1 (the truncation's own event is version + 1)."""
    if isinstance(before, bool) or not isinstance(before, int) or not 1 <= before <= version + 1:
        raise InvalidAppend(
            f"cannot truncate stream {stream_id!r} (at version {version}) before {before!r}: "
            f"give a version from 1 to {version + 1} (events before it stop reading)"
        )
    return before


def check_open(stream_id: str, life: StreamLife, version: int) -> None:
    """Raise ``StreamTombstoned`` when the stream's tombstone refuses appends."""
    if life.hard:
        raise StreamTombstoned(stream_id, life.deleted_version or version)


def matches(expected: ExpectedVersion, actual: int, life: StreamLife) -> bool:
    """Whether a stream at ``actual`` with ``life`` is where an append expects it.

    A soft-deleted stream reads as not found, so ``NO_STREAM`` (and 0) match it and
    ``STREAM_EXISTS`` does not; its exact version matches too. Versions continue after
    the deletion event.
    """
    absent = actual == 0 or life.reads_as_absent(actual)
    if expected is ANY:
        return True
    if expected is NO_STREAM:
        return absent
    if expected is STREAM_EXISTS:
        return not absent
    return expected == actual or (expected == 0 and absent)
