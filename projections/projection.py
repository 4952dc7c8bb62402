"""The ``Projection`` base class, the ``@handles`` decorator and the ``ProjectionRegistry``.

A projection is a subscriber that writes read-model tables it owns::

    class OrderList(Projection):
        name = "order_list"
        metadata = sa.MetaData()
        orders = sa.Table("orders", metadata, sa.Column("id", sa.Text, primary_key=True),
                          sa.Column("status", sa.Text))

        @handles(OrderPlaced)
        async def _placed(self, event: OrderPlaced, ctx: ProjectionContext) -> None:
            await ctx.connection.execute(
                ctx.tables["orders"].insert().values(id=event.order_id, status="placed"))

Handlers write through ``ctx``: its connection is the batch's transaction, and its tables
are the *active* copies (the shadow copies while a blue/green rebuild builds them), so a
handler must use ``ctx.tables[...]`` (or ``ctx.orders``), never the class attribute.
Queries read the class attribute's table, which always names the live one.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from eventfold.eventstore.event import Event
from eventfold.eventstore.protocol import EventStore
from eventfold.eventstore.records import RecordedEvent
from eventfold.projections.errors import (
    DuplicateProjection,
    ProjectionDefinitionError,
    UnknownProjection,
)
from eventfold.projections.partitions import stream_key
from eventfold.projections.subscriber import BatchContext, Delivery, FailurePolicy

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]{0,99}$")
_HANDLES_ATTR = "__eventfold_handles__"

HandlerT = TypeVar("HandlerT", bound=Callable[..., Awaitable[None]])


def handles(*event_classes: type[Event]) -> Callable[[HandlerT], HandlerT]:
    """Mark an ``async def handler(self, event, ctx)`` as the projection's handler of these
    event classes (several handlers per class are not allowed; one handler may take many)."""
    if not event_classes or not all(
        isinstance(cls, type) and issubclass(cls, Event) and cls is not Event
        for cls in event_classes
    ):
        raise ProjectionDefinitionError(
            "@handles takes one or more Event subclasses, e.g. @handles(OrderPlaced)"
        )

    def mark(handler: HandlerT) -> HandlerT:
        existing: tuple[type[Event], ...] = getattr(handler, _HANDLES_ATTR, ())
        setattr(handler, _HANDLES_ATTR, existing + event_classes)
        return handler

    return mark


@dataclass(frozen=True, slots=True)
class ReadModel:
    """A connection in the batch's transaction and the active copies of the tables."""

    connection: AsyncConnection
    tables: Mapping[str, sa.Table]
    replaying: bool = False

    def __getattr__(self, name: str) -> sa.Table:
        # Only called for names that are not fields: table access by attribute, ctx.orders.
        if name.startswith("_") or name == "tables":
            raise AttributeError(name)
        try:
            return self.tables[name]
        except KeyError:
            raise AttributeError(
                f"no table {name!r} in this projection (tables: {', '.join(self.tables)})"
            ) from None


@dataclass(frozen=True, slots=True)
class ProjectionContext(ReadModel):
    """What a handler gets besides its event: the read model and the event's envelope."""

    record: RecordedEvent | None = None

    @property
    def envelope(self) -> RecordedEvent:
        """The stored envelope (event_id, stream_id, position, metadata, recorded_at)."""
        if self.record is None:  # pragma: no cover - the runner always sets it
            raise RuntimeError("this context carries no event")
        return self.record


