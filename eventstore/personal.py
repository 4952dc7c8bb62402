"""Personal data in events: the ``PersonalData`` mark and the sealed form of a value.

The why and the guarantees are in docs/personal-data.md.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

import pydantic
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from eventfold.eventstore.errors import PersonalDataDefinitionError
from eventfold.eventstore.event import Event

FORGOTTEN = "<forgotten>"
"""What a personal string field reads as once its subject is forgotten."""

SEALED = "$personal_data"
"""The key of the object that stands for a sealed value in the stored JSON."""


@dataclass(frozen=True, slots=True)
class PersonalData:
    """Marks an event field as personal data of the subject whose id is in the field
    ``subject`` of the same event: ``name: Annotated[str, PersonalData("customer_id")]``.

    The store encrypts the field with that subject's key; once the subject is forgotten
    it reads as ``forgotten`` (default ``"<forgotten>"``, which only a string field
    accepts: give other fields a value of their type, e.g. ``forgotten=None`` for an
    optional one).
    """

    subject: str
    forgotten: Any = FORGOTTEN


@dataclass(frozen=True, slots=True)
class PersonalField:
    """A personal field of an event class, with its placeholder as JSON."""

    name: str
    subject: str
    forgotten: Any


@functools.cache
def personal_fields(cls: type[Event]) -> tuple[PersonalField, ...]:
    """The fields of ``cls`` marked ``PersonalData``; raises
    ``PersonalDataDefinitionError`` when a mark cannot work."""
    found = []
    for name, info in cls.model_fields.items():
        mark = next((m for m in info.metadata if isinstance(m, PersonalData)), None)
        if mark is None:
            continue
        subject = cls.model_fields.get(mark.subject)
        if subject is None:
            raise PersonalDataDefinitionError(
                cls, name, f"its subject {mark.subject!r} is not a field of the event: name "
                "the field that holds the data subject's id"
            )
        if any(isinstance(m, PersonalData) for m in subject.metadata):
            raise PersonalDataDefinitionError(
                cls, name, f"its subject {mark.subject!r} is personal data itself: the "
                "subject's id must stay readable, it finds the key"
            )
        adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(info.annotation or Any)
        try:
            placeholder = adapter.dump_python(
                adapter.validate_python(mark.forgotten), mode="json"
            )
        except pydantic.ValidationError as exc:
            raise PersonalDataDefinitionError(
                cls, name, f"its placeholder {mark.forgotten!r} is not a value of the "
                "field's type: pass one as PersonalData(..., forgotten=...), e.g. None for "
                "an optional field"
            ) from exc
        found.append(PersonalField(name, mark.subject, placeholder))
    return tuple(found)


def seal_value(
    secret: bytes, key_id: str, event_id: uuid.UUID, name: str, value: Any, forgotten: Any
) -> dict[str, Any]:
    """The stored form of one personal value (any JSON value): AES-256-GCM of its JSON.

    The nonce is derived from the event id and the field's name: unique per stored value
    (event ids are unique in a store) and the same when a lost append is retried, so the
    retry still matches what was stored. Both are also the associated data: a sealed value
    copied into another event or field does not open.
    """
    context = event_id.bytes + name.encode()
    nonce = hashlib.sha256(b"eventfold personal data" + context).digest()[:12]
    plaintext = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    ciphertext = _cipher(secret).encrypt(nonce, plaintext, context)
    return {SEALED: {
        "key": key_id,
        "nonce": base64.b64encode(nonce).decode(),
        "ciphertext": base64.b64encode(ciphertext).decode(),
        "forgotten": forgotten,
    }}


def open_value(secret: bytes, event_id: uuid.UUID, name: str, sealed: dict[str, Any]) -> Any:
    """The value ``seal_value`` sealed; ``cryptography``'s ``InvalidTag`` if it was
    changed, moved, or the secret is not its key's."""
    inner = sealed[SEALED]
    plaintext = _cipher(secret).decrypt(
        base64.b64decode(inner["nonce"]), base64.b64decode(inner["ciphertext"]),
        event_id.bytes + name.encode(),
    )
    return json.loads(plaintext)


@functools.lru_cache(maxsize=1024)
def _cipher(secret: bytes) -> AESGCM:
    """The cipher of a key, made once: making one costs as much as a decryption."""
    return AESGCM(secret)


def is_sealed(value: object) -> bool:
    """Whether a stored top-level value is a sealed personal value."""
    return type(value) is dict and len(value) == 1 and SEALED in value
