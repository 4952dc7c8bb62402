"""The event catalog: types, versions, JSON Schemas and upcaster chains, as JSON and markdown."""

from __future__ import annotations

import json
import re

from upcaster_samples import OrderPlaced, PaymentReceived, build_upcasters, reader_registry

from eventfold.eventstore import Event, EventRegistry
from eventfold.upcasters import (
    StepKind,
    Upcasters,
    catalog_dict,
    catalog_json,
    catalog_markdown,
    describe,
)


class Unversioned(Event):
    order_id: str


def test_describe_lists_every_type_with_its_version_schema_and_chain() -> None:
    upcasters = build_upcasters()
    placed, paid = describe(reader_registry(upcasters), upcasters)
    assert (placed.event_type, placed.version) == ("OrderPlaced", 3)
    assert placed.class_name == "upcaster_samples.OrderPlaced"
    assert placed.description == "An order was placed (current version 3)."
    assert placed.json_schema == OrderPlaced.model_json_schema()
    assert [(s.event_type, s.version, s.kind) for s in placed.upcasters] == [
        ("OrderCreated", 1, StepKind.RENAME),
        ("OrderPlaced", 1, StepKind.TRANSFORM),
        ("OrderPlacedAndPaid", 1, StepKind.SPLIT),
        ("OrderPlaced", 2, StepKind.TRANSFORM),
    ]
    # A split belongs to the chain of every type it produces.
    assert [(s.event_type, s.kind) for s in paid.upcasters] == [
        ("OrderPlacedAndPaid", StepKind.SPLIT)
    ]
    assert paid.json_schema == PaymentReceived.model_json_schema()
    assert "OrderCreated v1 -> OrderPlaced v1 (rename)" in placed.chain


def test_a_type_without_upcasters_or_docstring() -> None:
    [entry] = describe(EventRegistry([Unversioned]))
    assert (entry.version, entry.description, entry.upcasters) == (1, "", ())
    assert entry.chain == "Unversioned v1"


def test_the_json_catalog_round_trips_and_hides_nothing() -> None:
    upcasters = build_upcasters()
    upcasters.rename("Stray", 1, "Nowhere", to_version=1)
    registry = reader_registry(upcasters)
    text = catalog_json(registry, upcasters)
    assert json.loads(text) == catalog_dict(registry, upcasters)
    data = json.loads(text)
    assert [(e["type"], e["version"]) for e in data["events"]] == [
        ("OrderPlaced", 3), ("PaymentReceived", 1)
    ]
    placed = data["events"][0]
    assert placed["schema"] == OrderPlaced.model_json_schema()
    assert placed["upcasters"][3] == {
        "from": {"type": "OrderPlaced", "version": 2},
        "to": [{"type": "OrderPlaced", "version": 3}],
        "kind": "transform",
        "function": "upcaster_samples.build_upcasters.<locals>.nest_total",
        "description": "The amount and currency became one ``total``.",
    }
    assert [(u["from"]["type"], u["to"]) for u in data["unattached_upcasters"]] == [
        ("Stray", [{"type": "Nowhere", "version": 1}])
    ]


def test_the_markdown_catalog_has_a_summary_a_section_per_type_and_the_schemas() -> None:
    upcasters = build_upcasters()
    text = catalog_markdown(reader_registry(upcasters), upcasters)
    assert text.startswith("# Event catalog\n")
    assert "| [OrderPlaced](#orderplaced) | 3 | 4 | An order was placed" in text
    assert "## OrderPlaced\n" in text and "## PaymentReceived\n" in text
    assert "| OrderPlaced v2 | OrderPlaced v3 | transform |" in text
    assert "| OrderPlacedAndPaid v1 | OrderPlaced v1, PaymentReceived v1 | split |" in text
    schemas = re.findall(r"```json\n(.*?)\n```", text, flags=re.DOTALL)
    assert [json.loads(schema) for schema in schemas] == [
        OrderPlaced.model_json_schema(), PaymentReceived.model_json_schema()
    ]
    assert "reach no registered type" not in text


def test_the_markdown_catalog_of_an_empty_registry() -> None:
    assert catalog_markdown(EventRegistry(), Upcasters()) == (
        "# Event catalog\n\nNo event types are registered.\n"
    )


def test_table_cells_escape_pipes() -> None:
    class Piped(Event):
        """Either | or."""

    text = catalog_markdown(EventRegistry([Piped]))
    assert "| Either \\| or. |" in text
    assert "No upcasters: stored events are read as they are." in text
