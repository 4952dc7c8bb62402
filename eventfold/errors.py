"""Errors of the public face and the command line, under eventstore's one hierarchy."""

from __future__ import annotations

import shlex

from eventfold.aggregates import AggregateDefinitionError
from eventfold.eventstore import EventfoldError, SchemaNotMigrated, StoreUnavailable


class StreamNotFound(EventfoldError, LookupError):
    """A stream that was asked for by name has no events."""

    def __init__(self, stream_id: str, url: str) -> None:
        self.stream_id = stream_id
        self.url = url
        super().__init__(
            f"stream {stream_id!r} has no events in the store at {url}: "
            "`eventfold streams list` shows the streams there are"
        )


class StreamWasDeleted(StreamNotFound):
    """A stream that was asked for by name was deleted by its last event: it reads as not
    found (docs/lifecycle.md)."""

    def __init__(self, stream_id: str, url: str, version: int, *, hard: bool) -> None:
        self.stream_id = stream_id
        self.url = url
        self.version = version
        self.hard = hard
        how = "hard-deleted (a tombstone)" if hard else "deleted (soft)"
        then = "it takes no more events" if hard else "appending to it recreates it"
        EventfoldError.__init__(
            self,
            f"stream {stream_id!r} was {how} at version {version} in the store at {url}: "
            f"its events no longer read, and {then}",
        )


class UnknownAggregateCategory(AggregateDefinitionError, LookupError):
    """A stream's category, or a ``--category``, that no aggregate of the App owns."""

    def __init__(self, categories: list[str], what: str, known: list[str]) -> None:
        self.categories = categories
        self.known = known
        super().__init__(
            f"no aggregate of the application has the category {', '.join(categories)} "
            f"({what}; categories known: {', '.join(known)}): register its class with "
            "App(aggregates=[...])"
        )


class AppRequired(EventfoldError):
    """A command needs the application (its events, aggregates, projections) and none
    was named."""

    def __init__(self, needed_by: str) -> None:
        self.needed_by = needed_by
        super().__init__(
            f"{needed_by} needs the application: pass --app module:attribute (e.g. "
            "--app examples.shop:app) or set EVENTFOLD_APP"
        )


class AppNotFound(EventfoldError):
    """``--app module:attribute`` does not name an ``App``."""

    def __init__(self, spec: str, reason: str) -> None:
        self.spec = spec
        super().__init__(
            f"cannot load the application {spec!r}: {reason}; "
            "pass --app as module:attribute naming an eventfold App (e.g. examples.shop:app)"
        )


class MetricsUnavailable(EventfoldError):
    """``--metrics-port`` was given but the metrics cannot be served."""

    def __init__(self, port: int, reason: str) -> None:
        self.port = port
        super().__init__(f"cannot serve metrics on port {port}: {reason}")


class ConsoleUnavailable(EventfoldError):
    """The web console cannot be served: its extra is not installed, or its address is
    taken."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"cannot serve the web console: {reason}")


class EventNotFound(EventfoldError, LookupError):
    """An event asked for by stream and version is not in the stream."""

    def __init__(self, stream_id: str, version: int, stream_version: int) -> None:
        self.stream_id = stream_id
        self.version = version
        self.stream_version = stream_version
        super().__init__(
            f"stream {stream_id!r} has no event at version {version}: it is at version "
            f"{stream_version} (versions start at 1)"
        )


class ReadModelsUnavailable(StoreUnavailable):
    """The read models' own database (``App(read_models=...)``, ``--read-models``) cannot
    be reached or its URL names no database."""

    def __init__(self, url: str, reason: str = "") -> None:
        self.url = url
        self.reason = reason
        detail = f": {reason}" if reason else ""
        EventfoldError.__init__(
            self,
            f"the read-model database at {url} is unavailable{detail}; check that the server "
            "runs and the URL (--read-models, EVENTFOLD_READ_MODELS_URL or "
            "App(read_models=...)) is right",
        )


class ReadModelsNotMigrated(SchemaNotMigrated):
    """The read models' own database lacks eventfold's tables (checkpoints, parked events,
    leases, process state) or holds an older revision of them.

    ``store`` is the store's URL (masked), for the command that migrates both."""

    def __init__(self, url: str, current: str | None, expected: str, *, store: str) -> None:
        self.url = url
        self.current = current
        self.expected = expected
        self.store = store
        at = f"is at revision {current}" if current else "has no eventfold schema"
        if "***" in url or "***" in store:
            hint = (
                "`eventfold migrate` with the same --database and --read-models URLs (their "
                "secrets are not printed)"
            )
        else:
            hint = (
                f"`eventfold --read-models {shlex.quote(url)} migrate "
                f"--database {shlex.quote(store)}`"
            )
        EventfoldError.__init__(
            self,
            f"the read-model database at {url} {at}, the code expects {expected}: run {hint} "
            "(it migrates the store and the read-model database)",
        )
