"""The rules of ``append_streams``, once for every backend: its arguments checked and
encoded, a replayed call told from a clash, and the conflicts named."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from eventfold.eventstore.encoding import (
    EncodedEvent,
    StoredFacts,
    check_expected_version,
    encode_batch,
    replayed,
)
from eventfold.eventstore.errors import (
    ConcurrencyError,
    DuplicateEventId,
    InvalidAppend,
    StreamsConflict,
)
from eventfold.eventstore.lifecycle import LIVE, StreamLife, check_open, matches
from eventfold.eventstore.records import AppendResult, ExpectedVersion, StreamAppend
from eventfold.eventstore.registry import EventRegistry


@dataclass(frozen=True, slots=True)
class CheckedAppend:
    """One stream's part of the call, checked and encoded."""

    stream_id: str
    batch: list[EncodedEvent]
    expected: ExpectedVersion


def check_appends(
    registry: EventRegistry, appends: Sequence[StreamAppend]
) -> list[CheckedAppend]:
    """Check and encode every stream's part (as ``append`` does its batch), sorted by
    stream id: the order the backends lock and write them in, so that two calls that
    share streams always meet them in the same order. ``InvalidAppend`` before anything
    is written: no streams, a stream named twice, an event id in two parts."""
    if isinstance(appends, StreamAppend) or not isinstance(appends, Sequence):
        raise InvalidAppend("append_streams takes a list of StreamAppend")
    if not appends:
        raise InvalidAppend("append_streams got no streams: give at least one StreamAppend")
    checked: dict[str, CheckedAppend] = {}
    owner: dict[object, str] = {}
    for part in appends:
        if not isinstance(part, StreamAppend):
            raise InvalidAppend(
                f"append_streams takes StreamAppend items, got {type(part).__name__}"
            )
        expected = check_expected_version(part.expected_version)
        batch = encode_batch(registry, part.stream_id, part.events)
        if part.stream_id in checked:
            raise InvalidAppend(
                f"stream {part.stream_id!r} appears twice in one append_streams call: put "
                "its events in one StreamAppend; nothing was written"
            )
        for item in batch:
            if item.event_id in owner:
                raise InvalidAppend(
                    f"event id {item.event_id} appears in streams {owner[item.event_id]!r} "
                    f"and {part.stream_id!r} of one call: give each event its own id; "
                    "nothing was written"
                )
            owner[item.event_id] = part.stream_id
        checked[part.stream_id] = CheckedAppend(part.stream_id, batch, expected)
    return [checked[stream_id] for stream_id in sorted(checked)]


def replayed_call(
    parts: Sequence[CheckedAppend], stored: Sequence[Sequence[StoredFacts | None]]
) -> dict[str, AppendResult] | None:
    """The rule for a call whose ids may be stored already (``stored`` lines up with
    ``parts``, and each of its items with that part's batch).

    The whole call stored as it was sent (a retry after a lost reply) gives each stream's
    original result; none of it stored gives None. Anything between raises
    ``DuplicateEventId``: a call is written whole or not at all, so a part that is stored
    while another is not was written by some other append."""
    results = [
        replayed(part.stream_id, part.batch, facts)
        for part, facts in zip(parts, stored, strict=True)
    ]
    if all(result is None for result in results):
        return None
    missing = next((part for part, result in zip(parts, results, strict=True)
                    if result is None), None)
    if missing is not None:
        stored_part = next(part for part, result in zip(parts, results, strict=True)
                           if result is not None)
        raise DuplicateEventId(
            stored_part.stream_id, stored_part.batch[0].event_id,
            f"the call's part for stream {missing.stream_id!r} is not stored with it",
        )
    return {result.stream_id: result for result in results if result is not None}


def conflicts(
    parts: Sequence[CheckedAppend],
    actual: Mapping[str, int],
    lives: Mapping[str, StreamLife] | None = None,
) -> StreamsConflict | None:
    """The error naming every stream not at its expected version (None: all are);
    ``StreamTombstoned`` first when a stream is hard-deleted. ``lives`` holds the streams
    ever deleted or truncated (see ``lifecycle``)."""
    lives = lives or {}
    for part in parts:
        check_open(part.stream_id, lives.get(part.stream_id, LIVE), actual[part.stream_id])
    found = [
        ConcurrencyError(part.stream_id, part.expected, actual[part.stream_id])
        for part in parts
        if not matches(part.expected, actual[part.stream_id], lives.get(part.stream_id, LIVE))
    ]
    return StreamsConflict(found) if found else None


def in_call_order(
    appends: Sequence[StreamAppend], results: Mapping[str, AppendResult]
) -> list[AppendResult]:
    """Each stream's result, in the order the caller named the streams."""
    return [results[part.stream_id] for part in appends]
