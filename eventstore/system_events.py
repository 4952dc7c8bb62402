"""The events the store itself writes into a stream: its deletion and its truncation.

They are ordinary events of the log under type names in the reserved ``$`` namespace;
every ``EventRegistry`` knows them, so every reader decodes them and a projection handles
them like any other event (see docs/lifecycle.md).
"""

from __future__ import annotations

from eventfold.eventstore.event import Event

SYSTEM_PREFIX = "$"
"""Event type names starting with it are the store's own: no application event may use it."""


class StreamDeleted(Event):
    """The stream was deleted: soft (``hard=False``), it reads as not found until new events
    recreate it; hard, it is a tombstone that refuses every later append."""

    event_type = "$StreamDeleted"
    hard: bool


class StreamTruncated(Event):
    """The stream's events before version ``before`` no longer read."""

    event_type = "$StreamTruncated"
    before: int


SYSTEM_EVENTS: tuple[type[Event], ...] = (StreamDeleted, StreamTruncated)
"""Registered in every registry."""
SYSTEM_EVENT_TYPES = frozenset(cls.event_type for cls in SYSTEM_EVENTS)
