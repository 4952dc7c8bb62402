"""The ``Aggregate`` base class: commands record events, handlers fold them into state.

An aggregate's state is the annotated class attributes of its subclass (each instance gets
its own copy of the defaults); handlers registered with ``@applies(EventType)`` change that
state and nothing else. Commands are the public methods: they check invariants and call
``self.record(event)``, which applies the event at once and keeps it pending until the
repository saves it. A command that raises leaves the aggregate as it found it.
"""

from __future__ import annotations

import copy
import datetime as _dt
import decimal
import enum
import functools
import inspect
import typing
import uuid
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Concatenate, ParamSpec, Self, TypeVar

import pydantic
import pydantic_core

from eventfold.aggregates.errors import (
    AggregateDefinitionError,
    MissingHandler,
    SnapshotStateError,
    UnregisteredHandlerEvents,
)
from eventfold.eventstore.event import Event
from eventfold.eventstore.registry import EventRegistry

_APPLIES = "__eventfold_applies__"
"""Attribute ``@applies`` sets on a handler: the event classes it folds."""

_IMMUTABLE_DEFAULTS = (
    str, bytes, int, float, complex, bool, type(None), decimal.Decimal, _dt.date, _dt.time,
    _dt.timedelta, uuid.UUID, enum.Enum, frozenset,
)
"""Types whose default value all instances may share without copying it."""

HandlerT = TypeVar("HandlerT", bound=Callable[..., Any])
SelfT = TypeVar("SelfT", bound="Aggregate")
P = ParamSpec("P")
R = TypeVar("R")


def applies(*event_types: type[Event]) -> Callable[[HandlerT], HandlerT]:
    """Register the decorated method as the handler that folds events of these types.

    A handler takes the event and changes the aggregate's state; it never awaits, logs or
    reads the clock. One class holds at most one handler per event type.

    >>> from eventstore import Event
    >>> class Opened(Event):
    ...     owner: str
    >>> class Account(Aggregate):
    ...     owner: str = ""
    ...     @applies(Opened)
    ...     def _opened(self, event: Opened) -> None:
    ...         self.owner = event.owner
    >>> Account.handled_event_types() == {Opened}
    True
    """
    if not event_types:
        raise AggregateDefinitionError("@applies() needs at least one event class")
    for event_type in event_types:
        _check_event_class(event_type, "@applies")

    def register(handler: HandlerT) -> HandlerT:
        if not inspect.isfunction(handler):
            raise AggregateDefinitionError(
                f"@applies decorates a plain method, not {handler!r}"
            )
        if inspect.iscoroutinefunction(handler) or inspect.isgeneratorfunction(handler):
            raise AggregateDefinitionError(
                f"handler {handler.__qualname__} must be a plain method: handlers fold state "
                "and do no I/O, so they are never async or generators"
            )
        previous: tuple[type[Event], ...] = getattr(handler, _APPLIES, ())
        setattr(handler, _APPLIES, (*previous, *event_types))
        return handler

    return register


def _check_event_class(event_type: object, where: str) -> None:
    if not (isinstance(event_type, type) and issubclass(event_type, Event)) or event_type is Event:
        raise AggregateDefinitionError(
            f"{where} names {event_type!r}, which is not a subclass of eventfold's Event: "
            "handlers fold events (frozen pydantic models deriving from eventstore.Event)"
        )


def _command(method: Callable[Concatenate[SelfT, P], R]) -> Callable[Concatenate[SelfT, P], R]:
    """Wrap a command so that, when it raises, nothing it recorded stays pending or applied.

    Only the outermost command of a call chain rolls back; state is copied lazily, at the
    first ``record`` of the call, so a command that rejects before recording costs nothing.
    """

    @functools.wraps(method)
    def command(self: SelfT, /, *args: P.args, **kwargs: P.kwargs) -> R:
        if self._in_command:
            return method(self, *args, **kwargs)
        self._in_command = True
        self._scope_start = len(self._pending)
        self._scope_saved = None
        try:
            return method(self, *args, **kwargs)
        except BaseException:
            self._roll_back()
            raise
        finally:
            self._in_command = False
            self._scope_saved = None

    return command


