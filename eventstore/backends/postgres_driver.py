"""What the PostgreSQL adapter needs from asyncpg: DSNs, session settings, error translation.

Driver errors are translated here, once: a server that cannot be reached, or a connection
lost mid-call, becomes ``StoreUnavailable`` with the masked URL, never the password.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from eventfold.eventstore.errors import InvalidDatabaseURL, StoreUnavailable
from eventfold.eventstore.urls import masked, missing_database, parse_database_url, scheme_of

APPLICATION_NAME = "eventfold"
"""The application_name of every connection the store opens (pg_stat_activity shows it)."""

# Errors that mean "the server or the connection is gone", not "the statement was wrong".
# Class 08 (connection exception), shutdown and start-up states (57P01-57P03), a database
# or role that does not exist / may not log in, too many connections, and the socket itself.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.IdleInTransactionSessionTimeoutError,
    asyncpg.exceptions.InvalidCatalogNameError,
    asyncpg.exceptions.InvalidAuthorizationSpecificationError,
    asyncpg.exceptions.TooManyConnectionsError,
    # asyncpg in a broken protocol state, e.g. after the server ended an idle session.
    asyncpg.exceptions.InternalClientError,
)


def asyncpg_dsn(url: str) -> str:
    """The DSN asyncpg accepts for a store URL (drops SQLAlchemy's ``+asyncpg`` driver).

    Rendered again from the parsed URL, so a password with unencoded ``#``, ``/`` or ``?``
    reaches asyncpg percent-encoded instead of splitting the URL (and leaking into an
    error about a port)."""
    if scheme_of(url) not in {"postgresql", "postgres"}:
        raise InvalidDatabaseURL(masked(url), "not a postgresql:// URL")
    parsed = parse_database_url(url).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


def session_settings(idle_in_transaction_timeout: float) -> dict[str, str]:
    """Server settings for the store's connections.

    ``idle_in_transaction_session_timeout`` ends a session that sits in an open transaction:
    such a transaction holds back the horizon below which every reader of the global log
    reads, so a forgotten one would stall all projections (docs/operations.md).

    No planner setting: the pool is shared with whoever the store lends it to, and the
    store's statements move to the indexes by the ANALYZE it runs (``postgres._analyze``).
    """
    milliseconds = max(0, round(idle_in_transaction_timeout * 1000))
    return {
        "application_name": APPLICATION_NAME,
        "idle_in_transaction_session_timeout": str(milliseconds),
    }


def is_unavailable(exc: BaseException) -> bool:
    """Whether a driver error means the server or the connection is gone."""
    if isinstance(exc, _UNAVAILABLE):
        return True
    # asyncpg says "connection is closed" / "pool is closed" with a bare InterfaceError.
    return isinstance(exc, asyncpg.InterfaceError) and "closed" in str(exc)


def unavailable(url: str, exc: BaseException) -> StoreUnavailable:
    """The ``StoreUnavailable`` for a driver error (``url`` may hold its password: it is
    masked here), with a ``createdb`` hint when the database does not exist."""
    missing = missing_database(url, exc)
    if missing is not None:
        return missing
    text = str(exc).splitlines()[0] if str(exc) else ""
    reason = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return StoreUnavailable(masked(url), reason)


async def connect(url: str, **kwargs: Any) -> asyncpg.Connection:
    """One connection outside the pool (listener, notifier, maintenance), errors translated."""
    try:
        return await asyncpg.connect(asyncpg_dsn(url), **kwargs)
    except Exception as exc:
        if is_unavailable(exc):
            raise unavailable(url, exc) from exc
        raise


HOLD_SECONDS = 0.05
"""How long the store keeps a pooled connection for itself before handing it back to the
pool (and to whoever waits there), however busy the store is."""


class ConnectionCache:
    """Lends a pool's connections to the store's own statements, cheaply when busy.

    ``pool.acquire()`` and its release cost about as much client CPU as a short statement
    (a proxy object, a future, an inactivity timer, a shielded task per release). A writer
    that appends in a loop gives its connection back and takes one again at once, so a
    connection given back here stays with the store until the end of the event loop's
    current iteration, and the next statement takes it without touching the pool.

    Fairness: idle connections go back to the pool when the loop moves on; a connection
    goes back at once when one of the store's own statements waits for the pool, and after
    ``HOLD_SECONDS`` in any case, so other users of the pool (read models, tests) wait no
    longer than that even while writers keep every connection busy.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._idle: list[asyncpg.Connection] = []
        self._hold_until: dict[asyncpg.Connection, float] = {}
        self._waiting = 0
        self._trim_scheduled = False
        self._releasing: set[asyncio.Task[None]] = set()

    async def take(self) -> asyncpg.Connection:
        """A connection for one statement (or one transaction): give it back after."""
        while self._idle:
            conn = self._idle.pop()
            if not conn.is_closed():
                return conn
            self._release_soon(conn)  # the pool replaces a lost connection
        self._waiting += 1
        try:
            acquired: asyncpg.Connection = await self._pool.acquire()
        finally:
            self._waiting -= 1
        self._hold_until[acquired] = asyncio.get_running_loop().time() + HOLD_SECONDS
        return acquired

    def give(self, conn: asyncpg.Connection) -> None:
        """Take back a connection whose statement ended normally (it is idle, in no
        transaction)."""
        loop = asyncio.get_running_loop()
        if self._waiting or loop.time() >= self._hold_until.get(conn, 0.0):
            self._release_soon(conn)
            return
        self._idle.append(conn)
        if not self._trim_scheduled:
            self._trim_scheduled = True
            loop.call_soon(self._trim)

    async def discard(self, conn: asyncpg.Connection) -> None:
        """Hand a connection whose statement failed or was cancelled back to the pool,
        which waits out a cancellation and replaces a broken connection."""
        self._hold_until.pop(conn, None)
        await self._pool.release(conn)

    def _release_soon(self, conn: asyncpg.Connection) -> None:
        self._hold_until.pop(conn, None)
        task = asyncio.get_running_loop().create_task(self._pool.release(conn))
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    def _trim(self) -> None:
        self._trim_scheduled = False
        idle, self._idle = self._idle, []
        for conn in idle:
            self._release_soon(conn)

    async def close(self) -> None:
        """Give every connection the store holds back to the pool (before it closes)."""
        self._trim()
        if self._releasing:
            await asyncio.gather(*self._releasing, return_exceptions=True)