class Projection:
    """Base class of read-model projections: subclass, name it, declare tables and handlers.

    Class attributes: ``name`` (stable: checkpoints are stored under it), ``metadata`` (a
    ``sa.MetaData`` holding the tables it owns, and nothing else), ``failure`` (a
    ``FailurePolicy``), ``partitions`` (how many partitions runners share it as; events
    go to one by ``partition_key``, the stream id unless overridden). Register instances
    with a ``ProjectionRegistry``.
    """

    name: ClassVar[str]
    metadata: ClassVar[sa.MetaData]
    failure: ClassVar[FailurePolicy] = FailurePolicy()
    partitions: ClassVar[int] = 1

    _handlers: ClassVar[dict[str, tuple[type[Event], str]]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        handlers: dict[str, tuple[type[Event], str]] = {}
        for klass in reversed(cls.__mro__):
            # A subclass may override a base's handler; one class may not declare two.
            own: dict[str, str] = {}
            for attr, value in vars(klass).items():
                for event_cls in getattr(value, _HANDLES_ATTR, ()):
                    previous = own.get(event_cls.event_type)
                    if previous is not None and previous != attr:
                        raise ProjectionDefinitionError(
                            f"{klass.__qualname__} handles {event_cls.event_type!r} twice "
                            f"({previous} and {attr}): keep one handler per event type"
                        )
                    own[event_cls.event_type] = attr
                    handlers[event_cls.event_type] = (event_cls, attr)
        cls._handlers = handlers

    def __init__(self) -> None:
        cls = type(self)
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not _NAME.match(name):
            raise ProjectionDefinitionError(
                f"{cls.__qualname__}.name must be a stable name of letters, digits, '_', "
                f"'.' or '-' starting with a letter (got {name!r})"
            )
        metadata = getattr(cls, "metadata", None)
        if not isinstance(metadata, sa.MetaData):
            raise ProjectionDefinitionError(
                f"{cls.__qualname__}.metadata must be the sa.MetaData of its read-model "
                "tables (use a MetaData of its own: rebuilds drop and recreate them)"
            )
        partitions = cls.partitions
        if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
            raise ProjectionDefinitionError(
                f"{cls.__qualname__}.partitions must be a whole number of at least 1 "
                f"(got {partitions!r})"
            )
        if not cls._handlers and type(self).apply_batch is Projection.apply_batch:
            raise ProjectionDefinitionError(
                f"{cls.__qualname__} handles no event: mark handlers with @handles(EventClass)"
            )

    # -- the Subscriber interface ------------------------------------------------------------

    @property
    def event_types(self) -> frozenset[str] | None:
        """The stored type names of the events the projection has handlers for."""
        return frozenset(self._handlers)

    @property
    def tables(self) -> dict[str, sa.Table]:
        """The live read-model tables by name."""
        return dict(self.metadata.tables)

    async def prepare(self, connection: AsyncConnection) -> None:
        """Create the live tables that do not exist yet."""
        await connection.run_sync(self.metadata.create_all)

    def around_batch(
        self, records: Sequence[RecordedEvent], store: EventStore, engine: AsyncEngine
    ) -> AbstractAsyncContextManager[None]:
        """Nothing to do outside the batch's transaction: a projection only writes in it."""
        return nullcontext()

    async def handle_batch(self, batch: Sequence[Delivery], context: BatchContext) -> None:
        """Apply a batch to the live tables."""
        model = ReadModel(context.connection, self.metadata.tables, context.replaying)
        await self.apply_batch(batch, model)

    # -- what subclasses may override ------------------------------------------------------

    partition_key = stream_key
    """What decides an event's partition: its stream id (the store then filters for each
    partition). Override with a method ``partition_key(self, record) -> str`` to key by
    something the read model's rows are keyed by (a customer id in ``record.data``); each
    partition then reads the whole log. Events of one key keep their order, so give all
    events of a stream the same key."""

    async def apply_batch(self, batch: Sequence[Delivery], model: ReadModel) -> None:
        """Apply events in order through their handlers.

        Override to write a batch at once (bulk upserts); the override must have the
        effect of applying the events one by one, because a failing batch is redone one
        event at a time (as one-event batches) to find and park the failing event.
        """
        for delivery in batch:
            entry = self._handlers.get(delivery.record.event_type)
            if entry is None:
                continue
            handler = getattr(self, entry[1])
            context = ProjectionContext(
                model.connection, model.tables, model.replaying, delivery.record
            )
            await handler(delivery.event, context)

    def __repr__(self) -> str:
        return f"<{type(self).__qualname__} {self.name!r}>"


class ProjectionRegistry:
    """The projections of an application, by name. Registration is explicit."""

    def __init__(self, projections: Sequence[Projection] = ()) -> None:
        self._by_name: dict[str, Projection] = {}
        for projection in projections:
            self.register(projection)

    def register(self, projection: Projection) -> Projection:
        """Add a projection instance; a second one with the same name is an error."""
        if not isinstance(projection, Projection):
            raise TypeError(f"{projection!r} is not a Projection instance")
        if projection.name in self._by_name:
            raise DuplicateProjection(projection.name)
        tables = {table for other in self._by_name.values() for table in other.tables}
        clash = tables & set(projection.tables)
        if clash:
            raise ProjectionDefinitionError(
                f"projection {projection.name!r} declares tables already owned by another "
                f"projection: {', '.join(sorted(clash))}; each table has one owner"
            )
        self._by_name[projection.name] = projection
        return projection

    def get(self, name: str) -> Projection:
        """The projection registered under ``name`` (``UnknownProjection`` if none)."""
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownProjection(name, sorted(self._by_name)) from None

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._by_name)

    def __iter__(self) -> Iterator[Projection]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name
