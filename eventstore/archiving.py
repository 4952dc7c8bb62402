"""What every backend's ``archive_stream`` shares: its arguments and its batches.

An archive moves a stream's events out of the hot table in short transactions, a batch of
versions each, so no transaction holds a lock (SQLite's write lock, PostgreSQL's horizon)
for long. The stream's last event stays hot: it carries the stream's version, so appends
and their expected-version checks never need to look at the archive.
"""

from __future__ import annotations

from eventfold.eventstore.errors import InvalidRead
from eventfold.eventstore.read_arguments import check_stream_id_read

ARCHIVE_BATCH = 1000
"""Events moved per transaction."""


def check_archive(stream_id: object, before: object) -> tuple[str, int | None]:
    """The arguments of ``archive_stream``, or ``InvalidRead`` saying what is wrong."""
    checked = check_stream_id_read(stream_id)
    if before is not None and (
        isinstance(before, bool) or not isinstance(before, int) or before < 1
    ):
        raise InvalidRead(f"before must be a stream version (an int >= 1) or None, got {before!r}")
    return checked, before


def archive_batches(
    first: int, last: int, before: int | None, batch: int = ARCHIVE_BATCH
) -> list[tuple[int, int]]:
    """The version ranges ``[low, high)`` to move, oldest first, of a stream whose hot
    events run from version ``first`` to ``last``: all but the last, or those below
    ``before``."""
    end = last if before is None else min(before, last)
    return [(low, min(low + batch, end)) for low in range(first, end, batch)]
