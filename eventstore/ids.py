"""Event ids: UUIDv7, so ids sort by creation time and index well."""

from __future__ import annotations

import uuid

import uuid_utils.compat


def new_event_id() -> uuid.UUID:
    """A fresh UUIDv7."""
    return uuid_utils.compat.uuid7()
