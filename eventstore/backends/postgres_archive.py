"""The archive on PostgreSQL: the statements of ``archive_stream`` and of the merged reads.

The archive is a table of its own, ``eventfold_events_archive``, shaped as the events table
(docs/lifecycle.md gives the measurement behind a table rather than a partition). Ordinary
reads and appends never name it: the hot table keeps its keys, its statements and their
plans. Each batch moves in one statement, its own short transaction, so it holds the
readers' horizon (its transaction id) for one batch at most.
"""

from __future__ import annotations

from eventfold.eventstore.backends.postgres_lifecycle import readable_from
from eventfold.eventstore.horizon import VISIBLE_BELOW
from eventfold.eventstore.system_events import SYSTEM_EVENT_TYPES

_COLUMNS = (
    "position, transaction_id, event_id, stream_id, stream_version, event_type, "
    "schema_version, data, metadata, recorded_at"
)
# As the reads of eventstore/backends/postgres.py return them (``_records``).
_READ_COLUMNS = (
    "event_id, stream_id, stream_version, transaction_id::text::bigint, position, "
    "event_type, schema_version, data::text, metadata::text, recorded_at"
)

HOT_VERSIONS = """
SELECT min(stream_version), max(stream_version) FROM eventfold_events WHERE stream_id = $1
"""
"""The first and last version of the stream in the hot table (both through the unique
``(stream_id, stream_version)`` index)."""

MOVE = f"""
WITH moved AS (
    DELETE FROM eventfold_events
    WHERE stream_id = $1 AND stream_version >= $2 AND stream_version < $3
    RETURNING {_COLUMNS}
), stored AS (
    INSERT INTO eventfold_events_archive ({_COLUMNS}) SELECT {_COLUMNS} FROM moved
    RETURNING 1
)
SELECT count(*) FROM stored
"""
"""Versions ``[$2, $3)`` of stream ``$1`` out of the events table and into the archive, in
one statement; how many. A second archiver of the same versions waits for the first's
row locks and then finds nothing left to delete, so each event moves once."""

READ_STREAM = f"""
SELECT {_READ_COLUMNS} FROM eventfold_events_archive
WHERE stream_id = $1 AND stream_version >= {readable_from("$1")}
UNION ALL
SELECT {_READ_COLUMNS} FROM eventfold_events
WHERE stream_id = $1 AND stream_version >= {readable_from("$1")}
ORDER BY 3
"""
"""A stream's whole history: both tables' ``(stream_id, stream_version)`` indexes, merged;
what a deletion or truncation hid stays hidden here too."""

_SYSTEM_TYPES = ", ".join(f"'{name}'" for name in sorted(SYSTEM_EVENT_TYPES))

SCAVENGE_COUNT = f"""
SELECT count(*) FROM eventfold_events_archive
WHERE stream_id = $1 AND stream_version >= $2 AND stream_version < $3
  AND event_type NOT IN ({_SYSTEM_TYPES})
"""
"""Archived events of a stream that a scavenge removes (as ``postgres_lifecycle``'s)."""

SCAVENGE = f"""
DELETE FROM eventfold_events_archive
WHERE (transaction_id, position) IN (
    SELECT transaction_id, position FROM eventfold_events_archive
    WHERE stream_id = $1 AND stream_version < $2 AND event_type NOT IN ({_SYSTEM_TYPES})
    LIMIT $3
)
RETURNING position
"""
"""One batch of them, its own short transaction."""

# Each table's next page in log order (its own key), then the two merged: no more than
# 2 x $3 rows are ever sorted. The horizon holds for archived events too.
READ_ALL = f"""
SELECT * FROM (
    (SELECT {_READ_COLUMNS} FROM eventfold_events_archive AS a
     WHERE (a.transaction_id, a.position) > ($1::text::xid8, $2)
       AND a.transaction_id < {VISIBLE_BELOW}
     ORDER BY a.transaction_id, a.position LIMIT $3)
    UNION ALL
    (SELECT {_READ_COLUMNS} FROM eventfold_events AS e
     WHERE (e.transaction_id, e.position) > ($1::text::xid8, $2)
       AND e.transaction_id < {VISIBLE_BELOW}
     ORDER BY e.transaction_id, e.position LIMIT $3)
) AS log
ORDER BY 4, 5 LIMIT $3
"""
"""The next page of the whole log, archived events included (``read_all_with_archive``)."""