class Aggregate:
    """Base class of aggregates: subclass it, declare state, write commands and handlers.

    >>> from eventstore import Event
    >>> class Deposited(Event):
    ...     amount: int
    >>> class Account(Aggregate):
    ...     balance: int = 0
    ...     def deposit(self, amount: int) -> None:
    ...         if amount <= 0:
    ...             raise ValueError("deposit a positive amount")
    ...         self.record(Deposited(amount=amount))
    ...     @applies(Deposited)
    ...     def _deposited(self, event: Deposited) -> None:
    ...         self.balance += event.amount
    >>> account = Account("42")
    >>> account.deposit(5)
    >>> account.balance, account.stream_id, account.version, account.pending_events
    (5, 'Account-42', 0, (Deposited(amount=5),))

    State is the annotated class attributes (each needs a default: the state before the
    first event); ``vars(aggregate)`` is that state. Commands are the public methods the
    subclass defines (synchronous ones): when one raises, every event it recorded is
    dropped and the state restored, so a rejected command leaves no trace. The rollback
    covers the outermost command of a call (a command calling another is one unit), and
    the state is copied once per command, at its first ``record`` (a command rejected
    before recording costs nothing). Do not define ``__init__``: the repository builds
    aggregates from their id. Set the class variables ``category``
    (stream prefix, default the class name), ``state_version`` (raise it whenever the
    state's shape changes, so older snapshots are ignored) and ``snapshot_every`` (take a
    snapshot at save time every N events; None, the default, takes none).
    """

    __slots__ = (
        "_in_command", "_pending", "_pending_ids", "_scope_saved", "_scope_start", "id",
        "version",
    )

    category: ClassVar[str] = "Aggregate"
    """The stream prefix: stream ids are ``f"{category}-{id}"``."""
    state_version: ClassVar[int] = 1
    """The version of the state's shape; snapshots taken at another version are ignored."""
    snapshot_every: ClassVar[int | None] = None
    """Take a snapshot at save time every this many events (None: never at save time)."""

    _handlers: ClassVar[dict[type[Event], str]] = {}
    _dispatch: ClassVar[dict[type[Event], str]] = {}
    _state_defaults: ClassVar[dict[str, tuple[Any, bool]]] = {}
    _state_adapters: ClassVar[dict[str, pydantic.TypeAdapter[Any]] | None] = None

    id: str
    """The aggregate's id, unique within its category."""
    version: int
    """The stream version of the last stored event folded in (0 when none is stored)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            raise AggregateDefinitionError(
                f"{cls.__qualname__} defines __init__: aggregates are built by the repository "
                "from their id; declare state as annotated class attributes with defaults"
            )
        if "category" not in cls.__dict__:
            cls.category = cls.__name__
        _check_class_settings(cls)
        cls._handlers = _collect_handlers(cls)
        cls._dispatch = dict(cls._handlers)
        cls._state_defaults = _collect_state(cls)
        cls._state_adapters = None
        for name, value in list(cls.__dict__.items()):
            if (
                not name.startswith("_")
                and inspect.isfunction(value)
                and not hasattr(value, _APPLIES)
                and not inspect.iscoroutinefunction(value)
                and not inspect.isgeneratorfunction(value)
            ):
                setattr(cls, name, _command(value))

    def __init__(self, id: str) -> None:
        """A new aggregate with no events: its state is the declared defaults."""
        if type(self) is Aggregate:
            raise AggregateDefinitionError("subclass Aggregate; it is not used directly")
        if not isinstance(id, str) or not id:
            raise ValueError(f"an aggregate id is a non-empty string, got {id!r}")
        self.id = id
        self.version = 0
        self._pending: list[Event] = []
        self._pending_ids: list[uuid.UUID] = []
        self._in_command = False
        self._scope_start = 0
        self._scope_saved: dict[str, Any] | None = None
        for name, (default, shared) in self._state_defaults.items():
            setattr(self, name, default if shared else copy.deepcopy(default))

    # --- identity and pending events -------------------------------------------------

    @classmethod
    def stream_id_for(cls, id: str) -> str:
        """The stream id of the aggregate with this id: ``f"{category}-{id}"``."""
        return f"{cls.category}-{id}"

    @property
    def stream_id(self) -> str:
        """The aggregate's stream: ``f"{category}-{id}"``."""
        return f"{self.category}-{self.id}"

    @property
    def pending_events(self) -> tuple[Event, ...]:
        """Events recorded since the last load or save, in order."""
        return tuple(self._pending)

    @classmethod
    def handled_event_types(cls) -> frozenset[type[Event]]:
        """The event classes this aggregate has handlers for."""
        return frozenset(cls._handlers)

    @_command  # a failing handler leaves no trace either
    def record(self, event: Event) -> None:
        """Apply ``event`` to the state now and keep it pending until the next save.

        Call it from commands, after the invariants hold. Raises ``MissingHandler`` when
        the class has no handler for the event's type.
        """
        if not isinstance(event, Event):
            raise TypeError(f"record() takes an Event, got {type(event).__name__}")
        handler = self._handler_for(type(event))
        if self._scope_saved is None:
            self._scope_saved = copy.deepcopy(self.__dict__)
        getattr(self, handler)(event)
        self._pending.append(event)

    # --- folding ------------------------------------------------------------------------

    @classmethod
    def from_events(
        cls, id: str, events: Iterable[Event], *, version: int | None = None
    ) -> Self:
        """The aggregate with these stored events folded in, nothing pending.

        ``version`` defaults to the number of events (a stream read from its start).
        """
        aggregate = cls(id)
        count = aggregate._fold(events)
        aggregate.version = count if version is None else version
        return aggregate

    def _fold(self, events: Iterable[Event]) -> int:
        """Apply stored events (not pending); the number applied."""
        count = 0
        # The bound handler of each event class, looked up once per fold, not per event.
        handlers: dict[type[Event], Callable[[Event], object]] = {}
        for event in events:
            event_type = type(event)
            handler = handlers.get(event_type)
            if handler is None:
                handler = handlers[event_type] = getattr(self, self._handler_for(event_type))
            handler(event)
            count += 1
        return count

    @classmethod
    def _handler_for(cls, event_type: type[Event]) -> str:
        name = cls._dispatch.get(event_type)
        if name is None:
            # An event class deriving from a handled one is folded by that handler.
            name = next(
                (cls._handlers[base] for base in event_type.__mro__ if base in cls._handlers),
                None,
            )
            if name is None:
                raise MissingHandler(cls, event_type)
            cls._dispatch[event_type] = name
        return name

    def _roll_back(self) -> None:
        saved = self._scope_saved
        if saved is not None:
            self.__dict__.clear()
            self.__dict__.update(saved)
        del self._pending[self._scope_start:]
        del self._pending_ids[self._scope_start:]

    # --- what the repository uses ---------------------------------------------------------

    def _event_ids(self, new_id: Callable[[], uuid.UUID]) -> list[uuid.UUID]:
        """Ids of the pending events, assigned once: a save retried after a lost reply
        re-sends the same ids, so the store de-duplicates it."""
        while len(self._pending_ids) < len(self._pending):
            self._pending_ids.append(new_id())
        return list(self._pending_ids)

    def _mark_saved(self, version: int) -> None:
        self.version = version
        self._pending.clear()
        self._pending_ids.clear()

    # --- snapshots ------------------------------------------------------------------------

    def snapshot_state(self) -> dict[str, Any]:
        """The state as JSON-able data, for a snapshot (``from_snapshot`` reads it back).

        Decimals, datetimes, UUIDs, enums, sets and pydantic models survive the round trip
        because each field is dumped and validated through its annotation.
        """
        cls = type(self)
        adapters = cls._adapters()
        undeclared = sorted(set(self.__dict__) - set(adapters))
        if undeclared:
            raise AggregateDefinitionError(
                f"{cls.__qualname__} instance has attributes that are not declared state: "
                f"{', '.join(undeclared)}; declare them on the class with an annotation and "
                "a default so snapshots keep them"
            )
        state: dict[str, Any] = {}
        for name, adapter in adapters.items():
            value = self.__dict__[name]
            try:
                state[name] = _settled(
                    adapter.dump_python(value, mode="json", warnings="error"), value
                )
            except (pydantic_core.PydanticSerializationError, ValueError, TypeError) as exc:
                raise AggregateDefinitionError(
                    f"{cls.__qualname__}.{name} holds {type(value).__name__} {value!r}, which "
                    f"does not fit its annotation: {exc}"
                ) from exc
        return state

    @classmethod
    def from_snapshot(cls, id: str, version: int, state: dict[str, Any]) -> Self:
        """The aggregate at ``version`` with the state a snapshot holds.

        Raises ``SnapshotStateError`` naming the fields when the state does not fit the
        class's declared state (missing, unexpected or invalid fields).
        """
        adapters = cls._adapters()
        stream_id = cls.stream_id_for(id)
        if not isinstance(state, dict):
            raise SnapshotStateError(cls, stream_id, f"state is {type(state).__name__}, not a dict")
        problems: list[str] = []
        missing = [name for name in adapters if name not in state]
        extra = sorted(set(state) - set(adapters))
        if missing:
            problems.append(f"missing fields {', '.join(missing)}")
        if extra:
            problems.append(f"unexpected fields {', '.join(extra)}")
        values: dict[str, Any] = {}
        for name, adapter in adapters.items():
            if name not in state:
                continue
            try:
                values[name] = adapter.validate_python(state[name])
            except pydantic.ValidationError as exc:
                detail = "; ".join(error["msg"] for error in exc.errors())
                problems.append(f"field {name!r}: {detail}")
        if problems:
            raise SnapshotStateError(cls, stream_id, "; ".join(problems))
        aggregate = cls(id)
        aggregate.__dict__.update(values)
        aggregate.version = version
        return aggregate

    @classmethod
    def _adapters(cls) -> dict[str, pydantic.TypeAdapter[Any]]:
        adapters = cls.__dict__.get("_state_adapters")
        if adapters is None:
            adapters = _build_adapters(cls)
            cls._state_adapters = adapters
        return adapters

    def __repr__(self) -> str:
        state = ", ".join(f"{name}={value!r}" for name, value in self.__dict__.items())
        pending = f", pending={len(self._pending)}" if self._pending else ""
        return f"<{type(self).__qualname__} {self.id!r} v{self.version}{pending}: {state}>"


