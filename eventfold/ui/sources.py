"""What the console reads from: the store, the engine on its database, and the application.

Opened once when the console starts and closed when it stops. Every view calls library
functions that open and close their own short transactions, so no request holds a
transaction while it waits on the network.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from eventfold.app import Running
from eventfold.config import Settings
from eventfold.errors import AppRequired
from eventfold.eventstore import EventStore


@dataclass(frozen=True, slots=True)
class Sources:
    """The open store, and the application on it when the console was given one."""

    store: EventStore
    running: Running | None
    """The application connected to the store (``--app``); None without one."""

    def application(self, view: str) -> Running:
        """The running application, or ``AppRequired`` naming the view that needs it."""
        if self.running is None:
            raise AppRequired(f"the {view} view")
        return self.running


@asynccontextmanager
async def open_sources(settings: Settings) -> AsyncIterator[Sources]:
    """Open what ``settings`` name: the application on its store with ``--app``, else the
    store alone (its events shown as stored JSON)."""
    if settings.app_spec:
        async with settings.connect_app("`eventfold ui`") as running:
            yield Sources(running.store, running)
        return
    async with settings.connect() as store:
        yield Sources(store, None)
