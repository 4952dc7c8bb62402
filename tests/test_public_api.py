"""The public face: ``eventfold`` exports the everyday names and nothing else, and importing it
stays light. A change to either list shows up here, in review."""

from __future__ import annotations

import subprocess
import sys

import pytest

import eventfold

EVERYDAY_NAMES = [
    "ANY", "NO_STREAM", "START", "STREAM_EXISTS",
    "Aggregate", "AggregateNotFound", "App", "ConcurrencyError", "Delivery", "DomainError",
    "DuplicateEventId", "Event", "EventRegistry", "EventStore", "EventfoldError",
    "FailurePolicy", "Inbox", "InvalidAppend", "NewEvent", "PersonalData", "ProcessContext",
    "ProcessManager",
    "Projection", "ProjectionContext", "ReadModel", "RecordedEvent", "Relay", "Repository",
    "Retention", "Runner", "Running", "SchemaNotMigrated", "StoreUnavailable", "StreamDeleted",
    "StreamTombstoned", "StreamTruncated", "UnknownEventType",
    "Upcasters", "applies", "compensation", "connect", "handles", "migrate", "on",
    "on_timeout", "open_snapshots", "scenario",
]

HEAVY_OR_OPTIONAL = (
    "alembic", "mako", "pygments", "aio_pika", "aiormq", "nats", "opentelemetry",
    "prometheus_client", "typer", "rich", "starlette", "jinja2", "uvicorn",
)


def test_the_face_exports_the_everyday_names() -> None:
    assert eventfold.__all__ == EVERYDAY_NAMES
    for name in EVERYDAY_NAMES:
        assert getattr(eventfold, name).__module__.startswith("eventfold."), name


def test_every_package_lists_what_it_exports() -> None:
    import importlib

    for package in ("eventstore", "upcasters", "snapshots", "aggregates", "projections",
                    "processes", "messaging"):
        module = importlib.import_module(f"eventfold.{package}")
        assert module.__all__ == sorted(module.__all__, key=lambda n: (not n.isupper(), n))
        for name in module.__all__:
            assert hasattr(module, name), f"eventfold.{package}.{name}"


def loaded_after(statement: str) -> set[str]:
    """The top-level packages a fresh interpreter has imported after ``statement``."""
    code = f"import sys\n{statement}\nprint(' '.join({{m.split('.')[0] for m in sys.modules}}))"
    run = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return set(run.stdout.split())


def test_import_eventfold_loads_the_names_when_they_are_used() -> None:
    assert not loaded_after("import eventfold") & {"sqlalchemy", "pydantic", "asyncpg"}


@pytest.mark.parametrize("names", [", ".join(EVERYDAY_NAMES), "Aggregate, Event, Repository"])
def test_the_everyday_names_leave_out_migrations_brokers_telemetry_and_the_cli(
    names: str,
) -> None:
    assert not loaded_after(f"from eventfold import {names}") & set(HEAVY_OR_OPTIONAL)
