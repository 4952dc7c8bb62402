"""``App``: what an application registers, in one object its code and the CLI share.

An application builds one ``App`` with its events, upcasters, aggregates and projections;
``eventfold --app module:attribute ...`` loads it, so the command line decodes, checks,
snapshots and runs exactly what the application does::

    app = App(events=[OrderPlaced], aggregates=[Order], projections=[OrderList()])
    async with app.connect("sqlite:///shop.db") as running:
        await running.repository.save(order)
"""

from __future__ import annotations

import importlib
from collections.abc import Generator, Iterable
from types import TracebackType
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from aggregates import Aggregate, Repository, check_aggregate
from eventstore import DEFAULT_URL, Event, EventfoldError, EventRegistry, EventStore, connect
from eventstore.engine import create_engine
from projections import Projection, ProjectionRegistry, Runner, Subscriber
from snapshots import SnapshotStorage, TakeSnapshot, open_snapshots
from upcasters import Upcasters


class AppNotFound(EventfoldError):
    """``--app module:attribute`` does not name an ``App``."""

    def __init__(self, spec: str, reason: str) -> None:
        self.spec = spec
        super().__init__(
            f"cannot load the application {spec!r}: {reason}; "
            "pass --app as module:attribute naming an eventfold App (e.g. examples.shop:app)"
        )


class App:
    """An application's events, upcasters, aggregates, projections and other subscribers.

    Registration is explicit and checked when the App is built: an upcaster chain with a
    gap, or an aggregate handling an unregistered event, fails here and not at run time.
    """

    def __init__(
        self,
        *,
        events: Iterable[type[Event]] = (),
        upcasters: Upcasters | None = None,
        aggregates: Iterable[type[Aggregate]] = (),
        projections: Iterable[Projection] = (),
        subscribers: Iterable[Subscriber] = (),
    ) -> None:
        self.upcasters = upcasters if upcasters is not None else Upcasters()
        self.registry = EventRegistry(events, upcaster=self.upcasters)
        self.aggregates = list(aggregates)
        self.projections = ProjectionRegistry(list(projections))
        self.subscribers = list(subscribers)
        self.check()

    def check(self) -> None:
        """Raise the first problem of the registrations (upcaster gaps, stray handlers)."""
        self.upcasters.check(self.registry)
        for cls in self.aggregates:
            check_aggregate(cls, self.registry)

    def all_subscribers(self) -> list[Subscriber]:
        """Projections first, then the other subscribers (process managers, relays)."""
        return [*self.projections, *self.subscribers]

    def connect(self, url: str = DEFAULT_URL) -> Connecting:
        """Open the store, snapshots and repository: ``async with app.connect(url) as run``."""
        return Connecting(self, url)


class Running:
    """An App connected to a database: its store, snapshots, repository and runner."""

    def __init__(
        self, app: App, url: str, store: EventStore, snapshots: SnapshotStorage
    ) -> None:
        self.app = app
        self._url = url
        self.store = store
        self.snapshots = snapshots
        self.repository = Repository(store, snapshots=snapshots)
        self._engine: AsyncEngine | None = None

    @property
    def engine(self) -> AsyncEngine:
        """The SQLAlchemy engine on the store's database (read models, checkpoints)."""
        if self._engine is None:
            self._engine = create_engine(self._url)
        return self._engine

    def runner(self, **options: Any) -> Runner:
        """A runner of every subscriber of the App; options go to ``projections.Runner``."""
        return Runner(self.store, self.app.all_subscribers(), engine=self.engine, **options)

    def snapshot_fold(self) -> TakeSnapshot:
        """Stream id -> snapshot at its head, for the App's aggregates (for the sweep)."""
        return self.repository.snapshot_fold(*self.app.aggregates)

    async def close(self) -> None:
        """Close the engine, the snapshot store and the event store."""
        if self._engine is not None:
            await self._engine.dispose()
        await self.snapshots.close()
        await self.store.close()


class Connecting:
    """``await app.connect(url)`` or ``async with app.connect(url) as running``."""

    def __init__(self, app: App, url: str) -> None:
        self.app = app
        self.url = url
        self._running: Running | None = None

    async def _open(self) -> Running:
        store = await connect(self.url, self.app.registry)
        try:
            return Running(self.app, self.url, store, open_snapshots(self.url))
        except BaseException:
            await store.close()
            raise

    def __await__(self) -> Generator[Any, None, Running]:
        return self._open().__await__()

    async def __aenter__(self) -> Running:
        self._running = await self._open()
        return self._running

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._running is not None:
            await self._running.close()

    def __repr__(self) -> str:
        return f"<connecting {self.url}>"


def load_app(spec: str) -> App:
    """The ``App`` named by ``module:attribute`` (``module`` alone means ``module:app``)."""
    module_name, _, attribute = spec.partition(":")
    attribute = attribute or "app"
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AppNotFound(spec, f"module {module_name!r} cannot be imported ({exc})") from exc
    app = getattr(module, attribute, None)
    if not isinstance(app, App):
        found = "nothing" if app is None else type(app).__name__
        raise AppNotFound(spec, f"{module_name}.{attribute} is {found}, not an App")
    return app


__all__ = ["App", "AppNotFound", "Connecting", "Running", "load_app"]
