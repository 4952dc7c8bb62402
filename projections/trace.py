"""The causation tree: which events an event caused, or all events of one correlation.

Every event appended while handling another carries ``causation_id`` (the handled event's
id) and ``correlation_id`` (shared by the whole conversation, see
``eventfold.eventstore.causation``). ``trace(store, id)`` gathers the events of the correlation
and links each to its cause:

- ``id`` an event id: the tree below that event (the event and what it caused, transitively);
- ``id`` a correlation id (a request id, or the id of the event that started it all): every
  event of the correlation, as a forest of the events whose cause is not among them.

The store finds the events (``EventStore.read_correlation``: one indexed query on PostgreSQL,
a scan elsewhere).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from eventfold.eventstore.protocol import EventStore
from eventfold.eventstore.records import RecordedEvent
from eventfold.projections.errors import ProjectionError


class TraceNotFound(ProjectionError, LookupError):
    """No event has the id, and no event the correlation id, that was asked for."""

    def __init__(self, id: str) -> None:
        self.id = id
        super().__init__(
            f"no event with id {id} and no event correlated by {id!r}: check the id "
            "(`eventfold events tail --from-start` lists events with their ids)"
        )


@dataclass(slots=True)
class TraceNode:
    """An event and the events it caused, in log order."""

    record: RecordedEvent
    children: list[TraceNode] = field(default_factory=list)

    def walk(self, depth: int = 0) -> Iterator[tuple[int, RecordedEvent]]:
        """The events of the subtree, depth first, with their depth."""
        yield depth, self.record
        for child in self.children:
            yield from child.walk(depth + 1)


async def trace(store: EventStore, id: str | uuid.UUID) -> list[TraceNode]:
    """The causation tree of an event, or the forest of a correlation id (see the module).

    Raises ``TraceNotFound`` when nothing matches.
    """
    wanted = str(id)
    event_id = _as_uuid(wanted)
    records = await _correlated(store, wanted, event_id)
    if event_id is not None:
        root = next((r for r in records if r.event_id == event_id), None)
        if root is not None:
            return [_tree(records)[root.event_id]]
    if not records:
        raise TraceNotFound(wanted)
    nodes = _tree(records)
    ids = {str(record.event_id) for record in records}
    return [
        nodes[record.event_id] for record in records
        if str(record.metadata.get("causation_id")) not in ids
    ]


def _as_uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def _tree(records: list[RecordedEvent]) -> dict[uuid.UUID, TraceNode]:
    nodes = {record.event_id: TraceNode(record) for record in records}
    by_text = {str(key): node for key, node in nodes.items()}
    for record in records:  # log order, so children come in the order they happened
        parent = by_text.get(str(record.metadata.get("causation_id")))
        if parent is not None and parent.record.event_id != record.event_id:
            parent.children.append(nodes[record.event_id])
    return nodes


async def _correlated(
    store: EventStore, wanted: str, event_id: uuid.UUID | None
) -> list[RecordedEvent]:
    """The events of the correlation ``wanted`` names (directly, or through the event with
    that id), in log order."""
    records = await store.read_correlation(wanted)
    if event_id is None:
        return records
    # The event with that id is among them; from the middle of a conversation its
    # correlation is the conversation (an event without one starts its own, under its id).
    event = next((r for r in records if r.event_id == event_id), None)
    correlation = str(event.metadata.get("correlation_id") or wanted) if event else wanted
    return records if correlation == wanted else await store.read_correlation(correlation)


def render(roots: list[TraceNode]) -> Any:
    """A rich ``Tree`` of the trace, one line per event (type, stream@version, id)."""
    from rich.tree import Tree

    top = Tree("[bold]causation[/bold]", guide_style="dim")

    def add(branch: Tree, node: TraceNode) -> None:
        record = node.record
        label = (
            f"[bold]{record.event_type}[/bold] {record.stream_id}@{record.stream_version} "
            f"[dim]{record.event_id} {record.recorded_at:%Y-%m-%d %H:%M:%S}[/dim]"
        )
        child = branch.add(label)
        for grandchild in node.children:
            add(child, grandchild)

    for root in roots:
        add(top, root)
    return top


__all__ = ["TraceNode", "TraceNotFound", "render", "trace"]
