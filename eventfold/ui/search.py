"""Finding streams by id prefix and category, a page at a time.

The store lists streams in id order after a given id. Ids that start with a prefix are one
unbroken run of that order, beginning with the prefix itself, so a page of them is the
prefix's own stream (if it exists) and then the streams listed after the prefix, up to the
first id that does not start with it: no scan, and the store's protocol needs no change.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import takewhile

from eventfold.eventstore import EventStore, StreamInfo
from eventfold.eventstore.encoding import stream_id_problem


@dataclass(frozen=True, slots=True)
class StreamPage:
    """One page of streams, and the id to continue after when more follow."""

    streams: list[StreamInfo]
    next_after: str | None


async def find_streams(
    store: EventStore,
    *,
    prefix: str = "",
    category: str | None = None,
    after: str | None = None,
    limit: int = 50,
) -> StreamPage:
    """Streams whose id starts with ``prefix`` (of ``category`` when given), in id order,
    after the id ``after``; at most ``limit``."""
    found: list[StreamInfo] = []
    if prefix and (after is None or after < prefix):
        exact = await _stream_info(store, prefix)
        if exact is not None and category in (None, exact.category):
            found.append(exact)
        after = prefix
    # One more than asked tells whether a next page exists.
    listed = await store.list_streams(category=category, after=after, limit=limit + 1 - len(found))
    found += takewhile(lambda info: info.stream_id.startswith(prefix), listed)
    shown = found[:limit]
    return StreamPage(shown, shown[-1].stream_id if len(found) > limit else None)


async def _stream_info(store: EventStore, stream_id: str) -> StreamInfo | None:
    if stream_id_problem(stream_id) is not None:  # e.g. surrounding spaces: no such stream
        return None
    last = await store.read_stream(stream_id, backwards=True, limit=1)
    if not last:
        return None
    return StreamInfo(stream_id, last[0].stream_version, last[0].recorded_at)
