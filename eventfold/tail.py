"""Following the global log live: every event after a position, then each new one as it commits."""

from __future__ import annotations

from collections.abc import AsyncIterator

from eventfold.eventstore import EventStore, GlobalPosition, RecordedEvent


async def tail(
    store: EventStore,
    *,
    after: GlobalPosition | None = None,
    batch_size: int = 500,
    wait_seconds: float = 5.0,
) -> AsyncIterator[RecordedEvent]:
    """Yield the events of the global log after ``after``, then new events as they arrive.

    ``after`` defaults to the head when the tail starts, so only new events are yielded;
    pass ``eventstore.START`` to begin with the first event. Never ends by itself: stop
    iterating (or cancel the task) to stop. New events wake it through
    ``store.wait_for_events`` (LISTEN/NOTIFY on PostgreSQL, polling elsewhere);
    ``wait_seconds`` only bounds each wait, it is not a polling delay.
    """
    position = await store.head() if after is None else after
    while True:
        batch = await store.read_all(after=position, limit=batch_size)
        for record in batch:
            # Advance before yielding: a consumer that stops here has seen this event.
            position = record.global_position
            yield record
        if len(batch) < batch_size:
            await store.wait_for_events(position, wait_seconds)
