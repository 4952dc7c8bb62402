"""The error hierarchy of the event store: every error says what went wrong and what to do."""

from __future__ import annotations

import shlex


class EventfoldError(Exception):
    """Base of every error eventfold raises on purpose."""


class ConcurrencyError(EventfoldError):
    """The stream was not at the version the append expected."""

    def __init__(self, stream_id: str, expected: object, actual: int) -> None:
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"stream {stream_id!r} is at version {actual}, the append expected {expected}: "
            "reload the stream and retry the command"
        )


class StreamsConflict(ConcurrencyError):
    """Streams of one ``append_streams`` call were not at the versions it expected;
    nothing of the call was written.

    ``conflicts`` holds one ``ConcurrencyError`` per such stream, in stream id order; the
    error's own ``stream_id``, ``expected`` and ``actual`` are the first one's, so code
    that catches ``ConcurrencyError`` keeps working.
    """

    def __init__(self, conflicts: list[ConcurrencyError]) -> None:
        self.conflicts = tuple(sorted(conflicts, key=lambda conflict: conflict.stream_id))
        first = self.conflicts[0]
        self.stream_id = first.stream_id
        self.expected = first.expected
        self.actual = first.actual
        named = "; ".join(
            f"{conflict.stream_id!r} is at version {conflict.actual}, expected "
            f"{conflict.expected!r}"
            for conflict in self.conflicts
        )
        EventfoldError.__init__(
            self,
            f"nothing was written: {named}. Reload the streams and retry the command",
        )


class DuplicateEventId(EventfoldError):
    """An event id of the batch is already stored with another event.

    A retried batch is the same events only if every id is stored in that stream, in the
    batch's order, with the same type, schema version, data and metadata (the context keys
    ``correlation_id``, ``causation_id`` and ``traceparent`` aside); see the README's
    "Retrying safely". ``reason`` says which of these differs.
    """

    def __init__(self, stream_id: str, event_id: object, reason: str = "") -> None:
        self.stream_id = stream_id
        self.event_id = event_id
        self.reason = reason
        detail = f" ({reason})" if reason else ""
        super().__init__(
            f"event id {event_id} is already stored and the batch for stream {stream_id!r} "
            f"does not match what was stored with it{detail}: give new events new ids"
        )


class InvalidAppend(EventfoldError, ValueError):
    """The arguments of an append are wrong; nothing was written."""


class StreamTombstoned(InvalidAppend):
    """The stream was hard-deleted: its tombstone refuses every append; nothing was
    written."""

    def __init__(self, stream_id: str, version: int) -> None:
        self.stream_id = stream_id
        self.version = version
        super().__init__(
            f"stream {stream_id!r} was deleted for good (hard delete, tombstone at version "
            f"{version}): it takes no more events; write to a stream with another id"
        )


class InvalidRead(EventfoldError, ValueError):
    """The arguments of a read are wrong (a negative limit, a naive ``as_of``, ...).

    Every backend checks reads with the same function
    (``eventfold.eventstore.read_arguments``), so a read that one backend refuses, every
    backend refuses.
    """


class StoreUnavailable(EventfoldError):
    """The database could not be reached or the connection was lost."""

    def __init__(self, url: str, reason: str = "") -> None:
        self.url = url
        self.reason = reason
        detail = f": {reason}" if reason else ""
        super().__init__(
            f"event store at {url} is unavailable{detail}; check that the server runs and "
            "the URL (--database or EVENTFOLD_DATABASE_URL) is right"
        )


class InvalidDatabaseURL(StoreUnavailable):
    """The URL names no database eventfold can open: an unknown scheme, or it does not parse.

    A ``StoreUnavailable`` (callers that catch that catch this too), but its message does
    not send the user looking for a server that is down."""

    def __init__(self, url: str, problem: str) -> None:
        self.url = url
        self.problem = problem
        EventfoldError.__init__(
            self,
            f"{url} is not a database URL eventfold knows: {problem}; the supported schemes "
            "are postgresql://user@host/db, sqlite:///path.db and memory:// (give the URL "
            "with --database or EVENTFOLD_DATABASE_URL)",
        )


