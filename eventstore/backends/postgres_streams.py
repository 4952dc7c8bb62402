"""``append_streams`` on PostgreSQL: the group-commit statement, made all or nothing.

``APPEND_GROUP`` already writes several streams in one statement, each numbered after its
own head and checked against its own expected version, in stream id order. A group writes
the members whose check passes; a call writes every part or none, so its statement inserts
nothing unless every part's check passes (and every stream's shared lock was free). One
statement is one transaction, so the call's events share one transaction id and lie
contiguous in the global log.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventfold.eventstore.backends.postgres_group import (
    APPEND_GROUP,
    HEAD_CHECK,
    statement_arguments,
)
from eventfold.eventstore.stream_appends import CheckedAppend

_EACH = f"WHERE {HEAD_CHECK} AND head.free"
_ALL = f"WHERE NOT EXISTS (SELECT FROM head WHERE NOT ({HEAD_CHECK} AND head.free))"
_TRY_SHARED = "pg_try_advisory_xact_lock_shared(hashtextextended(r.stream_id, 0))"
assert _EACH in APPEND_GROUP and _TRY_SHARED in APPEND_GROUP, "APPEND_GROUP changed shape"

APPEND_STREAMS = APPEND_GROUP.replace(_EACH, _ALL)
"""Every part of the call, or nothing (arguments: ``streams_arguments``)."""

APPEND_STREAMS_LOCKED = APPEND_STREAMS.replace(_TRY_SHARED, "true")
"""The same in a transaction that holds every stream's exclusive lock already (a try of
the shared lock would fail there whenever another writer queues for the exclusive one)."""


def streams_arguments(
    parts: Sequence[CheckedAppend], bounds: Sequence[tuple[int, int]]
) -> tuple[Any, ...]:
    """The arguments of ``APPEND_STREAMS`` for parts sorted by stream id, each with the
    versions it accepts (``bounds``, lined up with ``parts``)."""
    return statement_arguments([
        (part.stream_id, part.batch, low, high)
        for part, (low, high) in zip(parts, bounds, strict=True)
    ])
