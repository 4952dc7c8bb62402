"""``App``: what an application registers, in one object its code and the CLI share.

An application builds one ``App`` with its events, upcasters, aggregates and projections;
``eventfold --app module:attribute ...`` loads it, so the command line decodes, checks,
snapshots and runs exactly what the application does::

    app = App(events=[OrderPlaced], aggregates=[Order], projections=[OrderList()])
    async with app.connect("sqlite:///shop.db") as running:
        await running.repository.save(order)

``App(read_models=URL)`` (or ``app.connect(url, read_models=URL)``) keeps the read models
and the runner's books (checkpoints, parked events, leases, process managers' state) in a
database of their own; the store is then only read by the runner (docs/projections.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import os
import sys
from collections.abc import Callable, Collection, Generator, Iterable
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncEngine

from eventfold.aggregates import Aggregate, AggregateDefinitionError, Repository, check_aggregate
from eventfold.errors import (
    AppNotFound,
    MetricsUnavailable,
    ReadModelsNotMigrated,
    ReadModelsUnavailable,
    UnknownAggregateCategory,
)
from eventfold.eventstore import (
    DEFAULT_URL,
    DatabaseMissing,
    Event,
    EventfoldError,
    EventRegistry,
    EventStore,
    Forgetting,
    InvalidDatabaseURL,
    StoreUnavailable,
    category_of,
    connect,
    masked,
)
from eventfold.eventstore.engine import create_engine
from eventfold.eventstore.migrate import SCHEMA_HEAD, schema_revision
from eventfold.eventstore.retention import (
    Retention,
    RetentionReport,
    apply_retention,
    schedule_retention,
)
from eventfold.eventstore.urls import scheme_of, sqlite_file
from eventfold.messaging.inbox import BrokerConsumer
from eventfold.processes import DeadlinePoller, ProcessManager
from eventfold.projections import (
    Projection,
    ProjectionRegistry,
    Runner,
    Subscriber,
    SubscriberState,
    UnknownProjection,
)
from eventfold.snapshots import (
    Snapshot,
    SnapshotStorage,
    SweepReport,
    TakeSnapshot,
    open_snapshots,
    schedule_sweep,
    sweep,
)
from eventfold.upcasters import Upcasters

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler


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
        read_models: str | None = None,
        consumers: Iterable[BrokerConsumer] = (),
        retention: Iterable[Retention] = (),
    ) -> None:
        self.read_models = read_models
        """The URL of the database the read models live in; None: the store's database."""
        self.upcasters = upcasters if upcasters is not None else Upcasters()
        self.registry = EventRegistry(events, upcaster=self.upcasters)
        self.aggregates = list(aggregates)
        self.projections = ProjectionRegistry(list(projections))
        self.subscribers = list(subscribers)
        self.consumers = list(consumers)
        """Broker consumers whose backlog ``eventfold projections status`` shows (the App
        does not run them: their service does)."""
        self.retention = list(retention)
        """Retention policies, applied by ``eventfold run --retention-every`` and
        ``eventfold streams expire`` (docs/lifecycle.md)."""
        self.check()

    def check(self) -> None:
        """Raise the first problem of the registrations (upcaster gaps, stray handlers)."""
        self.upcasters.check(self.registry)
        for cls in self.aggregates:
            check_aggregate(cls, self.registry)

    def all_subscribers(self) -> list[Subscriber]:
        """Projections first, then the other subscribers (process managers, relays)."""
        return [*self.projections, *self.subscribers]

    def subscriber(self, name: str) -> Subscriber:
        """The projection or other subscriber named ``name`` (``UnknownProjection`` if none)."""
        for subscriber in self.all_subscribers():
            if subscriber.name == name:
                return subscriber
        raise UnknownProjection(name, sorted(s.name for s in self.all_subscribers()))

    def process_managers(self) -> list[ProcessManager[Any]]:
        """The subscribers that are process managers (their deadlines need a poller)."""
        return [s for s in self.subscribers if isinstance(s, ProcessManager)]

    def state_versions(self) -> dict[str, int]:
        """Each aggregate category's current state version (what snapshot pruning keeps)."""
        return {cls.category: cls.state_version for cls in self.aggregates}

    def connect(self, url: str = DEFAULT_URL, *, read_models: str | None = None) -> Connecting:
        """Open the store, snapshots and repository: ``async with app.connect(url) as run``.

        ``read_models`` (wins over the App's own) puts the read models and the runner's
        books in that database instead of the store's; it must be migrated too."""
        return Connecting(self, url, read_models or self.read_models)


