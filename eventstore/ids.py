"""Event ids: UUIDv7, so ids sort by creation time and index well."""

from __future__ import annotations

import uuid

import uuid_utils.compat


def new_event_id() -> uuid.UUID:
    """A fresh UUIDv7."""
    return uuid_utils.compat.uuid7()


def keyed_event_ids(key: uuid.UUID, count: int) -> list[uuid.UUID]:
    """The ids of a batch recorded under an idempotency key: the key itself, then
    ``uuid5(key, "2")``, ``uuid5(key, "3")``...; the same key always gives the same ids, so
    a command repeated with its key re-sends the batch the store already holds."""
    return [key, *(uuid.uuid5(key, str(n)) for n in range(2, count + 1))]
