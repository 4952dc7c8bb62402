"""The runner: holds subscribers, catches each up from its checkpoint, then follows live.

Each subscriber gets a task that takes its lease (one holder per subscriber across all
runner processes), renews it in the background, and loops: read a batch after the
checkpoint, process it (``Subscription.step``), and when caught up wait for new events
(LISTEN/NOTIFY on PostgreSQL, polling elsewhere). A subscriber whose lease is held by
another runner is retried every ``lease_retry`` seconds, so a dead holder is replaced
within its lease's TTL plus that interval.

A partitioned subscriber (``partitions = N``, see ``eventfold.projections.partitions``) gets
one such task per partition, each with its own lease and checkpoint; a ``Share`` decides
how many of them this runner holds (its fair share of the live runners) and which it
releases when it holds more.

Every wait here - for new events, for a lease, after an error - happens with no database
transaction open (see ``eventfold.projections.subscription``): a transaction that waits
holds SQLite's write lock or PostgreSQL's snapshot horizon from everyone else.

Outages are quiet and visible. An error in a subscriber's step (the database is down, a
broker is: ``SubscriberUnavailable``) keeps the lease and backs off exponentially with
jitter up to ``max_error_backoff``; it is logged once when it starts ("orders: waiting for
the database (...)") and once when it ends ("orders: running again after 12.3 s"), with a
traceback only under debug logging (or, once, for an error that is no outage). The state
(running, retrying, halted) is written on the lease row, so ``status`` from any process
shows it with the holder.

Stopping is graceful: ``stop()`` lets the batch in progress commit, then releases the
leases; ``stop(timeout=...)`` abandons (rolls back) batches still running after the
timeout. A batch is never half committed either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Literal, Self

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from eventfold.eventstore.backoff import Backoff
from eventfold.eventstore.errors import StoreUnavailable
from eventfold.eventstore.protocol import EventStore
from eventfold.eventstore.records import GlobalPosition
from eventfold.projections.database import Database
from eventfold.projections.errors import (
    CheckpointMoved,
    ProjectionHalted,
    SubscriberUnavailable,
)
from eventfold.projections.leases import Lease, default_holder
from eventfold.projections.partitions import Share, check_count, partition_name, partitions_of
from eventfold.projections.projection import Projection
from eventfold.projections.subscriber import Subscriber
from eventfold.projections.subscription import Subscription, describe

if TYPE_CHECKING:
    # One way only: observability names what it reads of a runner (``Metered``) instead
    # of importing this module.
    from eventfold.projections.observability import RunnerMetrics

logger = logging.getLogger("eventfold.projections")

RunState = Literal["starting", "running", "retrying", "waiting", "halted", "stopped"]
"""What a subscriber does in this runner: ``retrying`` means backing off after an error
(an outage) with its lease kept; ``waiting`` means another runner holds it."""


@dataclass(frozen=True, slots=True)
class SubscriberState:
    """A subscriber as this runner sees it (``status`` reports what the database says)."""

    name: str
    state: RunState
    checkpoint: GlobalPosition
    done_through: GlobalPosition
    holding: bool
    last_error: str | None


class _Stopping(Exception):
    """The runner stops while a subscription waits to retry an event: give up the wait
    (nothing is open; the event is tried again by the next holder)."""


class _Worker:
    def __init__(
        self, subscription: Subscription, lease: Lease, share: Share | None = None
    ) -> None:
        self.subscription = subscription
        self.lease = lease
        self.share = share
        """The fair share this worker's partition is part of (None: unpartitioned)."""
        self.state: RunState = "starting"
        self.last_error: str | None = None
        self.trouble_since: float | None = None
        """When the current run of errors began (monotonic); None while all is well."""
        self.errors = 0
        """Errors in a row: the exponent of the error backoff."""
        self.reported: tuple[str, str | None] | None = None
        """The state last written on the lease row."""
        # Counts the times the halt was seen (when it happened, and at each reload that
        # finds it still there): wait_until raises on a halt confirmed after it began.
        self.halt_seen = 0
        self.task: asyncio.Task[None] | None = None