class Running:
    """An App connected to a database: its store, snapshots, repository and runner."""

    def __init__(
        self,
        app: App,
        url: str,
        store: EventStore,
        snapshots: SnapshotStorage,
        read_models: str | None = None,
    ) -> None:
        self.app = app
        self.url = url
        """The database URL as given (password included: print it masked, with
        ``eventfold.eventstore.masked(url)``)."""
        self.read_models_url = read_models or url
        """The URL of the read models' database: ``url`` unless they live apart."""
        self.store = store
        self.snapshots = snapshots
        self.repository = Repository(store, snapshots=snapshots)
        for manager in app.process_managers():
            # Their commands load aggregates as the application does: from snapshots.
            manager.use_repository(self.repository)
        self._engine: AsyncEngine | None = None

    @property
    def engine(self) -> AsyncEngine:
        """The SQLAlchemy engine on the read models' database (read models, checkpoints,
        parked events, leases): the store's own unless they live apart."""
        if self._engine is None:
            self._engine = create_engine(self.read_models_url)
        return self._engine

    def runner(self, **options: Any) -> Runner:
        """A runner of every subscriber of the App; options go to ``projections.Runner``.

        Process managers' timeouts are fired by ``deadline_poller()``, run beside it.
        """
        return Runner(self.store, self.app.all_subscribers(), engine=self.engine, **options)

    def deadline_poller(self, **options: Any) -> DeadlinePoller | None:
        """The poller that fires the App's process managers' deadlines (None when it has
        none); options go to ``projections.DeadlinePoller``. Run one per runner process:
        pollers share the work safely."""
        managers = self.app.process_managers()
        if not managers:
            return None
        return DeadlinePoller(self.store, self.engine, managers, **options)

    def snapshot_fold(self) -> TakeSnapshot:
        """Stream id -> snapshot at its head, for the App's aggregates (for the sweep)."""
        return self.repository.snapshot_fold(*self.app.aggregates)

    async def take_snapshot(self, stream_id: str) -> Snapshot:
        """Fold one stream of one of the App's aggregates and store its snapshot at the
        head (what ``eventfold snapshots take STREAM`` does)."""
        self._categories([category_of(stream_id)], f"stream {stream_id!r}")
        snapshot = await self.snapshot_fold()(stream_id)
        assert snapshot is not None  # snapshot_fold raises rather than skip a stream
        await self.snapshots.save(snapshot)
        return snapshot

    async def sweep_snapshots(
        self, *, threshold: int, categories: Collection[str] | None = None
    ) -> SweepReport:
        """Snapshot the streams of the App's aggregates (or of ``categories``) with at least
        ``threshold`` events since their newest snapshot (``eventfold snapshots sweep``)."""
        chosen = self._categories(categories, "--category")
        return await sweep(
            self.store, self.snapshots, self.snapshot_fold(), threshold=threshold,
            categories=chosen,
        )

    def schedule_snapshot_sweep(
        self, scheduler: AsyncIOScheduler, *, threshold: int, every_seconds: float = 300
    ) -> Any:
        """Add the sweep of the App's aggregates' streams to an APScheduler scheduler
        (``eventfold run --snapshot-sweep-every``); returns the job."""
        return schedule_sweep(
            scheduler, self.store, self.snapshots, self.snapshot_fold(), threshold=threshold,
            every_seconds=every_seconds, categories=self._categories(None, "the sweep"),
        )

    async def prune_snapshots(self, *, keep: int = 1) -> int:
        """Delete all but the newest ``keep`` snapshots of each stream, and every snapshot
        whose state version is not its aggregate's current one; return how many."""
        return await self.snapshots.prune(keep=keep, state_versions=self.app.state_versions())

    async def forget(self, subject: str, *, dry_run: bool = False) -> Forgetting:
        """Forget a data subject (``eventfold forget SUBJECT``): destroy its key, so its
        ``PersonalData`` fields read as their placeholders everywhere from now on, and
        delete the snapshots of the streams that held them. Read models that copied such
        fields keep them until rebuilt (``eventfold projections rebuild NAME``).
        ``dry_run`` destroys nothing and says what would go. See docs/personal-data.md."""
        forgetting = await self.store.forget(subject, dry_run=dry_run)
        streams = list(forgetting.streams)
        snapshotted = len(await self.snapshots.latest_versions(streams))
        if not dry_run:
            # After the key: a snapshot taken from a read before the forget is gone too.
            await self.snapshots.delete(streams)
        return dataclasses.replace(forgetting, snapshotted_streams=snapshotted)

    async def apply_retention(
        self,
        *,
        now: datetime | None = None,
        dry_run: bool = False,
        on_progress: Callable[[RetentionReport], None] | None = None,
    ) -> RetentionReport:
        """Apply the App's retention policies once (``eventfold streams expire``);
        ``dry_run`` changes nothing and lists what would go. ``now`` defaults to the
        current time; ``on_progress`` hears the report so far after each page of streams."""
        return await apply_retention(
            self.store, self.app.retention, now=now, dry_run=dry_run, on_progress=on_progress
        )

    def schedule_retention(self, scheduler: AsyncIOScheduler, *, every_seconds: float) -> Any:
        """Add the App's retention job to an APScheduler scheduler (``eventfold run
        --retention-every``); returns the job."""
        return schedule_retention(
            scheduler, self.store, self.app.retention, every_seconds=every_seconds
        )

    def _categories(self, asked: Collection[str] | None, what: str) -> list[str]:
        # Streams of categories no aggregate of the App owns cannot be folded: refuse
        # them up front, naming what the App does know, rather than fail stream by stream.
        known = self.app.state_versions()
        if not known:
            raise AggregateDefinitionError(
                f"the application has no aggregates, so {what} cannot be snapshotted: "
                "register them with App(aggregates=[...])"
            )
        if asked is None:
            return sorted(known)
        unknown = sorted(set(asked) - set(known))
        if unknown:
            raise UnknownAggregateCategory(unknown, what, sorted(known))
        return list(asked)

    async def serve(
        self,
        runner: Runner,
        stop: asyncio.Event,
        *,
        shutdown_timeout: float = 10.0,
        sweep_every: float | None = None,
        sweep_threshold: int = 100,
        retention_every: float | None = None,
        on_started: Callable[[], None] = lambda: None,
        on_state: Callable[[SubscriberState], None] = lambda state: None,
    ) -> None:
        """Serve the App's subscribers with ``runner`` (from ``runner()``) until ``stop`` is
        set: what ``eventfold run`` does, callable from any program.

        Starts the runner, the deadline poller when the App has process managers, and the
        snapshot sweep every ``sweep_every`` seconds and the App's retention policies every
        ``retention_every`` seconds when asked; calls ``on_started`` once
        all are up and ``on_state`` each time a subscriber's state in this runner changes.
        On stop it stops taking new work first, then lets batches in progress commit
        (rolling them back after ``shutdown_timeout``): never a half-committed batch.
        """
        poller = self.deadline_poller(holder=runner.holder)
        scheduler: AsyncIOScheduler | None = None
        seen: dict[str, str] = {}

        def look() -> None:
            for state in runner.states():
                # "starting" is the instant before the first lease attempt: not a change.
                if state.state != "starting" and seen.get(state.name) != state.state:
                    seen[state.name] = state.state
                    on_state(state)

        started = False
        try:
            await _start_runner(runner)
            if poller is not None:
                await poller.start()
            if sweep_every is not None or retention_every is not None:
                from apscheduler.schedulers.asyncio import AsyncIOScheduler

                scheduler = AsyncIOScheduler(timezone=UTC)
                if sweep_every is not None:
                    self.schedule_snapshot_sweep(
                        scheduler, threshold=sweep_threshold, every_seconds=sweep_every
                    )
                if retention_every is not None:
                    self.schedule_retention(scheduler, every_seconds=retention_every)
                scheduler.start()
            started = True
            on_started()
            while not stop.is_set():
                look()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), STATE_WATCH_INTERVAL)
        finally:
            if scheduler is not None:
                scheduler.shutdown(wait=False)
            if poller is not None:
                await poller.stop()
            await runner.stop(timeout=shutdown_timeout)
            if started:  # a runner that failed to start has only its error to say
                look()

    async def close(self) -> None:
        """Close the engine, the snapshot store and the event store."""
        if self._engine is not None:
            await self._engine.dispose()
        await self.snapshots.close()
        await self.store.close()


