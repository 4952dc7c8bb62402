"""What the console reads from: the store, the engine on its database, and the application.

Opened once when the console starts and closed when it stops. Every view calls library
functions that open and close their own short transactions, so no request holds a
transaction while it waits on the network.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from eventfold.app import Running
from eventfold.config import Settings
from eventfold.errors import AppRequired
from eventfold.eventstore import EventStore
from eventfold.eventstore.engine import create_engine


@dataclass(frozen=True, slots=True)
class Sources:
    """The open store, and the application on it when the console was given one."""

    store: EventStore
    log_engine: AsyncEngine | None
    """An engine on the database that holds the log, for the trace's indexed query; None
    on ``memory://``, whose events are in no database (the trace then scans the log)."""
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
            engine = None if settings.database_url.startswith("memory:") else running.engine
            yield Sources(running.store, engine, running)
        return
    async with settings.connect() as store:
        if settings.database_url.startswith("memory:"):
            yield Sources(store, None, None)
            return
        engine = create_engine(settings.database_url)
        try:
            yield Sources(store, engine, None)
        finally:
            await engine.dispose()
