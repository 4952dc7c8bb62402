"""The SQL of deleting, truncating and scavenging streams on PostgreSQL.

A stream ever deleted or truncated has a row in ``eventfold_stream_lifecycle``; every other
stream has none, and its reads and appends pay one primary-key probe that finds nothing.
The append statements fold the row into their one statement (``version_check``): a
tombstone writes nothing (the slow path then names it), and a soft-deleted stream reads
as absent to ``NO_STREAM``. Reads start at ``readable_from`` within their one statement,
still a range scan of the unique (stream_id, stream_version) index.
"""

from __future__ import annotations

from eventfold.eventstore.system_events import SYSTEM_EVENT_TYPES

TOMBSTONE = -1
"""``LIFE_OF``'s value for a hard-deleted stream (no version is negative)."""


def life_of(stream: str) -> str:
    """A scalar subquery: the stream's deletion version, ``TOMBSTONE`` when hard-deleted,
    NULL when never deleted (``stream`` is the SQL expression of its id)."""
    return (
        f"(SELECT CASE WHEN s.hard THEN {TOMBSTONE} ELSE s.deleted_version END "
        f"FROM eventfold_stream_lifecycle AS s WHERE s.stream_id = {stream})"
    )


def hidden(stream: str, version: str) -> str:
    """Whether the stream, at ``version``, reads as absent: deleted (soft or hard) by that
    event (``StreamLife.reads_as_absent``). A scalar subquery, so a primary-key probe per
    stream (``NOT EXISTS`` was planned as an anti join that hashes the whole table)."""
    return (
        f"coalesce((SELECT s.deleted_version = {version} FROM eventfold_stream_lifecycle AS s "
        f"WHERE s.stream_id = {stream}), false)"
    )


def readable_from(stream: str) -> str:
    """The stream's first readable version, 1 when it was never deleted or truncated."""
    return (
        "coalesce((SELECT s.readable_from FROM eventfold_stream_lifecycle AS s "
        f"WHERE s.stream_id = {stream}), 1)"
    )


def version_check(version: str, deleted: str, low: str, high: str) -> str:
    """Whether a stream at ``version`` (``deleted``: its ``life_of``) takes an append that
    accepts versions ``low`` .. ``high`` (``_version_bounds``): never past a tombstone; a
    stream soft-deleted by its last event counts as version 0 for the bounds (NO_STREAM
    and ANY take it, STREAM_EXISTS does not) and its own version for an exact one. The
    rule of ``lifecycle.matches``, in SQL."""
    return (
        f"({deleted} IS DISTINCT FROM {TOMBSTONE} AND CASE WHEN {version} = {deleted} "
        f"THEN 0 BETWEEN {low} AND {high} OR ({low} = {version} AND {high} = {version}) "
        f"ELSE {version} BETWEEN {low} AND {high} END)"
    )


# In the transaction of the deletion's event, behind the stream's exclusive lock.
DELETE_LIFE = """
INSERT INTO eventfold_stream_lifecycle (stream_id, readable_from, deleted_version, hard)
VALUES ($1, $2 + 1, $2, $3)
ON CONFLICT (stream_id) DO UPDATE SET
    readable_from = excluded.readable_from, deleted_version = excluded.deleted_version,
    hard = excluded.hard, updated_at = now()
"""

# A truncation never un-hides what an earlier one (or a deletion) hid.
TRUNCATE_LIFE = """
INSERT INTO eventfold_stream_lifecycle (stream_id, readable_from) VALUES ($1, $2)
ON CONFLICT (stream_id) DO UPDATE SET
    readable_from = greatest(eventfold_stream_lifecycle.readable_from, excluded.readable_from),
    updated_at = now()
"""

_SYSTEM_TYPES = ", ".join(f"'{name}'" for name in sorted(SYSTEM_EVENT_TYPES))

# The store's own events an import (a COPY) just wrote, for their changes to take effect in
# the same transaction: by the primary key's leading column.
IMPORTED_CHANGES = f"""
SELECT stream_id, stream_version, event_type, data::text FROM eventfold_events
WHERE transaction_id = pg_current_xact_id() AND event_type IN ({_SYSTEM_TYPES})
ORDER BY position
"""

SCAVENGE_PENDING = """
SELECT stream_id, readable_from, scavenged_below FROM eventfold_stream_lifecycle
WHERE scavenged_below < readable_from ORDER BY stream_id
"""

# The store's own events stay: a subscriber that has not read them yet still learns of
# the deletion or truncation. Both statements walk the unique (stream_id, stream_version)
# index over the stream's hidden range.
SCAVENGE_COUNT = f"""
SELECT count(*) FROM eventfold_events
WHERE stream_id = $1 AND stream_version >= $2 AND stream_version < $3
  AND event_type NOT IN ({_SYSTEM_TYPES})
"""

# One batch, its own short transaction (the caller's autocommit statement). Rows are named
# by their primary key (transaction_id, position).
SCAVENGE_EVENTS = f"""
DELETE FROM eventfold_events
WHERE (transaction_id, position) IN (
    SELECT transaction_id, position FROM eventfold_events
    WHERE stream_id = $1 AND stream_version < $2 AND event_type NOT IN ({_SYSTEM_TYPES})
    LIMIT $3
)
RETURNING position
"""

SCAVENGE_SNAPSHOTS = "DELETE FROM eventfold_snapshots WHERE stream_id = $1 AND version < $2 - 1"

SCAVENGED = """
UPDATE eventfold_stream_lifecycle SET scavenged_below = greatest(scavenged_below, $2)
WHERE stream_id = $1
"""