class Connecting:
    """``await app.connect(url)`` or ``async with app.connect(url) as running``."""

    def __init__(self, app: App, url: str, read_models: str | None = None) -> None:
        self.app = app
        self.url = url
        self.read_models = read_models
        self._running: Running | None = None

    async def _open(self) -> Running:
        store = await connect(self.url, self.app.registry)
        try:
            if self.read_models is not None and self.read_models != self.url:
                await check_read_models(self.read_models, store=self.url)
            return Running(
                self.app, self.url, store, open_snapshots(self.url), self.read_models
            )
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
        return f"<connecting {masked(self.url)}>"


def load_app(spec: str) -> App:
    """The ``App`` named by ``module:attribute`` (``module`` alone means ``module:app``).

    Raises ``AppNotFound`` saying why when the module cannot be imported or the attribute
    is not an ``App``; an eventfold error raised while the module builds its App (an
    upcaster gap, say) propagates as it is.
    """
    module_name, _, attribute = spec.strip().partition(":")
    attribute = attribute or "app"
    if not module_name or not attribute.isidentifier():
        raise AppNotFound(spec, "it is not of the form module:attribute")
    # `python -m` puts the working directory on sys.path, a console script (`eventfold`)
    # does not: add it, as uvicorn and flask do, so that `eventfold --app examples.shop:app`
    # finds the application in the directory it is run from.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AppNotFound(spec, f"module {module_name!r} cannot be imported ({exc})") from exc
    except EventfoldError:
        raise
    except Exception as exc:
        # The user's module failed while being imported: name it, not eventfold.
        raise AppNotFound(
            spec, f"importing {module_name!r} raised {type(exc).__name__}: {exc}"
        ) from exc
    app = getattr(module, attribute, None)
    if not isinstance(app, App):
        found = "nothing" if app is None else type(app).__name__
        raise AppNotFound(spec, f"{module_name}.{attribute} is {found}, not an App")
    return app


