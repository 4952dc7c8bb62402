"""The application of the partitioned process-manager multi-process test (``eventfold run
--app process_child:app``).

``mp_orders`` is served as ``EVENTFOLD_MP_ORDER_PARTITIONS`` partitions (4 by default),
keyed by order. An order's events come from
its own stream (``Opened``) and from shelf streams shared by many orders (``Touched``), so
partitioning by stream would split an instance. Each ``Touched`` is recorded in the
instance's state, in order; the timeout scheduled by ``Opened`` counts its firings in the
state and rings the order's bell (a command): each must happen exactly once.
"""

from __future__ import annotations

import os
from datetime import timedelta

from pydantic import BaseModel

from eventfold import App
from eventfold.aggregates import Aggregate, applies
from eventfold.eventstore import Event
from eventfold.processes import ProcessContext, ProcessManager, on, on_timeout

PARTITIONS_ENV = "EVENTFOLD_MP_ORDER_PARTITIONS"
DUE_AFTER = timedelta(seconds=2)
"""When an order's timeout falls due after its ``Opened`` event."""


class Opened(Event):
    """An order began."""

    order: str


class Touched(Event):
    """Step ``n`` of an order, appended to a shelf stream of many orders."""

    order: str
    n: int


class Rang(Event):
    """The order's bell rang (what the timeout's command records)."""

    order: str


class Bell(Aggregate):
    """One per order; rung by the timeout."""

    rung: int = 0

    def ring(self) -> None:
        self.record(Rang(order=self.id))

    @applies(Rang)
    def _rang(self, event: Rang) -> None:
        self.rung += 1


class Expired(BaseModel):
    """The timeout message."""

    order: str


class Steps(BaseModel):
    """An instance's state: the steps seen, in order, and the timeout's firings."""

    steps: list[int] = []
    fired: int = 0


class Orders(ProcessManager[Steps]):
    """Records each step once, in order; its timeout fires once and rings the bell."""

    name = "mp_orders"
    key = "order"
    state_type = Steps
    partitions = int(os.environ.get(PARTITIONS_ENV, "4"))

    @on(Opened, start=True)
    async def opened(self, event: Opened, ctx: ProcessContext[Steps]) -> None:
        ctx.schedule(Expired(order=event.order), after=DUE_AFTER)

    @on(Touched)
    async def touched(self, event: Touched, ctx: ProcessContext[Steps]) -> None:
        ctx.state.steps.append(event.n)

    @on_timeout(Expired)
    async def expired(self, message: Expired, ctx: ProcessContext[Steps]) -> None:
        ctx.state.fired += 1
        await ctx.send(Bell, message.order, lambda bell: bell.ring())


app = App(events=[Opened, Touched, Rang], aggregates=[Bell], subscribers=[Orders()])
"""The application the runner processes serve."""
