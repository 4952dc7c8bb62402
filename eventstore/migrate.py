"""Bringing a database's eventfold schema to the revision this code expects.

The Alembic scripts ship inside the package (``eventstore/migrations``) and record their
revision in their own table, ``eventfold_alembic_version``, so a user's Alembic history in the
same database never collides with ours. Works on PostgreSQL (asyncpg) and SQLite (aiosqlite).
"""

from __future__ import annotations

import asyncio
import importlib.resources
import weakref
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from eventfold.eventstore.engine import sqlalchemy_url
from eventfold.eventstore.errors import StoreUnavailable
from eventfold.eventstore.urls import masked, missing_database

if TYPE_CHECKING:
    from alembic.config import Config

# Alembic (and the Mako and Pygments it pulls in) is imported only by the functions that
# migrate: it is a tenth of a second that `import eventfold` and every store open would pay.

SCHEMA_HEAD = "0009"
"""The revision this code expects (the head of eventstore/migrations; a test keeps it so)."""

VERSION_TABLE = "eventfold_alembic_version"
"""The table where the applied revision is recorded."""


def exclude_eventfold(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object | None
) -> bool:
    """An ``include_object`` hook for an application's own Alembic ``env.py``: leaves
    eventfold's tables (``eventfold_*``) and their columns, indexes and constraints out of the
    application's ``alembic revision --autogenerate`` and ``alembic check``.

    eventfold migrates its tables itself (``eventfold migrate``); without this hook the
    application's autogenerate proposes to drop them. Pass it as
    ``context.configure(..., include_object=exclude_eventfold)``.
    """
    table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
    return not (table or "").startswith("eventfold_")


def alembic_config() -> Config:
    """An Alembic configuration pointing at the migrations inside the package."""
    from alembic.config import Config

    config = Config()
    location = importlib.resources.files("eventfold.eventstore") / "migrations"
    config.set_main_option("script_location", str(location))
    return config


def script_head() -> str:
    """The head revision of the shipped scripts (what ``SCHEMA_HEAD`` must equal)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships revisions
        raise RuntimeError("eventstore/migrations holds no revision")
    return head


async def migrate(url: str, revision: str = "head") -> None:
    """Upgrade the database at ``url`` to ``revision`` (default: the newest).

    Safe to run from several processes at once on PostgreSQL (they take turns on an
    advisory lock) and a no-op when the schema is already there.
    """
    from alembic import command

    await _run(url, lambda sync_conn, config: command.upgrade(config, revision))


async def downgrade(url: str, revision: str) -> None:
    """Downgrade the database at ``url`` to ``revision`` (``"base"`` drops every table)."""
    from alembic import command

    await _run(url, lambda sync_conn, config: command.downgrade(config, revision))


async def schema_revision(url: str) -> str | None:
    """The revision the database at ``url`` is at, or None when it has no eventfold schema."""
    engine = _engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_read_revision)
    except (OSError, DBAPIError) as exc:
        raise _unavailable(url, exc) from exc
    finally:
        await engine.dispose()


def _read_revision(sync_conn: sa.Connection) -> str | None:
    if not sa.inspect(sync_conn).has_table(VERSION_TABLE):
        return None
    row = sync_conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).first()
    return None if row is None else str(row[0])


# Alembic keeps its running context in module globals: two migrations of one process must
# not interleave (other processes are kept apart by an advisory lock in env.py).
_process_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


async def _run(url: str, action: Any) -> None:
    loop = asyncio.get_running_loop()
    lock = _process_locks.setdefault(loop, asyncio.Lock())
    async with lock:
        await _run_alone(url, action)


async def _run_alone(url: str, action: Any) -> None:
    engine = _engine(url)
    try:
        try:
            conn = await engine.connect()
        except (OSError, DBAPIError) as exc:
            raise _unavailable(url, exc) from exc
        try:
            await _run_on(conn, action)
        except (OSError, DBAPIError) as exc:
            # A failing migration statement is a bug to show as it is; a lost connection
            # is the server's state, said the one way the store says it.
            if isinstance(exc, DBAPIError) and not exc.connection_invalidated:
                raise
            raise _unavailable(url, exc) from exc
        finally:
            await conn.close()
    finally:
        await engine.dispose()


async def _run_on(conn: AsyncConnection, action: Any) -> None:
    def run(sync_conn: sa.Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = sync_conn
        action(sync_conn, config)

    await conn.run_sync(run)
    await conn.commit()


def _engine(url: str) -> AsyncEngine:
    # NullPool: a migration is a one-off, and no connection may outlive it.
    return create_async_engine(sqlalchemy_url(url), poolclass=sa.NullPool)


def _unavailable(url: str, exc: BaseException) -> StoreUnavailable:
    missing = missing_database(url, exc)
    if missing is not None:
        return missing
    inner = getattr(exc, "orig", None) or exc
    return StoreUnavailable(masked(url), f"{type(inner).__name__}: {inner}".splitlines()[0])
