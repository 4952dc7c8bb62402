"""Errors of the public face and the command line, under eventstore's one hierarchy."""

from __future__ import annotations

from eventstore import EventfoldError


class StreamNotFound(EventfoldError, LookupError):
    """A stream that was asked for by name has no events."""

    def __init__(self, stream_id: str, url: str) -> None:
        self.stream_id = stream_id
        self.url = url
        super().__init__(
            f"stream {stream_id!r} has no events in the store at {url}: "
            "`eventfold streams list` shows the streams there are"
        )
