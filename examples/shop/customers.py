"""The shop's customers: who they are, where parcels go - personal data, forgettable.

A customer's name, e-mail and shipping address are marked ``PersonalData`` of the customer
id: the store keeps them encrypted with the customer's own key, and ``running.forget(id)``
(``eventfold forget ID``) destroys that key, after which they read as ``"<forgotten>"``
everywhere while the events still fold. The customer id itself stays readable (it finds
the key): the shop's ids stand for opaque account ids. The ``customer_directory`` read
model copies the data, so a forget is followed by its rebuild (docs/personal-data.md).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Annotated

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from eventfold import (
    Aggregate,
    DomainError,
    Event,
    PersonalData,
    Projection,
    ProjectionContext,
    applies,
    handles,
)

Personal = PersonalData(subject="customer_id")
"""The mark of a customer's personal data: sealed with the key of the event's customer."""


class CustomerRegistered(Event):
    """A customer signed up: name, e-mail and shipping address are personal data."""

    customer_id: str
    name: Annotated[str, Personal]
    email: Annotated[str, Personal]
    address: Annotated[str, Personal]


class CustomerMoved(Event):
    """Parcels go to a new address from now on."""

    customer_id: str
    address: Annotated[str, Personal]


CUSTOMER_EVENTS: tuple[type[Event], ...] = (CustomerRegistered, CustomerMoved)
"""The customers' event classes, for the application's registry."""


class AlreadyRegistered(DomainError):
    """A customer registers once."""


class Customer(Aggregate):
    """A customer of the shop (its id is the customer id orders name)."""

    name: str = ""
    email: str = ""
    address: str = ""

    def register(self, name: str, email: str, address: str) -> None:
        """Sign the customer up."""
        if self.version or self.pending_events:
            raise AlreadyRegistered(f"customer {self.id} is registered already")
        self.record(
            CustomerRegistered(customer_id=self.id, name=name, email=email, address=address)
        )

    def move(self, address: str) -> None:
        """Ship to ``address`` from now on."""
        if address != self.address:
            self.record(CustomerMoved(customer_id=self.id, address=address))

    @applies(CustomerRegistered)
    def _registered(self, event: CustomerRegistered) -> None:
        self.name, self.email, self.address = event.name, event.email, event.address

    @applies(CustomerMoved)
    def _moved(self, event: CustomerMoved) -> None:
        self.address = event.address


class CustomerDirectory(Projection):
    """Who each customer is and where their parcels go: a copy of personal data, which a
    rebuild after a forget replaces with the placeholders."""

    name = "customer_directory"
    metadata = sa.MetaData()
    customers = sa.Table(
        "shop_customers", metadata,
        sa.Column("customer_id", sa.Text(), primary_key=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
    )

    @handles(CustomerRegistered)
    async def _registered(self, event: CustomerRegistered, ctx: ProjectionContext) -> None:
        await ctx.connection.execute(ctx.shop_customers.insert().values(
            customer_id=event.customer_id, name=event.name, email=event.email,
            address=event.address,
        ))

    @handles(CustomerMoved)
    async def _moved(self, event: CustomerMoved, ctx: ProjectionContext) -> None:
        table = ctx.shop_customers
        await ctx.connection.execute(
            table.update().where(table.c.customer_id == event.customer_id)
            .values(address=event.address)
        )


@dataclass(frozen=True)
class CustomerRow:
    """A row of the customer directory."""

    customer_id: str
    name: str
    email: str
    address: str


async def list_customers(
    engine: AsyncEngine, customer_ids: Collection[str] | None = None
) -> list[CustomerRow]:
    """The directory (of these customers, or all), by customer id."""
    table = CustomerDirectory.customers
    query = sa.select(table).order_by(table.c.customer_id)
    if customer_ids is not None:
        query = query.where(table.c.customer_id.in_(sorted(customer_ids)))
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [CustomerRow(row.customer_id, row.name, row.email, row.address) for row in rows]
