"""The ``Shredder``: seals personal fields at append, opens them on read, and forgets a
data subject by destroying its key (crypto-shredding; see docs/personal-data.md)."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag

from eventfold.eventstore.encoding import EncodedEvent
from eventfold.eventstore.errors import InvalidAppend, SubjectForgotten
from eventfold.eventstore.keys import KeyStore
from eventfold.eventstore.personal import SEALED, is_sealed, open_value, personal_fields, seal_value
from eventfold.eventstore.records import RecordedEvent
from eventfold.eventstore.registry import EventRegistry

KEY_CACHE_SECONDS = 60.0
"""How long a process keeps a subject's key after reading it: another process's forget
takes effect here within this bound (a forget in this process, at once)."""

_MAX_CACHED_KEYS = 100_000


@dataclass(frozen=True, slots=True)
class Forgetting:
    """What forgetting a subject destroys (or, on a dry run, would destroy)."""

    subject: str
    streams: dict[str, int] = field(default_factory=dict)
    """Events holding the subject's personal data, per stream."""
    already_forgotten: bool = False
    snapshotted_streams: int = 0
    """Of those streams, how many had snapshots, deleted with the key (by
    ``Running.forget``; the store alone has no snapshots)."""

    @property
    def events(self) -> int:
        """How many events hold the subject's personal data."""
        return sum(self.streams.values())


class _KeyCache:
    """Secrets by database and key id, for every store of this process. A key is known as
    destroyed only in the database that destroyed it or lacks it: a copy of a store holds
    the same key ids, and its keys live on when the original forgets (or never had) them.
    Destroyed keys stay known as such: forgetting is final."""

    def __init__(self) -> None:
        self._secrets: dict[tuple[str, str], tuple[bytes, float]] = {}
        self._destroyed: set[tuple[str, str]] = set()

    def get(self, database: str, key_id: str) -> bytes | None:
        entry = self._secrets.get((database, key_id))
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]

    def destroyed(self, database: str, key_id: str) -> bool:
        return (database, key_id) in self._destroyed

    def put(self, database: str, key_id: str, secret: bytes) -> None:
        if len(self._secrets) >= _MAX_CACHED_KEYS:
            del self._secrets[next(iter(self._secrets))]
        self._secrets[database, key_id] = (secret, time.monotonic() + KEY_CACHE_SECONDS)

    def destroy(self, database: str, key_id: str) -> None:
        self._secrets.pop((database, key_id), None)
        if len(self._destroyed) < _MAX_CACHED_KEYS:
            self._destroyed.add((database, key_id))


_CACHE = _KeyCache()


