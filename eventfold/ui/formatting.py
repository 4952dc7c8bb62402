"""How the console's pages write times, durations, positions and JSON (Jinja filters)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from eventfold.eventstore import GlobalPosition
from eventfold.status import duration

SHORT_JSON = 80
"""Characters of an event's data a table row shows; the event's page shows all of it."""


def when(moment: datetime | None) -> str:
    """A timestamp in UTC to the millisecond (``-`` for none)."""
    if moment is None:
        return "-"
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def pretty(value: Any) -> str:
    """JSON indented for reading, non-ASCII kept as it is."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def compact(value: Any, width: int = SHORT_JSON) -> str:
    """Compact JSON cut to ``width`` characters with an ellipsis."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


def position(value: GlobalPosition) -> str:
    """A global position as ``transaction_id.position``: how the tail resumes after it."""
    return f"{value.transaction_id}.{value.position}"


def parse_position(text: str) -> GlobalPosition:
    """The inverse of ``position``; ``ValueError`` when ``text`` is not one."""
    transaction_id, dot, number = text.partition(".")
    if not dot:
        raise ValueError(f"{text!r} is not a position (transaction_id.position)")
    return GlobalPosition(int(transaction_id), int(number))


FILTERS = {
    "when": when,
    "duration": duration,
    "pretty": pretty,
    "compact": compact,
    "position": position,
}
"""The filters every template may use."""
