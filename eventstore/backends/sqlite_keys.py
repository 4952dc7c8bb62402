"""Subjects' keys in SQLite's ``eventfold_personal_keys`` (the ``KeyStore`` port)."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from typing import Any, TypeVar

from eventfold.eventstore.keys import SubjectKey, new_key_id, new_secret

_T = TypeVar("_T")
Fetch = Callable[[str, Iterable[Any]], Awaitable[list[Any]]]
Write = Callable[[Callable[[sqlite3.Connection], _T]], Awaitable[_T]]

_FIND = "SELECT key_id, secret FROM eventfold_personal_keys WHERE subject = ?"


class SqliteKeyStore:
    """Keys beside the events: reads on the store's readers, writes on its writer (each a
    short transaction of its own; SQLite's write lock orders makers of the same key)."""

    def __init__(self, fetch: Fetch, write: Write[Any]) -> None:
        self._fetch = fetch
        self._write = write

    async def create(self, subject: str) -> SubjectKey:
        key_id, secret = new_key_id(), new_secret()

        def create(db: sqlite3.Connection) -> tuple[str, bytes | None]:
            with _transaction(db):
                db.execute(
                    "INSERT INTO eventfold_personal_keys (subject, key_id, secret) "
                    "VALUES (?, ?, ?) ON CONFLICT (subject) DO NOTHING",
                    (subject, key_id, secret),
                )
                row = db.execute(_FIND, (subject,)).fetchone()
            return row[0], row[1]

        made: tuple[str, bytes | None] = await self._write(create)
        return SubjectKey(subject, *made)

    async def find(self, subject: str) -> SubjectKey | None:
        rows = await self._fetch(_FIND, (subject,))
        return SubjectKey(subject, rows[0][0], rows[0][1]) if rows else None

    async def secrets(self, key_ids: Collection[str]) -> dict[str, bytes]:
        ids = list(key_ids)
        rows = await self._fetch(
            "SELECT key_id, secret FROM eventfold_personal_keys WHERE secret IS NOT NULL "
            f"AND key_id IN ({', '.join('?' * len(ids))})",
            ids,
        )
        return {row[0]: bytes(row[1]) for row in rows}

    async def destroy(self, subject: str) -> None:
        key_id = new_key_id()

        def destroy(db: sqlite3.Connection) -> None:
            with _transaction(db):
                db.execute(
                    "INSERT INTO eventfold_personal_keys (subject, key_id, secret, "
                    "forgotten_at) VALUES (?, ?, NULL, CURRENT_TIMESTAMP) "
                    "ON CONFLICT (subject) DO UPDATE SET secret = NULL, "
                    "forgotten_at = coalesce(forgotten_at, CURRENT_TIMESTAMP)",
                    (subject, key_id),
                )

        await self._write(destroy)

    async def page(self, *, after: str | None = None, limit: int = 1000) -> list[SubjectKey]:
        # Two statements, so that each walks the primary key from where it starts.
        select = "SELECT subject, key_id, secret FROM eventfold_personal_keys"
        rows = await (
            self._fetch(f"{select} ORDER BY subject LIMIT ?", (limit,)) if after is None
            else self._fetch(f"{select} WHERE subject > ? ORDER BY subject LIMIT ?", (after, limit))
        )
        return [
            SubjectKey(row[0], row[1], None if row[2] is None else bytes(row[2])) for row in rows
        ]

    async def import_keys(self, keys: Sequence[SubjectKey]) -> None:
        rows = [(key.subject, key.key_id, key.secret) for key in keys]

        def store(db: sqlite3.Connection) -> None:
            # As PostgreSQL's: a subject holding another key keeps it; one holding the same
            # key loses its secret when the given key is forgotten, never gains one.
            with _transaction(db):
                db.executemany(
                    "INSERT INTO eventfold_personal_keys (subject, key_id, secret, "
                    "forgotten_at) VALUES (?1, ?2, ?3, CASE WHEN ?3 IS NULL THEN "
                    "CURRENT_TIMESTAMP END) ON CONFLICT (subject) DO UPDATE SET secret = NULL, "
                    "forgotten_at = coalesce(forgotten_at, CURRENT_TIMESTAMP) "
                    "WHERE key_id = excluded.key_id AND excluded.secret IS NULL",
                    rows,
                )

        if rows:
            await self._write(store)

    async def sealed_streams(self, key_id: str) -> dict[str, int]:
        """Events sealed with the key, per stream (a scan of the log's JSON text for the
        key's random id: forgetting is rare and must find every event)."""
        rows = await self._fetch(
            "SELECT stream_id, count(*) FROM eventfold_events WHERE data LIKE ? "
            "GROUP BY stream_id ORDER BY stream_id",
            (f"%{key_id}%",),
        )
        return {row[0]: row[1] for row in rows}


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT on a connection in autocommit mode (ROLLBACK on error)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self._db.execute("ROLLBACK" if exc_type is not None else "COMMIT")