_RESERVED = frozenset(dir(Aggregate))


def _check_class_settings(cls: type[Aggregate]) -> None:
    category = cls.category
    if (
        not isinstance(category, str) or not category or "-" in category
        or category.strip() != category
    ):
        raise AggregateDefinitionError(
            f"{cls.__qualname__}.category is {category!r}: use a non-empty word without '-' "
            "or surrounding spaces (it is the part of the stream id before the first '-')"
        )
    state_version = cls.state_version
    if isinstance(state_version, bool) or not isinstance(state_version, int) or state_version < 1:
        raise AggregateDefinitionError(
            f"{cls.__qualname__}.state_version is {state_version!r}: use an int >= 1"
        )
    every = cls.snapshot_every
    if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
        raise AggregateDefinitionError(
            f"{cls.__qualname__}.snapshot_every is {every!r}: use an int >= 1, or None for "
            "no snapshots at save time"
        )


def _collect_handlers(cls: type[Aggregate]) -> dict[type[Event], str]:
    """Handlers by event type; a subclass's handler for a type replaces its parent's."""
    handlers: dict[type[Event], str] = {}
    for klass in reversed(cls.__mro__):
        own: dict[type[Event], str] = {}
        for name, value in vars(klass).items():
            event_types = getattr(value, _APPLIES, None) if inspect.isfunction(value) else None
            if event_types is None:
                continue
            for event_type in event_types:
                _check_event_class(event_type, f"handler {klass.__qualname__}.{name}")
                other = own.get(event_type)
                if other is not None and other != name:
                    raise AggregateDefinitionError(
                        f"{klass.__qualname__} has two handlers for {event_type.__qualname__}: "
                        f"{other} and {name}; fold each event type in one handler"
                    )
                own[event_type] = name
        handlers.update(own)
    return handlers


