"""Where an eventfold process finds its database and its application.

One ``Settings`` value is resolved at the edge of the program (command-line options, then
environment variables, then defaults) and handed down; nothing below reads the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace

from eventfold.app import App, Connecting, load_app
from eventfold.errors import AppRequired
from eventfold.eventstore import DEFAULT_URL, EventRegistry, connect

DATABASE_URL_ENV = "EVENTFOLD_DATABASE_URL"
"""The environment variable that names the store when ``--database`` is not given."""
READ_MODELS_URL_ENV = "EVENTFOLD_READ_MODELS_URL"
"""The environment variable that names the read models' own database when
``--read-models`` is not given (unset: the App's ``read_models``, else the store's)."""
APP_ENV = "EVENTFOLD_APP"
"""The environment variable that names the application (``module:attribute``) when
``--app`` is not given."""


@dataclass(frozen=True, slots=True)
class Settings:
    """How to reach the event store, which application to load, and how loudly to fail.

    ``database_url`` is any URL ``eventfold.eventstore.connect`` accepts. ``app_spec`` names an
    ``App`` as ``module:attribute`` (``module`` alone means ``module:app``); commands that
    fold, project or describe events load it. ``debug`` makes the command line show
    tracebacks instead of the one-line error. ``read_models_url`` puts the read models and
    the runner's books in a database of their own (wins over the App's ``read_models``).
    """

    database_url: str = DEFAULT_URL
    app_spec: str | None = None
    debug: bool = False
    read_models_url: str | None = None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``EVENTFOLD_DATABASE_URL``, ``EVENTFOLD_APP`` and
        ``EVENTFOLD_READ_MODELS_URL`` (when set and not empty), else defaults."""
        env = os.environ if environ is None else environ
        return cls(
            database_url=env.get(DATABASE_URL_ENV) or DEFAULT_URL,
            app_spec=env.get(APP_ENV) or None,
            read_models_url=env.get(READ_MODELS_URL_ENV) or None,
        )

    def with_app(self, app_spec: str | None) -> Settings:
        """These settings with ``app_spec`` instead, when one is given."""
        return self if not app_spec else replace(self, app_spec=app_spec)

    def with_database(self, database_url: str | None) -> Settings:
        """These settings with ``database_url`` instead, when one is given."""
        return self if not database_url else replace(self, database_url=database_url)

    def app(self, needed_by: str = "this command") -> App:
        """The application ``app_spec`` names; ``AppRequired`` when none is given and
        ``AppNotFound`` when the name leads to no ``App``."""
        if not self.app_spec:
            raise AppRequired(needed_by)
        # Imports are cached, so loading twice yields the same App object.
        return load_app(self.app_spec)

    def registry(self) -> EventRegistry:
        """The event registry the store decodes (and upcasts) with.

        The application's, when one is named; otherwise an empty registry: the command
        line then shows events as stored JSON and does not need the application's classes.
        """
        return self.app().registry if self.app_spec else EventRegistry()

    def read_models(self) -> str | None:
        """The read models' own database: ``read_models_url``, else the named App's
        ``read_models``; None when they live in the store's database."""
        if self.read_models_url:
            return self.read_models_url
        return self.app().read_models if self.app_spec else None

    def connect(self) -> connect:
        """Open the store: ``async with settings.connect() as store: ...``."""
        return connect(self.database_url, self.registry())

    def connect_app(self, needed_by: str = "this command") -> Connecting:
        """Open the application on the store: ``async with settings.connect_app() as
        running: ...`` (store, snapshots, repository, engine, runner), with the read
        models where ``read_models_url`` or the App says."""
        return self.app(needed_by).connect(
            self.database_url, read_models=self.read_models_url
        )
