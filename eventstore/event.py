"""The event: a frozen pydantic model with a stable type name and a schema version."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict


class Event(BaseModel):
    """Base class of domain events.

    Name events in the past tense. The stored type name defaults to the class name and
    must never change once rows exist; set ``event_type`` to decouple it from the class
    name. Raise ``schema_version`` (and register an upcaster) when the shape changes.

    >>> class OrderPlaced(Event):
    ...     order_id: str
    >>> OrderPlaced.event_type, OrderPlaced.schema_version
    ('OrderPlaced', 1)
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: ClassVar[str] = "Event"
    schema_version: ClassVar[int] = 1

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if "event_type" not in cls.__dict__:
            cls.event_type = cls.__name__
        if not isinstance(cls.schema_version, int) or cls.schema_version < 1:
            raise TypeError(f"{cls.__qualname__}.schema_version must be an int >= 1")
        if not cls.event_type or not isinstance(cls.event_type, str):
            raise TypeError(f"{cls.__qualname__}.event_type must be a non-empty string")
