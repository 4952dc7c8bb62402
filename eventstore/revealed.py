"""Personal data in a file of events: sealed values written revealed, with their subject,
and sealed again, with the target's keys, when read back (``eventfold export
--reveal-personal-data`` and ``eventfold import``; see docs/personal-data.md).

A file cannot carry the keys that open sealed values, so an export that reveals writes each
sealed value as ``{"$personal_value": {"subject": ..., "value": ..., "forgotten": ...}}``,
without ``value`` when the subject is forgotten: the import makes (or finds) the subject's key
in the target and seals the value with it, or forgets the subject there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from cryptography.exceptions import InvalidTag

from eventfold.eventstore.errors import CloudEventError
from eventfold.eventstore.keys import KeyStore, SubjectKey
from eventfold.eventstore.personal import SEALED, is_sealed, open_value, seal_value
from eventfold.eventstore.records import RecordedEvent

REVEALED = "$personal_value"
"""The key of the object that stands for a revealed personal value in a file."""

PAGE_SIZE = 10_000


def is_revealed(value: object) -> bool:
    """Whether a top-level value of an event's data is a revealed personal value."""
    return type(value) is dict and len(value) == 1 and REVEALED in value


async def keys_by_id(keys: KeyStore) -> dict[str, SubjectKey]:
    """Every key of a key store by key id, forgotten ones too."""
    found: dict[str, SubjectKey] = {}
    after: str | None = None
    while page := await keys.page(after=after, limit=PAGE_SIZE):
        found.update((key.key_id, key) for key in page)
        after = page[-1].subject
    return found


def reveal(records: Sequence[RecordedEvent], keys: dict[str, SubjectKey]) -> list[RecordedEvent]:
    """The records with every sealed value revealed (``keys``: the store's, by id). A value
    whose key is not among them, or which does not open, raises ``ValueError``: the store
    is damaged, and writing it on would lose the value."""
    out = list(records)
    for index, record in enumerate(records):
        if not any(is_sealed(value) for value in record.data.values()):
            continue
        data = dict(record.data)
        for name, value in record.data.items():
            if is_sealed(value):
                data[name] = _revealed(record, name, value, keys)
        out[index] = dataclasses.replace(record, data=data)
    return out


def _revealed(
    record: RecordedEvent, name: str, sealed: dict[str, Any], keys: dict[str, SubjectKey]
) -> dict[str, Any]:
    inner = sealed[SEALED]
    key = keys.get(inner["key"])
    if key is None:
        raise ValueError(
            f"event {record.event_id} field {name!r} is sealed with key {inner['key']}, which "
            "the store does not hold"
        )
    opened: dict[str, Any] = {"subject": key.subject}
    if key.secret is not None:
        try:
            opened["value"] = open_value(key.secret, record.event_id, name, sealed)
        except (InvalidTag, ValueError, KeyError) as exc:
            raise ValueError(
                f"event {record.event_id} field {name!r} does not open with its key ({exc!r})"
            ) from exc
    opened["forgotten"] = inner["forgotten"]
    return {REVEALED: opened}


def check_not_sealed(record: RecordedEvent, where: str) -> None:
    """``CloudEventError`` for an event of a file that holds a sealed value: its key is not
    in the file, so the value would be lost."""
    for name, value in record.data.items():
        if is_sealed(value):
            raise CloudEventError(
                f"{where}: field {name!r} is a sealed personal value whose key is not in the "
                "file; export the store with `eventfold export --reveal-personal-data`, or "
                "move it with `eventfold copy`"
            )


async def reseal(records: Sequence[RecordedEvent], keys: KeyStore) -> list[RecordedEvent]:
    """The records with every revealed value sealed again with its subject's key in
    ``keys`` (made there for a new subject); a forgotten subject's value (or any value of a
    subject forgotten there) is stored sealed with the forgotten key, so it reads as its
    placeholder, and the subject is forgotten there too."""
    out = list(records)
    held: dict[str, SubjectKey] = {}
    for index, record in enumerate(records):
        if not any(is_revealed(value) for value in record.data.values()):
            continue
        data = dict(record.data)
        for name, value in record.data.items():
            if not is_revealed(value):
                continue
            inner = value[REVEALED]
            subject = inner["subject"]
            key = held.get(subject)
            if key is None or (key.secret is not None and "value" not in inner):
                if "value" not in inner:
                    await keys.destroy(subject)
                key = held[subject] = await keys.create(subject)
            if key.secret is None:
                data[name] = {SEALED: {
                    "key": key.key_id, "nonce": "", "ciphertext": "",
                    "forgotten": inner["forgotten"],
                }}
            else:
                data[name] = seal_value(
                    key.secret, key.key_id, record.event_id, name, inner["value"],
                    inner["forgotten"],
                )
        out[index] = dataclasses.replace(record, data=data)
    return out
