"""Keys of data subjects: the ``KeyStore`` port and its in-memory adapter.

Each data subject (a customer, a user: whatever id an event's ``PersonalData`` field
names) has one AES-256 key; the store encrypts that subject's personal fields with it.
Forgetting the subject destroys the key. The SQL stores keep keys in their own database
(``eventfold_personal_keys``); a key management service could implement the same port.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class SubjectKey:
    """A data subject's key: its id (stored with every value it encrypts) and its secret,
    None once the subject is forgotten."""

    subject: str
    key_id: str
    secret: bytes | None


def new_secret() -> bytes:
    """A fresh random 256-bit AES key."""
    return os.urandom(32)


def new_key_id() -> str:
    """A fresh random key id (it says nothing about the subject)."""
    return str(uuid.uuid4())


class KeyStore(Protocol):
    """Where subjects' keys live."""

    async def create(self, subject: str) -> SubjectKey:
        """The subject's key, made now if it has none. When two callers make one at once,
        one key wins and both get it. A forgotten subject's key has no secret."""
        ...

    async def find(self, subject: str) -> SubjectKey | None:
        """The subject's key (secret None if forgotten), or None if it never had one."""
        ...

    async def secrets(self, key_ids: Collection[str]) -> dict[str, bytes]:
        """The secrets of those keys that still have one (destroyed ones are left out)."""
        ...

    async def destroy(self, subject: str) -> None:
        """Destroy the subject's secret for good and remember the subject as forgotten
        (also one that never had a key: it gets none later)."""
        ...

    async def page(self, *, after: str | None = None, limit: int = 1000) -> list[SubjectKey]:
        """Up to ``limit`` keys, forgotten ones too, ordered by subject, after the subject
        ``after`` (from the first when None): to list them all, e.g. for a copy."""
        ...

    async def import_keys(self, keys: Sequence[SubjectKey]) -> None:
        """Store keys of another store as they are (subject, key id, secret, forgotten or
        not), for copies. A subject new here gets the given key; one holding the same key
        keeps it and loses its secret if the given key is forgotten (forgetting is final,
        so a forgotten key here stays forgotten); one holding another key keeps its own."""
        ...


class MemoryKeyStore:
    """Keys in process memory, for the memory event store."""

    def __init__(self) -> None:
        self._keys: dict[str, SubjectKey] = {}

    async def create(self, subject: str) -> SubjectKey:
        key = self._keys.get(subject)
        if key is None:
            key = self._keys[subject] = SubjectKey(subject, new_key_id(), new_secret())
        return key

    async def find(self, subject: str) -> SubjectKey | None:
        return self._keys.get(subject)

    async def secrets(self, key_ids: Collection[str]) -> dict[str, bytes]:
        wanted = set(key_ids)
        return {
            key.key_id: key.secret
            for key in self._keys.values()
            if key.key_id in wanted and key.secret is not None
        }

    async def page(self, *, after: str | None = None, limit: int = 1000) -> list[SubjectKey]:
        subjects = sorted(s for s in self._keys if after is None or s > after)
        return [self._keys[subject] for subject in subjects[:limit]]

    async def import_keys(self, keys: Sequence[SubjectKey]) -> None:
        for key in keys:
            held = self._keys.get(key.subject)
            if held is None or (held.key_id == key.key_id and key.secret is None):
                self._keys[key.subject] = key

    async def destroy(self, subject: str) -> None:
        key = self._keys.get(subject)
        self._keys[subject] = SubjectKey(
            subject, new_key_id() if key is None else key.key_id, None
        )