async def check_read_models(url: str, *, store: str) -> None:
    """Check that the read models' own database at ``url`` can be reached and is migrated:
    ``ReadModelsUnavailable`` or ``ReadModelsNotMigrated`` (naming the command that
    migrates it beside the store at ``store``) if not.

    ``App.connect`` checks this before anything runs, so a wrong ``--read-models`` fails
    at once and not as a runner retrying forever. ``memory://`` (a private in-memory
    database that creates the runner's tables itself) needs no check.
    """
    if scheme_of(url) == "memory":
        return
    try:
        path = sqlite_file(url) if scheme_of(url) == "sqlite" else None
        if path is not None and not path.exists():
            # Opening it would leave an empty file behind: it is not migrated (or a typo).
            raise ReadModelsNotMigrated(masked(url), None, SCHEMA_HEAD, store=masked(store))
        current = await schema_revision(url)
    except StoreUnavailable as exc:
        raise ReadModelsUnavailable(masked(url), _why(exc)) from exc
    if current != SCHEMA_HEAD:
        raise ReadModelsNotMigrated(masked(url), current, SCHEMA_HEAD, store=masked(store))


def _why(exc: StoreUnavailable) -> str:
    if isinstance(exc, DatabaseMissing):
        return f"its database {exc.database!r} does not exist: create it with `{exc.createdb}`"
    if isinstance(exc, InvalidDatabaseURL):
        return exc.problem
    return exc.reason


__all__ = ["App", "AppNotFound", "Connecting", "Running", "check_read_models", "load_app"]


STATE_WATCH_INTERVAL = 0.2
"""How often ``Running.serve`` compares the runner's subscriber states to report changes."""


async def _start_runner(runner: Runner) -> None:
    """Start the runner; a metrics port it cannot serve is one clear error, not a bug."""
    try:
        await runner.start()
    except ImportError as exc:
        if runner.metrics_port is None:
            raise
        raise MetricsUnavailable(
            runner.metrics_port, f"{exc}; install the extra: pip install 'eventfold[metrics]'"
        ) from exc
    except OSError as exc:
        if runner.metrics_port is None:
            raise
        raise MetricsUnavailable(
            runner.metrics_port,
            f"{exc.strerror or exc}; choose another --metrics-port (0: any)",
        ) from exc
