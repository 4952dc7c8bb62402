"""How the command line shows events and streams: rich tables for people, JSON Lines for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from eventstore import RecordedEvent, StreamInfo

DATA_WIDTH = 60
"""How many characters of an event's data a table shows; ``--json`` shows all of it."""


def envelope(record: RecordedEvent) -> dict[str, Any]:
    """A recorded event as a JSON-ready mapping: the stored envelope, field for field."""
    return {
        "event_id": str(record.event_id),
        "stream_id": record.stream_id,
        "stream_version": record.stream_version,
        "position": record.position,
        "transaction_id": record.transaction_id,
        "event_type": record.event_type,
        "schema_version": record.schema_version,
        "recorded_at": record.recorded_at.isoformat(),
        "data": record.data,
        "metadata": record.metadata,
    }


def stream_summary(info: StreamInfo) -> dict[str, Any]:
    """A stream's summary as a JSON-ready mapping."""
    return {
        "stream_id": info.stream_id,
        "category": info.category,
        "version": info.version,
        "updated_at": info.updated_at.isoformat(),
    }


def print_json_lines(items: Iterable[dict[str, Any]]) -> None:
    """One compact JSON object per line on stdout, flushed so a pipe sees each at once."""
    for item in items:
        sys.stdout.write(json.dumps(item, separators=(",", ":"), default=str) + "\n")
        sys.stdout.flush()


def abbreviated(data: dict[str, Any], width: int = DATA_WIDTH) -> str:
    """Compact JSON of ``data``, cut to ``width`` characters with an ellipsis."""
    text = json.dumps(data, separators=(",", ":"), default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


def when(moment: datetime) -> str:
    """A timestamp to the millisecond, in the zone it was stored with."""
    return moment.isoformat(sep=" ", timespec="milliseconds")


def events_table(title: str, records: Iterable[RecordedEvent]) -> Table:
    """The events of a stream, one row each."""
    table = Table(title=title, title_justify="left")
    table.add_column("version", justify="right")
    table.add_column("position", justify="right")
    table.add_column("type", style="bold")
    table.add_column("schema", justify="right")
    table.add_column("recorded at", no_wrap=True)
    table.add_column("data", overflow="fold")
    for record in records:
        table.add_row(
            str(record.stream_version), str(record.position), escape(record.event_type),
            f"v{record.schema_version}", when(record.recorded_at),
            escape(abbreviated(record.data)),
        )
    return table


def streams_table(title: str, streams: Iterable[StreamInfo]) -> Table:
    """Streams with their category, version and last append."""
    table = Table(title=title, title_justify="left")
    table.add_column("stream", style="bold")
    table.add_column("category")
    table.add_column("version", justify="right")
    table.add_column("updated at", no_wrap=True)
    for info in streams:
        table.add_row(
            escape(info.stream_id), escape(info.category), str(info.version),
            when(info.updated_at),
        )
    return table


def event_line(record: RecordedEvent) -> str:
    """One event as one line of rich markup, for a live tail."""
    return (
        f"[dim]{when(record.recorded_at)}[/] {record.position:>7} "
        f"{escape(record.stream_id)}@{record.stream_version} "
        f"[bold]{escape(record.event_type)}[/] v{record.schema_version} "
        f"{escape(abbreviated(record.data))}"
    )


def stdout_console() -> Console:
    """The console commands print their human output on."""
    return Console(highlight=False)