def _is_class_var(annotation: object) -> bool:
    if isinstance(annotation, str):
        head = annotation.split("[", 1)[0].strip()
        return head in {"ClassVar", "typing.ClassVar", "t.ClassVar"}
    return annotation is ClassVar or typing.get_origin(annotation) is ClassVar


def _collect_state(cls: type[Aggregate]) -> dict[str, tuple[Any, bool]]:
    """State fields by name: (default, whether instances may share it uncopied)."""
    fields: dict[str, tuple[Any, bool]] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or klass is Aggregate:
            continue
        for name, annotation in inspect.get_annotations(klass).items():
            if _is_class_var(annotation):
                continue
            if name in _RESERVED:
                raise AggregateDefinitionError(
                    f"{klass.__qualname__}.{name} cannot be state: {name!r} is a name of "
                    "Aggregate itself; choose another name"
                )
            if name not in vars(klass):
                if name in fields:
                    continue  # re-annotated in a subclass, default inherited
                raise AggregateDefinitionError(
                    f"state field {klass.__qualname__}.{name} has no default: give it the value "
                    "it has before the first event (e.g. `status: str = \"new\"`)"
                )
            default = vars(klass)[name]
            if inspect.isfunction(default) or isinstance(
                default, (property, classmethod, staticmethod)
            ):
                raise AggregateDefinitionError(
                    f"{klass.__qualname__}.{name} is annotated as state but is a method or property"
                )
            fields[name] = (default, _shareable(default))
    return fields