class DatabaseMissing(StoreUnavailable):
    """The PostgreSQL server runs but has no database of the URL's name."""

    def __init__(self, url: str, database: str, createdb: str) -> None:
        self.url = url
        self.database = database
        self.createdb = createdb
        EventfoldError.__init__(
            self,
            f"the database {database!r} of {url} does not exist on its PostgreSQL server: "
            "create it with "
            f"`{createdb}`, then run {command_hint('migrate', url)}",
        )


def command_hint(command: str, url: str) -> str:
    """The command line that runs ``eventfold COMMAND`` on ``url``, for an error's hint.

    ``url`` is already masked: when a secret was masked out of it the command could not run
    as printed, so the hint names the command and leaves the URL to the user."""
    if "***" in url:
        return (
            f"`eventfold {command}` with the same --database URL (or EVENTFOLD_DATABASE_URL; "
            "its secret is not printed)"
        )
    return f"`eventfold {command} --database {shlex.quote(url)}`"


class SchemaNotMigrated(EventfoldError):
    """The database schema is missing or older than the code expects."""

    def __init__(self, url: str, current: str | None, expected: str) -> None:
        self.url = url
        self.current = current
        self.expected = expected
        at = f"is at revision {current}" if current else "has no eventfold schema"
        super().__init__(
            f"the store at {url} {at}, the code expects {expected}: "
            f"run {command_hint('migrate', url)}"
        )


class TransactionHorizonError(EventfoldError):
    """Stored transaction ids lie beyond the server's counter (after a logical restore)."""

    def __init__(self, url: str, max_stored: int, server_xmax: int) -> None:
        self.url = url
        self.max_stored = max_stored
        self.server_xmax = server_xmax
        super().__init__(
            f"the events table at {url} holds transaction id {max_stored}, beyond this "
            f"server's next id {server_xmax} (was the database restored from a dump?); readers "
            f"would never see that history. Run {command_hint('repair-horizon', url)} "
            "(see docs/operations.md)"
        )


class EventTypeError(EventfoldError):
    """Base of the errors about event types and their registration."""


class DuplicateEventType(EventTypeError, ValueError):
    """Two classes were registered under one type name and version."""

    def __init__(self, event_type: str, version: int, existing: type, new: type) -> None:
        self.event_type = event_type
        self.version = version
        super().__init__(
            f"event type {event_type!r} v{version} is already registered to "
            f"{existing.__module__}.{existing.__qualname__}; cannot register "
            f"{new.__module__}.{new.__qualname__}: give one of them another `event_type`"
        )


class UnregisteredEvent(EventTypeError, ValueError):
    """An event class was appended or handled without being registered."""

    def __init__(self, cls: type) -> None:
        self.cls = cls
        super().__init__(
            f"event class {cls.__qualname__} (type {getattr(cls, 'event_type', '?')!r}) is "
            "not registered: call registry.register(...) with it before appending"
        )


class UnknownEventType(EventTypeError):
    """A stored event has a type or version no registered class handles."""

    def __init__(
        self, event_type: str, version: int, stream_id: str | None = None,
        position: int | None = None,
    ) -> None:
        self.event_type = event_type
        self.version = version
        self.stream_id = stream_id
        self.position = position
        where = ""
        if stream_id is not None:
            where = f" (stream {stream_id!r}, position {position})"
        super().__init__(
            f"unknown event type {event_type!r} v{version}{where}: register its class, add an "
            "upcaster to a registered version, or read with skip_unknown=True"
        )


