"""The store's own events: every registry decodes them, lists only the application's
events, and keeps the ``$`` namespace for them."""

from __future__ import annotations

import pytest

from eventfold import Event, EventRegistry, StreamDeleted, StreamTruncated


class Opened(Event):
    owner: str


def test_every_registry_knows_the_system_events_and_lists_only_its_own() -> None:
    registry = EventRegistry([Opened])
    assert registry.class_for("$StreamDeleted") is StreamDeleted
    assert registry.class_for("$StreamTruncated") is StreamTruncated
    assert StreamDeleted in registry
    assert list(registry) == [Opened] and len(registry) == 1
    registry.register(StreamDeleted)  # a no-op, as for any registered class
    assert len(registry) == 1
    assert registry.decode_stored("Doc-1", 3, 7, "$StreamTruncated", 1, {"before": 2}) == (
        StreamTruncated(before=2)
    )


def test_the_dollar_namespace_is_the_stores() -> None:
    class Sneaky(Event):
        event_type = "$Sneaky"

    with pytest.raises(TypeError, match=r"'\$Sneaky' starts with '\$'"):
        EventRegistry([Sneaky])