def _shareable(value: object) -> bool:
    if isinstance(value, tuple):
        return all(_shareable(item) for item in value)
    if isinstance(value, pydantic.BaseModel):
        return bool(value.model_config.get("frozen")) and all(
            _shareable(item) for item in value.__dict__.values()
        )
    return isinstance(value, _IMMUTABLE_DEFAULTS)


def _build_adapters(cls: type[Aggregate]) -> dict[str, pydantic.TypeAdapter[Any]]:
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
    except (NameError, TypeError, AttributeError) as exc:
        raise AggregateDefinitionError(
            f"cannot resolve the state annotations of {cls.__qualname__} ({exc}): define the "
            "types they name at module level so snapshots can serialize the state"
        ) from exc
    adapters: dict[str, pydantic.TypeAdapter[Any]] = {}
    for name in cls._state_defaults:
        try:
            adapters[name] = pydantic.TypeAdapter(hints[name])
        except pydantic.PydanticSchemaGenerationError as exc:
            raise AggregateDefinitionError(
                f"{cls.__qualname__}.{name}: {hints[name]!r} cannot be serialized for snapshots; "
                "use types pydantic knows (builtins, Decimal, datetime, UUID, enums, models)"
            ) from exc
    return adapters


def check_aggregate(cls: type[Aggregate], registry: EventRegistry) -> None:
    """Raise ``UnregisteredHandlerEvents`` when ``cls`` handles event types ``registry`` lacks.

    The repository runs it the first time it meets a class; call it at start-up to fail
    before serving requests.
    """
    if not (isinstance(cls, type) and issubclass(cls, Aggregate)) or cls is Aggregate:
        raise AggregateDefinitionError(f"{cls!r} is not a subclass of Aggregate")
    missing = [event_type for event_type in cls._handlers if event_type not in registry]
    if missing:
        raise UnregisteredHandlerEvents(cls, missing)


def _settled(dumped: Any, value: object) -> Any:
    """A set's items in sorted order, so equal states give equal snapshots."""
    if isinstance(value, (set, frozenset)) and isinstance(dumped, list):
        try:
            return sorted(dumped)
        except TypeError:  # items of mixed or unordered kinds keep the set's order
            return dumped
    return dumped
