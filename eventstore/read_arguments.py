"""Checking a read's arguments, once for every backend.

Every backend calls these before it reads, so a read one backend refuses, every backend
refuses with the same ``InvalidRead``, and the reads they accept reach each backend as the
same plain bounds (a version or position beyond what any backend can hold reads as the
largest one there is).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import NamedTuple

from eventfold.eventstore.encoding import stream_id_problem
from eventfold.eventstore.errors import InvalidRead
from eventfold.eventstore.records import GlobalPosition

MAX_VERSION = 2**31 - 1
"""The highest stream version a store holds (PostgreSQL's versions are int4)."""
MAX_POSITION = 2**63 - 1
"""The highest position, transaction id and limit a store takes (int8 everywhere)."""


class StreamRead(NamedTuple):
    """A checked stream read: versions ``low`` to ``high`` inclusive, in one direction."""

    stream_id: str
    low: int
    high: int
    backwards: bool
    limit: int | None
    as_of: datetime | None


class LogRead(NamedTuple):
    """A checked read of the global log."""

    after: GlobalPosition
    limit: int
    event_types: Collection[str] | None
    partition: tuple[int, int] | None = None


def check_stream_read(
    stream_id: object,
    from_version: object,
    to_version: object,
    backwards: object,
    limit: object,
    as_of: object,
) -> StreamRead:
    """The bounds of a ``read_stream``, or ``InvalidRead`` saying which argument is wrong.

    A range that holds no version (``from_version`` past ``to_version`` in the direction
    of the read) is not an error: it reads nothing, as a load from a snapshot taken at the
    version asked for does.
    """
    checked_id = check_stream_id_read(stream_id)
    start = _version("from_version", from_version)
    end = _version("to_version", to_version)
    if not isinstance(backwards, bool):
        raise InvalidRead(f"backwards must be True or False, got {backwards!r}")
    if limit is not None:
        limit = _count("limit", limit, "None for no limit")
    if as_of is not None and not (isinstance(as_of, datetime) and as_of.tzinfo is not None):
        raise InvalidRead(
            f"as_of={as_of!r} must be a datetime with a time zone, e.g. datetime.now(UTC)"
        )
    if backwards:
        low, high = end, start
    else:
        low, high = start, end
    return StreamRead(
        checked_id,
        0 if low is None else min(low, MAX_VERSION),
        MAX_VERSION if high is None else min(high, MAX_VERSION),
        backwards,
        limit,
        as_of,
    )


def check_log_read(
    after: object, limit: object, event_types: object, partition: object = None
) -> LogRead:
    """The arguments of a ``read_all``, or ``InvalidRead`` saying which one is wrong."""
    if not (
        isinstance(after, tuple) and len(after) == 2
        and all(_is_count(part) and part <= MAX_POSITION for part in after)
    ):
        raise InvalidRead(
            f"after={after!r} must be a GlobalPosition (two ints >= 0): START, or the "
            "global_position of the last record read"
        )
    checked_limit = _count("limit", limit, "0 reads nothing")
    if event_types is not None and (
        isinstance(event_types, (str, bytes)) or not isinstance(event_types, Collection)
        or not all(isinstance(name, str) for name in event_types)
    ):
        raise InvalidRead(
            f"event_types={event_types!r} must be a collection of type names, e.g. "
            "{'OrderPlaced'}, or None for every type"
        )
    if partition is not None and not (
        isinstance(partition, tuple) and len(partition) == 2
        and all(isinstance(n, int) and not isinstance(n, bool) for n in partition)
        and 0 <= partition[0] < partition[1]
    ):
        raise InvalidRead(
            f"partition={partition!r} must be (index, count) with 0 <= index < count, "
            "e.g. (0, 4), or None for every stream"
        )
    return LogRead(GlobalPosition(*after), checked_limit, event_types, partition)


def check_list_limit(limit: object) -> int:
    """The ``limit`` of ``list_streams``, or ``InvalidRead``."""
    return _count("limit", limit, "0 lists nothing")


def check_stream_id_read(stream_id: object) -> str:
    """The stream id of a read, or ``InvalidRead`` saying what is wrong with it."""
    problem = stream_id_problem(stream_id)
    if problem is not None:
        raise InvalidRead(problem)
    assert isinstance(stream_id, str)
    return stream_id


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _version(name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidRead(f"{name} must be a stream version (an int >= 0) or None, got {value!r}")
    return value


def _count(name: str, value: object, hint: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidRead(f"{name} must be an int >= 0 ({hint}), got {value!r}")
    return min(value, MAX_POSITION)
