"""Subjects' keys in PostgreSQL's ``eventfold_personal_keys`` (the ``KeyStore`` port)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any

from eventfold.eventstore.keys import SubjectKey, new_key_id, new_secret

Fetch = Callable[..., Awaitable[list[Any]]]

# Two statements, not one: when two appends make a new subject's key at once, the loser's
# INSERT waits for the winner, then does nothing; only a new statement's snapshot sees the
# winner's row (a CTE's SELECT would still see none). Each runs on its own, committed.
_CREATE = """
INSERT INTO eventfold_personal_keys (subject, key_id, secret) VALUES ($1, $2, $3)
ON CONFLICT (subject) DO NOTHING RETURNING key_id, secret
"""
_FIND = "SELECT key_id, secret FROM eventfold_personal_keys WHERE subject = $1"
_SECRETS = """
SELECT key_id, secret FROM eventfold_personal_keys
WHERE key_id = ANY($1::text[]) AND secret IS NOT NULL
"""
_DESTROY = """
INSERT INTO eventfold_personal_keys (subject, key_id, secret, forgotten_at)
VALUES ($1, $2, NULL, now())
ON CONFLICT (subject) DO UPDATE
SET secret = NULL, forgotten_at = coalesce(eventfold_personal_keys.forgotten_at, now())
"""
# Two statements, so that each walks the primary key from where it starts.
_FIRST_PAGE = """
SELECT subject, key_id, secret FROM eventfold_personal_keys ORDER BY subject LIMIT $1
"""
_PAGE = """
SELECT subject, key_id, secret FROM eventfold_personal_keys
WHERE subject > $1 ORDER BY subject LIMIT $2
"""
# A subject holding another key keeps it (the copy's verification names the difference);
# one holding the same key loses its secret when the given key is forgotten, never gains one.
_IMPORT = """
INSERT INTO eventfold_personal_keys (subject, key_id, secret, forgotten_at)
SELECT subject, key_id, secret, CASE WHEN secret IS NULL THEN now() END
FROM unnest($1::text[], $2::text[], $3::bytea[]) AS given (subject, key_id, secret)
ON CONFLICT (subject) DO UPDATE
SET secret = NULL, forgotten_at = coalesce(eventfold_personal_keys.forgotten_at, now())
WHERE eventfold_personal_keys.key_id = excluded.key_id AND excluded.secret IS NULL
"""
# Forgetting is rare and must find every event: a scan of the log's JSON text for the
# key's id (a random UUID, so it matches nothing else).
SEALED_STREAMS = """
SELECT stream_id, count(*) FROM eventfold_events WHERE data::text LIKE $1
GROUP BY stream_id ORDER BY stream_id
"""


class PostgresKeyStore:
    """Keys beside the events, through the store's own connections (``fetch`` runs one
    statement, outside any transaction)."""

    def __init__(self, fetch: Fetch) -> None:
        self._fetch = fetch

    async def create(self, subject: str) -> SubjectKey:
        rows = await self._fetch(_CREATE, subject, new_key_id(), new_secret())
        if not rows:
            rows = await self._fetch(_FIND, subject)
        return SubjectKey(subject, rows[0][0], rows[0][1])

    async def find(self, subject: str) -> SubjectKey | None:
        rows = await self._fetch(_FIND, subject)
        return SubjectKey(subject, rows[0][0], rows[0][1]) if rows else None

    async def secrets(self, key_ids: Collection[str]) -> dict[str, bytes]:
        rows = await self._fetch(_SECRETS, list(key_ids))
        return {row[0]: bytes(row[1]) for row in rows}

    async def destroy(self, subject: str) -> None:
        await self._fetch(_DESTROY, subject, new_key_id())

    async def page(self, *, after: str | None = None, limit: int = 1000) -> list[SubjectKey]:
        rows = await (
            self._fetch(_FIRST_PAGE, limit) if after is None else self._fetch(_PAGE, after, limit)
        )
        return [
            SubjectKey(row[0], row[1], None if row[2] is None else bytes(row[2])) for row in rows
        ]

    async def import_keys(self, keys: Sequence[SubjectKey]) -> None:
        if keys:
            await self._fetch(
                _IMPORT, [key.subject for key in keys], [key.key_id for key in keys],
                [key.secret for key in keys],
            )

    async def sealed_streams(self, key_id: str) -> dict[str, int]:
        """Events sealed with the key, per stream."""
        return {row[0]: row[1] for row in await self._fetch(SEALED_STREAMS, f"%{key_id}%")}
