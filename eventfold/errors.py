"""Errors of the public face and the command line, under eventstore's one hierarchy."""

from __future__ import annotations

from eventfold.aggregates import AggregateDefinitionError
from eventfold.eventstore import EventfoldError


class StreamNotFound(EventfoldError, LookupError):
    """A stream that was asked for by name has no events."""

    def __init__(self, stream_id: str, url: str) -> None:
        self.stream_id = stream_id
        self.url = url
        super().__init__(
            f"stream {stream_id!r} has no events in the store at {url}: "
            "`eventfold streams list` shows the streams there are"
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
