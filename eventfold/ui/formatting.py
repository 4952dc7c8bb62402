"""How the console's pages write times, durations, positions and JSON (Jinja filters)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from eventfold.eventstore import GlobalPosition

SHORT_JSON = 80
"""Characters of an event's data a table row shows; the event's page shows all of it."""


def when(moment: datetime | None) -> str:
    """A timestamp in UTC to the millisecond (``-`` for none)."""
    if moment is None:
        return "-"
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def duration(seconds: float | None) -> str:
    """``4.2s``, ``42s``, ``3m05s``, ``2h07m``: short enough for a table cell."""
    if seconds is None:
        return "?"
    whole = round(seconds)
    if whole < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


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
