"""The event catalog: every registered event type with its version, JSON Schema and chain.

Pure functions of an ``EventRegistry`` and its ``Upcasters``: ``describe`` gives the
entries, ``catalog_dict`` a JSON-able dict, ``catalog_json`` and ``catalog_markdown`` the text
that ``eventfold catalog --format json|markdown`` prints.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from eventfold.eventstore.event import Event
from eventfold.eventstore.registry import EventRegistry
from eventfold.upcasters.chain import ShapeKey, Upcasters, UpcasterStep


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """One registered event type as the catalog shows it."""

    event_type: str
    version: int
    class_name: str
    """The class as ``module.qualname``: where to find it, never what is stored."""
    description: str
    """The first line of the class's docstring ('' when it has none)."""
    json_schema: dict[str, Any]
    upcasters: tuple[UpcasterStep, ...]
    """The steps whose chains end at this type's current version, oldest first."""

    @property
    def chain(self) -> str:
        """The chain in one line: ``OrderCreated v1 -> OrderPlaced v2 -> v3``."""
        if not self.upcasters:
            return f"{self.event_type} v{self.version}"
        parts = []
        for step in self.upcasters:
            parts.append(f"{step.event_type} v{step.version} -> " + ", ".join(
                f"{name} v{version}" for name, version in step.outputs
            ) + f" ({step.kind})")
        return "; ".join(parts)


def describe(registry: EventRegistry, upcasters: Upcasters | None = None) -> list[CatalogEntry]:
    """The catalog entries of every registered type, ordered by type name."""
    leads = _steps_by_end(upcasters)
    entries = []
    for cls in sorted(registry, key=lambda c: c.event_type):
        end = (cls.event_type, cls.schema_version)
        entries.append(CatalogEntry(
            event_type=cls.event_type,
            version=cls.schema_version,
            class_name=f"{cls.__module__}.{cls.__qualname__}",
            description=_first_line(cls),
            json_schema=cls.model_json_schema(),
            upcasters=tuple(leads.get(end, ())),
        ))
    return entries


def catalog_dict(registry: EventRegistry, upcasters: Upcasters | None = None) -> dict[str, Any]:
    """The catalog as a JSON-able dict: ``{"events": [...], "unattached_upcasters": [...]}``.

    ``unattached_upcasters`` lists steps whose chains end at no registered class (what
    ``Upcasters.check`` reports as errors), so that the catalog hides nothing.
    """
    entries = describe(registry, upcasters)
    attached = {step.source for entry in entries for step in entry.upcasters}
    unattached = [
        _step_dict(step) for step in (upcasters.steps() if upcasters is not None else [])
        if step.source not in attached
    ]
    return {
        "events": [
            {
                "type": entry.event_type,
                "version": entry.version,
                "class": entry.class_name,
                "description": entry.description,
                "schema": entry.json_schema,
                "upcasters": [_step_dict(step) for step in entry.upcasters],
            }
            for entry in entries
        ],
        "unattached_upcasters": unattached,
    }


def catalog_json(registry: EventRegistry, upcasters: Upcasters | None = None) -> str:
    """The catalog as indented JSON text."""
    return json.dumps(catalog_dict(registry, upcasters), indent=2, ensure_ascii=False)


def catalog_markdown(registry: EventRegistry, upcasters: Upcasters | None = None) -> str:
    """The catalog as a markdown document: a summary table, then a section per type."""
    entries = describe(registry, upcasters)
    lines = ["# Event catalog", ""]
    if not entries:
        lines.append("No event types are registered.")
        return "\n".join(lines) + "\n"
    lines += [
        f"{len(entries)} registered event type{'s' if len(entries) != 1 else ''}.",
        "",
        "| Type | Version | Upcasters | Description |",
        "| --- | --- | --- | --- |",
    ]
    for entry in entries:
        lines.append(
            f"| [{_cell(entry.event_type)}](#{_anchor(entry.event_type)}) | {entry.version} "
            f"| {len(entry.upcasters)} | {_cell(entry.description)} |"
        )
    for entry in entries:
        lines += ["", f"## {entry.event_type}", ""]
        if entry.description:
            lines += [entry.description, ""]
        lines += [
            f"- Current version: {entry.version}",
            f"- Class: `{entry.class_name}`",
        ]
        if entry.upcasters:
            lines += [
                "", "Upcasters (stored shape to the next):", "",
                "| From | To | Kind | Function | Description |",
                "| --- | --- | --- | --- | --- |",
            ]
            for step in entry.upcasters:
                targets = ", ".join(f"{name} v{version}" for name, version in step.outputs)
                lines.append(
                    f"| {_cell(step.event_type)} v{step.version} | {_cell(targets)} "
                    f"| {step.kind} | `{_cell(step.name)}` | {_cell(step.description)} |"
                )
        else:
            lines += ["", "No upcasters: stored events are read as they are."]
        lines += [
            "", "JSON Schema:", "", "```json",
            json.dumps(entry.json_schema, indent=2, ensure_ascii=False), "```",
        ]
    unattached = catalog_dict(registry, upcasters)["unattached_upcasters"]
    if unattached:
        lines += [
            "", "## Upcasters that reach no registered type", "",
            "`Upcasters.check` reports each of these as an error.", "",
        ]
        for step in unattached:
            targets = ", ".join(f"{t['type']} v{t['version']}" for t in step["to"])
            lines.append(
                f"- {step['from']['type']} v{step['from']['version']} -> {targets or 'nothing'} "
                f"({step['kind']}: `{step['function']}`)"
            )
    return "\n".join(lines) + "\n"


def _steps_by_end(upcasters: Upcasters | None) -> dict[ShapeKey, list[UpcasterStep]]:
    """For each final shape, the steps whose chains end there (a split's step in several)."""
    leads: dict[ShapeKey, list[UpcasterStep]] = {}
    if upcasters is None:
        return leads
    for step in upcasters.steps():
        for end in upcasters.ends_of(step.event_type, step.version):
            leads.setdefault(end, []).append(step)
    for steps in leads.values():
        # Oldest first reads as the history of the type; the stored name breaks ties.
        steps.sort(key=lambda s: (s.version, s.event_type))
    return leads


def _step_dict(step: UpcasterStep) -> dict[str, Any]:
    return {
        "from": {"type": step.event_type, "version": step.version},
        "to": [{"type": name, "version": version} for name, version in step.outputs],
        "kind": str(step.kind),
        "function": step.name,
        "description": step.description,
    }


def _first_line(cls: type[Event]) -> str:
    # Only the class's own docstring: an inherited one (Event's) describes nothing here.
    doc = cls.__dict__.get("__doc__") or ""
    stripped = doc.strip()
    return stripped.splitlines()[0].strip() if stripped else ""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _anchor(title: str) -> str:
    """The anchor GitHub generates for a heading."""
    kept = "".join(ch for ch in title.lower() if ch.isalnum() or ch in " -_")
    return kept.replace(" ", "-")
