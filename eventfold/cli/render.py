"""How the command line shows events and streams: rich tables for people, JSON Lines for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from eventfold.eventstore import RecordedEvent, StreamInfo

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
    """A timestamp in UTC to the millisecond, short enough for a table column."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def events_table(title: str, records: Iterable[RecordedEvent]) -> Table:
    """The events of a stream, one row each."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    # Everything but the data keeps its width (no_wrap columns are never narrowed); the
    # data column alone shrinks to what is left, its cells cut short on one line.
    table.add_column("ver", justify="right", no_wrap=True)
    table.add_column("pos", justify="right", no_wrap=True)
    table.add_column("type", no_wrap=True)
    table.add_column("recorded (UTC)", no_wrap=True)
    table.add_column("data", min_width=20, overflow="ellipsis")
    for record in records:
        table.add_row(
            str(record.stream_version), str(record.position),
            f"[bold]{escape(record.event_type)}[/] v{record.schema_version}",
            when(record.recorded_at),
            Text(abbreviated(record.data), no_wrap=True, overflow="ellipsis"),
        )
    return table


def streams_table(title: str, streams: Iterable[StreamInfo]) -> Table:
    """Streams with their category, version and last append."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("stream", style="bold")
    table.add_column("category")
    table.add_column("version", justify="right")
    table.add_column("updated (UTC)", no_wrap=True)
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
    """The console commands print their human output on (messages are never wrapped)."""
    return Console(highlight=False, soft_wrap=True)


def stderr_console() -> Console:
    """The console for messages beside the output (progress, what a command follows)."""
    return Console(stderr=True, highlight=False, soft_wrap=True)