class Runner:
    """Runs subscribers (projections, process managers, relays) against one event store.

    ``engine`` is an async SQLAlchemy engine (see ``eventfold.eventstore.engine.create_engine``)
    on the database where checkpoints, leases, parked events and read models live: the
    store's, or one of their own (``App(read_models=URL)``); on the memory store use
    ``create_engine("memory://")``.

    Use ``async with Runner(...) as runner`` (or ``start`` / ``stop``), or ``await run()``
    to serve until ``stop`` is called.
    """

    def __init__(
        self,
        store: EventStore,
        subscribers: Iterable[Subscriber],
        *,
        engine: AsyncEngine,
        holder: str | None = None,
        batch_size: int = 500,
        lease_ttl: float = 5.0,
        lease_retry: float = 1.0,
        idle_wait: float = 1.0,
        error_backoff: float = 1.0,
        max_error_backoff: float = 30.0,
        metrics_port: int | None = None,
    ) -> None:
        self.store = store
        self.engine = engine
        self.db = Database(engine)
        self.holder = holder or default_holder()
        self.lease_ttl = lease_ttl
        self.lease_retry = lease_retry
        self.idle_wait = idle_wait
        self.backoff = Backoff(
            initial=error_backoff, cap=max(error_backoff, max_error_backoff), jitter=True
        )
        """How long to wait after the n-th error in a row (an outage)."""
        self.metrics_port = metrics_port
        """Serve Prometheus metrics on this port (needs ``eventfold[metrics]``; 0: any)."""
        self.metrics: RunnerMetrics | None = None
        self.subscribers = list(subscribers)
        self._workers: dict[str, _Worker] = {}
        """By the name checkpoints and leases are stored under ("<name>/<i>": partitions)."""
        self._units: dict[str, list[str]] = {}
        self._shares: list[Share] = []
        self._share_tasks: list[asyncio.Task[None]] = []
        for subscriber in self.subscribers:
            if subscriber.name in self._units:
                raise ValueError(f"subscriber {subscriber.name!r} is given twice")
            parts = partitions_of(subscriber)
            if not parts:
                subscription = Subscription(
                    store, self.db, subscriber, batch_size=batch_size, sleep=self._retry_sleep
                )
                lease = Lease(self.db, subscriber.name, self.holder, lease_ttl)
                self._workers[subscriber.name] = _Worker(subscription, lease)
                self._units[subscriber.name] = [subscriber.name]
                continue
            share = Share(self.db, subscriber.name, len(parts), self.holder, lease_ttl)
            self._shares.append(share)
            self._units[subscriber.name] = []
            for part in parts:
                unit = partition_name(subscriber.name, part.index)
                subscription = Subscription(
                    store, self.db, subscriber, name=unit, batch_size=batch_size,
                    sleep=self._retry_sleep, partition=part,
                )
                lease = Lease(
                    self.db, unit, self.holder, lease_ttl, partition=(part.index, part.count)
                )
                share.leases.append(lease)
                self._workers[unit] = _Worker(subscription, lease, share)
                self._units[subscriber.name].append(unit)
        self._stopping = asyncio.Event()
        self._progress = asyncio.Condition()
        self._started = False

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start serving every subscriber in the background.

        Raises ``PartitionsChanged`` if a subscriber declares another partition count than
        its checkpoints were stored with (rebuild it to change the count).
        """
        if self._started:
            return
        await self._check_partition_counts()
        self._started = True
        self._stopping.clear()
        if self.metrics_port is not None and self.metrics is None:
            # Imported only when asked for: prometheus-client is an optional extra.
            from eventfold.projections.observability import RunnerMetrics

            self.metrics = RunnerMetrics(self, port=self.metrics_port)
            await self.metrics.start()
        for share in self._shares:
            self._share_tasks.append(asyncio.create_task(
                self._keep_share(share), name=f"eventfold-runner-share:{share.name}"
            ))
        for worker in self._workers.values():
            worker.task = asyncio.create_task(
                self._serve(worker), name=f"eventfold-runner:{worker.subscription.name}"
            )

    async def _check_partition_counts(self) -> None:
        try:
            async with self.db.reading() as conn:
                for subscriber in self.subscribers:
                    declared = len(partitions_of(subscriber)) or 1
                    await check_count(
                        conn, subscriber.name, declared,
                        rebuild=isinstance(subscriber, Projection),
                    )
        except (StoreUnavailable, sa.exc.DBAPIError, OSError) as exc:
            # An outage: the subscribers report it as they start; checked again by the
            # next start.
            logger.warning("could not check partition counts: %s", describe(exc))

    async def stop(self, timeout: float | None = None) -> None:
        """Stop: batches in progress commit (or, after ``timeout`` seconds, roll back),
        then leases are released so other runners take over at once."""
        self._stopping.set()
        tasks = [w.task for w in self._workers.values() if w.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in self._share_tasks:
            task.cancel()
        await asyncio.gather(*self._share_tasks, return_exceptions=True)
        self._share_tasks = []
        for share in self._shares:
            with contextlib.suppress(Exception):
                await share.leave()
        for worker in self._workers.values():
            worker.task = None
            worker.state = "stopped"
        self._started = False
        if self.metrics is not None:
            await self.metrics.stop()
            self.metrics = None
        await self._notify()

    async def run(self) -> None:
        """Serve until ``stop`` is called (from a signal handler, another task...)."""
        await self.start()
        await self._stopping.wait()
        await self.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- observing -----------------------------------------------------------------------

    def states(self) -> list[SubscriberState]:
        """What each subscriber is doing in this runner."""
        return [
            SubscriberState(
                name, worker.state, worker.subscription.checkpoint,
                worker.subscription.done_through, worker.lease.held, worker.last_error,
            )
            for name, worker in self._workers.items()
        ]

    async def wait_until(
        self,
        position: GlobalPosition,
        timeout: float = 10.0,
        names: Iterable[str] | None = None,
    ) -> None:
        """Wait until the subscribers (all, or those named) have processed the log up to
        ``position`` (an append's ``global_position``).

        Raises ``ProjectionHalted`` if one halts, and ``TimeoutError`` naming the ones that
        lag (and why: held elsewhere, failing) when the timeout passes.
        """
        wanted = list(self._units) if names is None else list(names)
        unknown = [name for name in wanted if name not in self._units]
        if unknown:
            raise ValueError(f"this runner does not run {', '.join(unknown)}")
        workers = [self._workers[unit] for name in wanted for unit in self._units[name]]
        seen_at_start = {id(worker): worker.halt_seen for worker in workers}

        def done() -> bool:
            for worker in workers:
                if (
                    worker.subscription.halted_reason is not None
                    and worker.halt_seen > seen_at_start[id(worker)]
                ):
                    raise ProjectionHalted(
                        worker.subscription.name, worker.subscription.halted_reason
                    )
            return all(
                w.subscription.ready and w.subscription.done_through >= position
                for w in workers
            )

        try:
            async with asyncio.timeout(timeout), self._progress:
                await self._progress.wait_for(done)
        except TimeoutError:
            lagging = [
                f"{w.subscription.name} (at {tuple(w.subscription.done_through)}, "
                f"{w.state}{', held by another runner' if not w.lease.held else ''}"
                f"{', last error: ' + w.last_error if w.last_error else ''})"
                for w in workers
                if not w.subscription.ready or w.subscription.done_through < position
            ]
            raise TimeoutError(
                f"not at {tuple(position)} within {timeout}s: {'; '.join(lagging)}"
            ) from None

    async def _notify(self) -> None:
        async with self._progress:
            self._progress.notify_all()

    # -- serving one subscriber ----------------------------------------------------------

    async def _serve(self, worker: _Worker) -> None:
        while not self._stopping.is_set():
            try:
                if worker.share is None:
                    acquired = await worker.lease.acquire()
                else:
                    acquired = await worker.share.may_take(worker.lease.partition[0])
            except Exception as exc:
                await self._trouble(worker, exc)
                continue
            if not acquired:
                await self._recovered(worker)
                worker.state = "waiting"
                await self._pause(self.lease_retry)
                continue
            heartbeat = asyncio.create_task(self._heartbeat(worker))
            try:
                await self._follow(worker)
            finally:
                heartbeat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await heartbeat
                with contextlib.suppress(Exception):
                    await asyncio.shield(worker.lease.release())
                worker.reported = None
        worker.state = "stopped"

    async def _follow(self, worker: _Worker) -> None:
        """Serve the subscriber while the lease is ours; errors back off, keeping it."""
        subscription = worker.subscription
        subscription.ready = False
        while not self._stopping.is_set() and worker.lease.held:
            try:
                if not subscription.ready:
                    if worker.share is None:
                        await subscription.setup()
                    else:
                        # One partition at a time: concurrent CREATE TABLE IF NOT EXISTS
                        # of the same tables collide on PostgreSQL.
                        async with worker.share.preparing:
                            await subscription.setup()
                if subscription.halted_reason is not None:
                    await self._set_state(worker, "halted")
                    worker.halt_seen += 1
                    await self._notify()
                    await self._pause(self.idle_wait)
                    await subscription.reload()
                    continue
                await subscription.step()
            except CheckpointMoved as exc:
                logger.info("%s", exc)
                await subscription.reload()
                continue
            except ProjectionHalted as exc:
                logger.error("%s", exc)
                continue
            except _Stopping:
                return
            except Exception as exc:
                await self._trouble(worker, exc)
                continue
            await self._recovered(worker)
            await self._set_state(worker, "running")
            await self._notify()
            if worker.share is not None and worker.share.must_release(worker.lease.partition[0]):
                logger.info(
                    "%s: released to another runner (fair share: %d of %d)",
                    worker.lease.name, worker.share.target, worker.share.count,
                )
                return
            if not subscription.more:
                await self._wait_for_events(worker)

    async def _trouble(self, worker: _Worker, exc: Exception) -> None:
        """An error: log it if it starts a run of errors, then back off (no transaction
        is open here)."""
        worker.errors += 1
        worker.last_error = describe(exc)
        debug = logger.isEnabledFor(logging.DEBUG)
        if worker.trouble_since is None:
            worker.trouble_since = time.monotonic()
            what = _waiting_for(exc)
            if what is not None:
                logger.warning(
                    "%s: waiting for %s (%s)", worker.lease.name, what, worker.last_error,
                    exc_info=exc if debug else None,
                )
            else:
                logger.error(
                    "%s: stopped by an error; retrying with backoff", worker.lease.name,
                    exc_info=exc,
                )
        elif debug:
            logger.debug("%s: still failing", worker.lease.name, exc_info=exc)
        await self._set_state(worker, "retrying")
        await self._notify()
        await self._pause(self.backoff.delay(worker.errors))

    async def _recovered(self, worker: _Worker) -> None:
        if worker.trouble_since is not None:
            logger.warning(
                "%s: running again after %.1f s", worker.lease.name,
                time.monotonic() - worker.trouble_since,
            )
        worker.trouble_since = None
        worker.errors = 0
        worker.last_error = None

    async def _set_state(self, worker: _Worker, state: RunState) -> None:
        """Change the worker's state and write it on the lease row (best effort: the
        heartbeat writes it again if the database was away)."""
        worker.state = state
        await self._report(worker)

    async def _report(self, worker: _Worker) -> None:
        now = (worker.state, worker.last_error)
        if worker.reported == now or not worker.lease.held:
            return
        try:
            if await worker.lease.report(*now):
                worker.reported = now
        except Exception:
            logger.debug("%s: could not record its state", worker.lease.name, exc_info=True)

    async def _retry_sleep(self, seconds: float) -> None:
        """How a subscription waits before retrying an event: no transaction is open, and
        a stopping runner does not wait the backoff out."""
        await self._pause(seconds)
        if self._stopping.is_set():
            raise _Stopping

    async def _wait_for_events(self, worker: _Worker) -> None:
        after = worker.subscription.done_through
        waiting = asyncio.create_task(self.store.wait_for_events(after, self.idle_wait))
        stopping = asyncio.create_task(self._stopping.wait())
        try:
            await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (waiting, stopping):
                task.cancel()
            await asyncio.gather(waiting, stopping, return_exceptions=True)

    async def _heartbeat(self, worker: _Worker) -> None:
        interval = self.lease_ttl / 3
        while True:
            await asyncio.sleep(interval)
            try:
                renewed = await worker.lease.renew()
            except Exception as exc:
                # Keep trying: the lease lasts ``lease_ttl``; if it lapses the checkpoint's
                # compare-and-set still stops a second holder's batch. Logged with the
                # step's errors when the database is away; alone it is worth a line.
                if worker.trouble_since is None:
                    logger.warning("%s: lease renewal failed: %s", worker.lease.name, exc)
                continue
            if not renewed:
                logger.warning("%s: lease lost to another runner", worker.lease.name)
                await self._notify()
                return
            await self._report(worker)

    async def _keep_share(self, share: Share) -> None:
        """Keep this runner's membership of a partitioned subscriber and its fair share
        up to date (errors are the workers' to report: they meet the same database)."""
        while True:
            try:
                await share.refresh()
            except Exception:
                logger.debug("%s: could not refresh its share", share.name, exc_info=True)
            await asyncio.sleep(self.lease_ttl / 3)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)


def _waiting_for(exc: Exception) -> str | None:
    """What an error says the subscriber waits for, or None for an error that is no outage."""
    if isinstance(exc, SubscriberUnavailable):
        return "a service it depends on"
    if isinstance(exc, StoreUnavailable | sa.exc.DBAPIError | OSError):
        return "the database"
    return None