class Shredder:
    """One store's personal data: seals marked fields of new events, opens them on read
    (before upcasters, which see plain values), forgets subjects."""

    def __init__(
        self,
        registry: EventRegistry,
        keys: KeyStore,
        sealed_streams: Callable[[str], Awaitable[dict[str, int]]],
        *,
        database: str,
    ) -> None:
        """``database`` names where the keys live (the same for every store of one
        database, so a forget through one takes effect at once in the others)."""
        self.registry = registry
        self._database = database
        self.keys = keys
        self._sealed_streams = sealed_streams
        self._key_ids: dict[str, str] = {}
        self._types: tuple[int, frozenset[str]] = (-1, frozenset())

    async def seal(self, batch: list[EncodedEvent]) -> list[EncodedEvent]:
        """The batch with every personal value sealed by its subject's key (made now for a
        new subject); ``SubjectForgotten`` for a forgotten subject's value, unless it is the
        field's placeholder (stored as it is: it is nobody's data)."""
        sealed = batch
        for index, item in enumerate(batch):
            cls = self.registry.class_for(item.event_type)
            fields = personal_fields(cls) if cls is not None else ()
            if not fields:
                continue
            data = json.loads(item.data)
            for mark in fields:
                value = data.get(mark.name)
                if value is None:
                    continue
                subject = data.get(mark.subject)
                if subject is None:
                    raise InvalidAppend(
                        f"{item.event_type}.{mark.name} holds personal data but its subject "
                        f"{mark.subject!r} is empty: set the data subject's id; nothing was "
                        "written"
                    )
                subject = subject if isinstance(subject, str) else json.dumps(subject)
                key = await self._key(subject)
                if key is None:
                    if value == mark.forgotten:
                        continue  # the placeholder, e.g. copied from a forgotten state
                    raise SubjectForgotten(subject, item.event_type, mark.name)
                key_id, secret = key
                data[mark.name] = seal_value(
                    secret, key_id, item.event_id, mark.name, value, mark.forgotten
                )
            if sealed is batch:
                sealed = list(batch)
            sealed[index] = dataclasses.replace(
                item, data=json.dumps(data, separators=(",", ":"), ensure_ascii=False)
            )
        return sealed

    async def _key(self, subject: str) -> tuple[str, bytes] | None:
        """The subject's key id and secret (made now if new), None if it is forgotten."""
        key_id = self._key_ids.get(subject)
        if key_id is not None:
            secret = _CACHE.get(self._database, key_id)
            if secret is not None:
                return key_id, secret
        key = await self.keys.create(subject)
        if key.secret is None:
            _CACHE.destroy(self._database, key.key_id)
            return None
        if len(self._key_ids) >= _MAX_CACHED_KEYS:
            del self._key_ids[next(iter(self._key_ids))]
        self._key_ids[subject] = key.key_id
        _CACHE.put(self._database, key.key_id, key.secret)
        return key.key_id, key.secret

    async def reveal(self, records: Sequence[RecordedEvent]) -> Sequence[RecordedEvent]:
        """The records with personal values opened, or their placeholders where the key is
        destroyed. Records of types without personal data pass untouched."""
        types = self.personal_types()
        if not types:
            return records
        found = [
            index for index, record in enumerate(records)
            if record.event_type in types and record.corrupt is None
            and any(is_sealed(value) for value in record.data.values())
        ]
        if not found:
            return records
        wanted = {
            value[SEALED]["key"]
            for index in found for value in records[index].data.values() if is_sealed(value)
        }
        database = self._database
        secrets = {
            key_id: secret
            for key_id in wanted if (secret := _CACHE.get(database, key_id)) is not None
        }
        missing = {
            key_id for key_id in wanted - secrets.keys() if not _CACHE.destroyed(database, key_id)
        }
        if missing:
            fetched = await self.keys.secrets(missing)
            for key_id in missing:
                if key_id in fetched:
                    _CACHE.put(self._database, key_id, fetched[key_id])
                else:
                    _CACHE.destroy(self._database, key_id)
            secrets.update(fetched)
        opened = list(records)
        for index in found:
            opened[index] = _opened(records[index], secrets)
        return opened

    def personal_types(self) -> frozenset[str]:
        """Stored type names that may hold sealed values: types with personal fields and
        the names upcasters carry into them."""
        size, types = self._types
        if size != len(self.registry):
            personal = [cls.event_type for cls in self.registry if personal_fields(cls)]
            types = frozenset(self.registry.stored_types(personal)) if personal else frozenset()
            self._types = (len(self.registry), types)
        return types

    async def forget(self, subject: str, *, dry_run: bool) -> Forgetting:
        """Destroy the subject's key (unless ``dry_run``) and say what it held."""
        key = await self.keys.find(subject)
        streams = {} if key is None else await self._sealed_streams(key.key_id)
        if not dry_run:
            await self.keys.destroy(subject)
            self._key_ids.pop(subject, None)
            if key is not None:
                _CACHE.destroy(self._database, key.key_id)
        return Forgetting(
            subject, streams, already_forgotten=key is not None and key.secret is None
        )


def _opened(record: RecordedEvent, secrets: dict[str, bytes]) -> RecordedEvent:
    data = dict(record.data)
    for name, value in record.data.items():
        if not is_sealed(value):
            continue
        secret = secrets.get(value[SEALED]["key"])
        if secret is None:
            data[name] = value[SEALED]["forgotten"]
            continue
        try:
            data[name] = open_value(secret, record.event_id, name, value)
        except (InvalidTag, ValueError, KeyError) as exc:
            return dataclasses.replace(
                record, data={}, metadata={},
                corrupt=f"its personal field {name!r} does not open with its key ({exc!r})",
            )
    return dataclasses.replace(record, data=data)
