"""``Idempotency-Key``: a client's retry gets the first answer, never a second effect.

The key becomes the id of the events the command records: a UUID key is used as it is,
any other string as ``uuid5(KEY_NAMESPACE, key)``; a batch's further events get ids
derived from it (``eventfold.eventstore.keyed_event_ids``). The store refuses to hold an
id twice, so even two copies of a request racing each other store their events once.

Recognising a retry takes two ways, because a command run again does not always record
the same events again:

- it does (placing an order, receiving stock): the repository finds the events stored
  under the key and answers with the state they made, or raises ``DuplicateEventId``
  when the key holds other events;
- it does not (confirming an order that the first request confirmed records nothing;
  a retried cancel after it was confirmed would be refused): the command's events carry
  the key and a digest of the request in their metadata, and ``earlier_answer`` finds
  them in the stream and returns the state right after them, or raises
  ``IdempotencyKeyReused`` when the digest differs.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel

from eventfold import Aggregate, Repository
from eventfold.eventstore import keyed_event_ids
from examples.shop_api.errors import IdempotencyKeyReused

A = TypeVar("A", bound=Aggregate)

KEY_NAMESPACE = uuid.UUID("6f1c2b8e-5a3d-4e7f-9b0a-1d2c3e4f5a6b")
"""The uuid5 namespace turning a key that is not a UUID into an event id."""


@dataclass(frozen=True, slots=True)
class RequestKey:
    """A request's ``Idempotency-Key``: the event id it becomes, and what it stands for."""

    key: str
    """The header as the client sent it."""
    event_id: uuid.UUID
    """The id of the first event the command records."""
    digest: str
    """SHA-256 of the method, path and body: what a retry must send again."""

    @property
    def metadata(self) -> dict[str, Any]:
        """Stored with every event of the command, so a retry can be told apart."""
        return {"idempotency_key": self.key, "request_digest": self.digest}


def request_key(key: str, method: str, path: str, body: BaseModel | None) -> RequestKey:
    """The ``RequestKey`` of a request carrying ``Idempotency-Key: key``."""
    try:
        event_id = uuid.UUID(key)
    except ValueError:
        event_id = uuid.uuid5(KEY_NAMESPACE, key)
    content = "" if body is None else body.model_dump_json()
    digest = hashlib.sha256(f"{method} {path}\n{content}".encode()).hexdigest()
    return RequestKey(key, event_id, digest)


async def earlier_answer(
    repository: Repository, cls: type[A], id: str, key: RequestKey
) -> A | None:
    """The aggregate as an earlier request with this key left it, or None if none did.

    Reads the aggregate's stream: cheap for an order's few events; a service whose keyed
    commands touch long streams would index the key instead.
    """
    records = await repository.store.read_stream(cls.stream_id_for(id))
    first = next((r for r in records if r.event_id == key.event_id), None)
    if first is None:
        return None
    if first.metadata.get("request_digest") != key.digest:
        raise IdempotencyKeyReused(key.key)
    batch = set(keyed_event_ids(key.event_id, len(records)))
    last = max(r.stream_version for r in records if r.event_id in batch)
    return await repository.get(cls, id, version=last)