class EventDecodeError(EventTypeError):
    """A stored event cannot be turned into its event class.

    Either its data does not validate after upcasting, or its row's JSON cannot be read at
    all (``corrupt``: a cell edited by hand, a damaged file). Reads never fail for such a
    row, and never let it change another row: they return it as a record whose
    ``corrupt`` says what is wrong (its ``data`` and ``metadata`` are then empty), and
    ``EventRegistry.decode`` raises this error for it alone. A subscriber thus parks that
    one event and goes on with the rest of the batch; ``stream_id``, ``stream_version``
    and ``position`` name the row to repair.
    """

    def __init__(
        self, event_type: str, version: int, stream_id: str, position: int, detail: str,
        *, stream_version: int | None = None, corrupt: bool = False,
    ) -> None:
        self.event_type = event_type
        self.version = version
        self.stream_id = stream_id
        self.stream_version = stream_version
        self.position = position
        self.corrupt = corrupt
        at = "" if stream_version is None else f" version {stream_version},"
        if corrupt:
            problem = (
                f"cannot be read: {detail}; its stored JSON is damaged: restore the row "
                "from a backup (no other event was changed by it)"
            )
        else:
            problem = f"does not validate: {detail}; add or fix the upcaster for it"
        super().__init__(
            f"stored event {event_type!r} v{version} (stream {stream_id!r},{at} position "
            f"{position}) {problem}"
        )


class CloudEventError(EventfoldError, ValueError):
    """A CloudEvent could not be read as an eventfold envelope (missing or bad attribute)."""

    def __init__(self, problem: str, event_id: object = None) -> None:
        self.problem = problem
        self.event_id = event_id
        which = f" {event_id}" if event_id is not None else ""
        super().__init__(
            f"CloudEvent{which} cannot be read: {problem}. eventfold reads CloudEvents 1.0 in "
            "structured JSON mode as written by eventfold.eventstore.cloudevents.to_cloudevent"
        )


class PersonalDataDefinitionError(EventTypeError, TypeError):
    """A ``PersonalData`` annotation of an event class cannot work as written."""

    def __init__(self, cls: type, field: str, problem: str) -> None:
        self.cls = cls
        self.field = field
        super().__init__(
            f"{cls.__qualname__}.{field} is marked PersonalData but {problem}"
        )


class SubjectForgotten(InvalidAppend):
    """An append carries personal data of a data subject that was forgotten.

    Forgetting is final: the subject's key is destroyed and no new one is made, so a
    forgotten person cannot reappear in the log by accident (a late command, a replayed
    message). Nothing of the batch was written.
    """

    def __init__(self, subject: str, event_type: str, field: str) -> None:
        self.subject = subject
        self.event_type = event_type
        self.field = field
        super().__init__(
            f"data subject {subject!r} was forgotten: {event_type}.{field} holds personal "
            "data of it, which the store no longer accepts; nothing was written. Append the "
            "event without that subject's personal data"
        )


class ImportRefused(EventfoldError, ValueError):
    """``import_events`` refused a batch of recorded events; nothing of it was written."""

    def __init__(self, event_id: object, stream_id: str, reason: str) -> None:
        self.event_id = event_id
        self.stream_id = stream_id
        self.reason = reason
        super().__init__(
            f"cannot import event {event_id} of stream {stream_id!r}: {reason}; nothing of "
            "its batch was written"
        )


class CopyRefused(EventfoldError):
    """The target of a copy or an import holds events that are not an earlier, partial
    copy of the same source (``eventfold.eventstore.transfer``)."""

    def __init__(self, target: str, reason: str) -> None:
        self.target = target
        self.reason = reason
        super().__init__(
            f"will not copy into {target}: {reason}; copy into an empty store (a new "
            "database after `eventfold migrate`) or into an earlier copy of the same source"
        )


class ExportRefused(EventfoldError):
    """An export that would lose data: personal data sealed with keys a file cannot carry
    (``eventfold.eventstore.transfer.export_events``)."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"will not export {source}: {reason}")


class CopyMismatch(EventfoldError):
    """A finished copy or import does not match its source (counts or checksums differ)."""

    def __init__(self, source: str, target: str, detail: str) -> None:
        self.source = source
        self.target = target
        self.detail = detail
        super().__init__(
            f"{target} does not match {source}: {detail}; something wrote to one of them "
            "during the copy, or the target was changed: copy into a new, empty store"
        )


class InvalidRetention(EventfoldError, ValueError):
    """A retention policy that cannot be applied (``eventfold.eventstore.Retention``): the
    message names the field and what it takes."""
