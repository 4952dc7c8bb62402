"""Where an eventfold process finds its database (and, later, its application).

One ``Settings`` value is resolved at the edge of the program (command-line options, then
environment variables, then defaults) and handed down; nothing below reads the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from eventstore import DEFAULT_URL, EventRegistry, connect

DATABASE_URL_ENV = "EVENTFOLD_DATABASE_URL"
"""The environment variable that names the store when ``--database`` is not given."""


@dataclass(frozen=True, slots=True)
class Settings:
    """How to reach the event store, and how loudly to fail.

    ``database_url`` is any URL ``eventstore.connect`` accepts. ``debug`` makes the command
    line show tracebacks instead of the one-line error.
    """

    database_url: str = DEFAULT_URL
    debug: bool = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``EVENTFOLD_DATABASE_URL`` (when set and not empty), else defaults."""
        env = os.environ if environ is None else environ
        return cls(database_url=env.get(DATABASE_URL_ENV) or DEFAULT_URL)

    def registry(self) -> EventRegistry:
        """The event registry the store decodes with.

        Empty for now: the command line works on the stored JSON of events and does not
        need the application's classes. This is the one place that will load them once an
        application can be named (``--app module:attribute``).
        """
        return EventRegistry()

    def connect(self) -> connect:
        """Open the store: ``async with settings.connect() as store: ...``."""
        return connect(self.database_url, self.registry())
