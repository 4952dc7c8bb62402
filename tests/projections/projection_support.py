"""Events, projections and helpers shared by the projection tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from eventfold.eventstore import Event, EventRegistry, EventStore
from eventfold.projections import FailurePolicy, Projection, ProjectionContext, handles
from eventfold.projections.database import Database


class ItemAdded(Event):
    """A counted event."""

    sku: str
    quantity: int = 1


class ItemRemoved(Event):
    """A second counted event."""

    sku: str


class Unrelated(Event):
    """An event no test projection handles."""

    note: str = ""


def make_registry() -> EventRegistry:
    """The registry of the projection tests."""
    return EventRegistry([ItemAdded, ItemRemoved, Unrelated])


class Poison(Exception):
    """What a handler raises for a poisoned SKU."""


class Inventory(Projection):
    """Per-stream count of items and the last event type; fails on poisoned SKUs."""

    name = "inventory"
    metadata = sa.MetaData()
    stock = sa.Table(
        "test_inventory_stock",
        metadata,
        sa.Column("stream_id", sa.Text(), primary_key=True),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("last_sku", sa.Text(), nullable=False),
    )
    log = sa.Table(
        "test_inventory_log",
        metadata,
        sa.Column("event_id", sa.Uuid(), primary_key=True),
        sa.Column("stream_id", sa.Text(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Index("test_inventory_log_stream", "stream_id", "seq", unique=True),
    )
    failure = FailurePolicy(retries=2, backoff=0.001)

    def __init__(self, *, poisoned: set[str] | None = None) -> None:
        super().__init__()
        self.poisoned: set[str] = poisoned if poisoned is not None else set()
        self.calls: list[str] = []

    async def _change(self, sku: str, delta: int, ctx: ProjectionContext) -> None:
        self.calls.append(sku)
        if sku in self.poisoned:
            raise Poison(f"sku {sku} is poisoned")
        stock = ctx.tables["test_inventory_stock"]
        record = ctx.envelope
        row = (await ctx.connection.execute(
            sa.select(stock.c.events).where(stock.c.stream_id == record.stream_id)
        )).first()
        if row is None:
            await ctx.connection.execute(stock.insert().values(
                stream_id=record.stream_id, quantity=delta, events=1, last_sku=sku,
            ))
        else:
            await ctx.connection.execute(
                stock.update().where(stock.c.stream_id == record.stream_id).values(
                    quantity=stock.c.quantity + delta, events=stock.c.events + 1,
                    last_sku=sku,
                )
            )
        # A unique log row per event: applying an event twice fails loudly.
        await ctx.connection.execute(ctx.test_inventory_log.insert().values(
            event_id=record.event_id, stream_id=record.stream_id, seq=record.stream_version,
        ))

    @handles(ItemAdded)
    async def _added(self, event: ItemAdded, ctx: ProjectionContext) -> None:
        await self._change(event.sku, event.quantity, ctx)

    @handles(ItemRemoved)
    async def _removed(self, event: ItemRemoved, ctx: ProjectionContext) -> None:
        await self._change(event.sku, -1, ctx)


class HaltingInventory(Inventory):
    """Inventory that halts on a failing event."""

    name = "halting_inventory"
    metadata = sa.MetaData()
    stock = Inventory.stock.to_metadata(metadata)
    log = Inventory.log.to_metadata(metadata)
    failure = FailurePolicy(retries=1, backoff=0.001, on_failure="halt")


READ_MODEL_TABLES = ["test_inventory_stock", "test_inventory_log"]


@dataclass
class Env:
    """A store and an engine on its database."""

    kind: str
    url: str
    store: EventStore
    engine: AsyncEngine
    extra: list[Any] = field(default_factory=list)
    runner_options: ClassVar[dict[str, Any]] = {
        "lease_ttl": 1.5, "lease_retry": 0.05, "idle_wait": 0.05, "error_backoff": 0.05,
    }

    async def rows(self, table: sa.Table) -> list[tuple[Any, ...]]:
        """Every row of a live table, sorted."""
        async with Database(self.engine).reading() as conn:
            result = await conn.execute(sa.select(table))
            return sorted(tuple(row) for row in result)


async def drop_read_models(engine: AsyncEngine) -> None:
    """Drop the test read-model tables (and shadows a failed test left)."""
    async with engine.begin() as conn:
        for base in READ_MODEL_TABLES:
            for suffix in ("", "__shadow", "__old"):
                await conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{base}{suffix}"')




async def empty_postgres_tables(engine: AsyncEngine) -> None:
    """Empty every eventfold table of the session's PostgreSQL test database."""
    async with engine.begin() as conn:
        names = (await conn.exec_driver_sql(
            "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = current_schema() "
            "AND tablename LIKE 'eventfold\\_%' AND tablename <> 'eventfold_alembic_version'"
        )).scalars().all()
        await conn.exec_driver_sql(f"TRUNCATE {', '.join(names)} RESTART IDENTITY CASCADE")
