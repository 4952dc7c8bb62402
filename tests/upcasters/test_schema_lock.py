"""The schema lock and the compatibility check: each incompatible change, each compatible one."""

from __future__ import annotations

import datetime as dt
import enum
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field

from eventfold.eventstore import Event, EventRegistry
from eventfold.upcasters import (
    Incompatibility,
    SchemaLockError,
    Upcasters,
    check_schemas,
    dumps_lock,
    lock_schemas,
    read_lock,
    write_lock,
)


def changes(old: type[Event], new: type[Event], upcasters: Upcasters | None = None) -> list[str]:
    """The check's findings for ``new`` against a lock written with ``old``, as text."""
    locked = lock_schemas(EventRegistry([old]))
    return [str(found) for found in check_schemas(EventRegistry([new]), upcasters, locked)]


def findings(old: type[Event], new: type[Event]) -> list[tuple[str | None, str]]:
    locked = lock_schemas(EventRegistry([old]))
    return [(f.field, f.change) for f in check_schemas(EventRegistry([new]), None, locked)]


class Line(BaseModel):
    sku: str
    quantity: int


class LineWithNote(BaseModel):
    sku: str
    quantity: int
    note: str = ""


class LineWithoutQuantity(BaseModel):
    sku: str


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class FewerColours(enum.Enum):
    RED = "red"


class Placed(Event):
    event_type = "OrderPlaced"
    order_id: str
    total: int
    coupon: str | None = None
    lines: list[Line] = Field(default_factory=list)
    colour: Colour = Colour.RED
    kind: Literal["web", "shop"] = "web"
    placed_on: str = ""
    tags: dict[str, int] = Field(default_factory=dict)


# -- compatible changes ------------------------------------------------------------------


class SameButDocumented(Event):
    """Only annotations changed."""

    event_type = "OrderPlaced"
    order_id: str = Field(description="The order's id")
    total: int
    coupon: str | None = None
    lines: list[Line] = Field(default_factory=list)
    colour: Colour = Colour.RED
    kind: Literal["web", "shop"] = "web"
    placed_on: str = ""
    tags: dict[str, int] = Field(default_factory=dict)


class OptionalFieldAdded(Event):
    event_type = "OrderPlaced"
    order_id: str
    total: int
    coupon: str | None = None
    lines: list[LineWithNote] = Field(default_factory=list)
    colour: Colour = Colour.RED
    kind: Literal["web", "shop", "phone"] = "web"
    placed_on: str = ""
    tags: dict[str, int] = Field(default_factory=dict)
    channel: str = "web"


class Widened(Event):
    event_type = "OrderPlaced"
    order_id: str
    total: float | None
    coupon: str | int | None = None
    lines: list[Line] = Field(default_factory=list)
    colour: Colour | None = Colour.RED
    kind: str = "web"
    placed_on: str = ""
    tags: dict[str, float] = Field(default_factory=dict)


class RequiredMadeOptional(Event):
    event_type = "OrderPlaced"
    order_id: str
    total: int = 0
    coupon: str | None = None
    lines: list[Line] = Field(default_factory=list)
    colour: Colour = Colour.RED
    kind: Literal["web", "shop"] = "web"
    placed_on: str = ""
    tags: dict[str, int] = Field(default_factory=dict)


@pytest.mark.parametrize(
    "new", [Placed, SameButDocumented, OptionalFieldAdded, Widened, RequiredMadeOptional]
)
def test_compatible_changes_pass(new: type[Event]) -> None:
    assert changes(Placed, new) == []


def test_a_type_registered_after_the_lock_is_not_reported() -> None:
    class Brand(Event):
        name: str

    locked = lock_schemas(EventRegistry([Placed]))
    assert check_schemas(EventRegistry([Placed, Brand]), None, locked) == []


# -- incompatible changes without a version bump -----------------------------------------


class FieldRemoved(Event):
    event_type = "OrderPlaced"
    order_id: str
    coupon: str | None = None
    lines: list[Line] = Field(default_factory=list)
    colour: Colour = Colour.RED
    kind: Literal["web", "shop"] = "web"
    placed_on: str = ""
    tags: dict[str, int] = Field(default_factory=dict)


class TypeChanged(Event):
    event_type = "OrderPlaced"
    order_id: str
    total: str
    coupon: str | None = None
    lines: list[Line] = Field(default_factory=list)
    colour: Colour = Colour.RED
    kind: Literal["web", "shop"] = "web"
    placed_on: str = ""
    tags: dict[str, int] = Field(default_factory=dict)


class RequiredAdded(Event):
    event_type = "OrderPlaced"
    order_id: str
    total: int
    coupon: str | None = None
    lines: list[Line] = Field(default_factory=list)
    colour: Colour = Colour.RED
    kind: Literal["web", "shop"] = "web"
    placed_on: str = ""
    tags: dict[str, int] = Field(default_factory=dict)
    customer_id: str


class BecameRequired(Event):
    event_type = "OrderPlaced"
    order_id: str
    total: int
    coupon: str | None
    lines: list[Line] = Field(default_factory=list)
    colour: Colour = Colour.RED
    kind: Literal["web", "shop"] = "web"
    placed_on: str = ""
    tags: dict[str, int] = Field(default_factory=dict)


class NullDropped(Event):
    event_type = "OrderPlaced"
    order_id: str
    total: int
    coupon: str = ""
    lines: list[Line] = Field(default_factory=list)
    colour: Colour = Colour.RED
    kind: Literal["web", "shop"] = "web"
    placed_on: str = ""
    tags: dict[str, int] = Field(default_factory=dict)


class NestedFieldRemoved(Event):
    event_type = "OrderPlaced"
    order_id: str
    total: int
    coupon: str | None = None
    lines: list[LineWithoutQuantity] = Field(default_factory=list)
    colour: Colour = Colour.RED
    kind: Literal["web", "shop"] = "web"
    placed_on: str = ""
    tags: dict[str, int] = Field(default_factory=dict)


class ValuesNarrowed(Event):
    event_type = "OrderPlaced"
    order_id: str
    total: int
    coupon: str | None = None
    lines: list[Line] = Field(default_factory=list)
    colour: FewerColours = FewerColours.RED
    kind: Literal["web"] = "web"
    placed_on: str = ""
    tags: dict[str, int] = Field(default_factory=dict)


class ConstraintAdded(Event):
    event_type = "OrderPlaced"
    order_id: str = Field(max_length=8)
    total: int = Field(ge=0)
    coupon: str | None = None
    lines: list[Line] = Field(default_factory=list)
    colour: Colour = Colour.RED
    kind: Literal["web", "shop"] = "web"
    placed_on: dt.date = dt.date(2020, 1, 1)
    tags: dict[str, str] = Field(default_factory=dict)


@pytest.mark.parametrize(
    ("new", "expected"),
    [
        (FieldRemoved, [("total", "removed")]),
        (TypeChanged, [("total", "type changed from integer to string")]),
        (RequiredAdded, [("customer_id", "added as a required field without a default")]),
        (BecameRequired, [("coupon", "became required (stored events may lack it)")]),
        (NullDropped, [("coupon", "type changed from string | null to string")]),
        (NestedFieldRemoved, [("lines[].quantity", "removed")]),
        (ValuesNarrowed, [
            ("colour", 'no longer allows "blue"'),
            ("kind", 'no longer allows "shop"'),
        ]),
        (ConstraintAdded, [
            ("order_id", "constraint maxLength tightened from none to 8"),
            ("total", "constraint minimum tightened from none to 0"),
            ("placed_on", "format changed from none to date"),
            ("tags[*]", "type changed from integer to string"),
        ]),
    ],
)
def test_incompatible_changes_are_each_named(
    new: type[Event], expected: list[tuple[str, str]]
) -> None:
    assert findings(Placed, new) == expected


def test_an_incompatibility_is_one_line_naming_type_version_field_and_change() -> None:
    [found] = check_schemas(
        EventRegistry([TypeChanged]), None, lock_schemas(EventRegistry([Placed]))
    )
    assert found == Incompatibility(
        "OrderPlaced", 1, "total", "type changed from integer to string", found.remedy
    )
    text = str(found)
    assert "\n" not in text
    assert text.startswith("OrderPlaced v1: field 'total' type changed from integer to string")
    assert "raise schema_version to 2 and register an upcaster from v1" in text


# -- version bumps, removals, renames ------------------------------------------------------


class PlacedV2(Event):
    event_type = "OrderPlaced"
    schema_version = 2
    order_id: str
    total: str


def test_a_version_bump_with_an_upcaster_from_the_locked_version_passes() -> None:
    upcasters = Upcasters()
    upcasters.register("OrderPlaced", 1)(lambda data: {**data, "total": str(data["total"])})
    assert changes(Placed, PlacedV2, upcasters) == []


def test_a_version_bump_without_an_upcaster_fails() -> None:
    [text] = changes(Placed, PlacedV2)
    assert text.startswith(
        "OrderPlaced v1: version was raised to v2 but there is no upcaster from v1"
    )


def test_a_version_bump_whose_chain_stops_short_fails() -> None:
    class PlacedV3(Event):
        event_type = "OrderPlaced"
        schema_version = 3
        order_id: str

    upcasters = Upcasters()
    upcasters.register("OrderPlaced", 1)(lambda data: data)
    [text] = changes(Placed, PlacedV3, upcasters)
    assert "chain from v1 stops at 'OrderPlaced' v2, which is not a registered class" in text


def test_a_version_going_down_fails() -> None:
    [text] = changes(PlacedV2, Placed)
    assert text.startswith("OrderPlaced v2: version went down from v2 to v1")


def test_a_type_gone_without_an_upcaster_fails_and_a_renamed_one_passes() -> None:
    class Renamed(Event):
        event_type = "PurchaseMade"
        order_id: str

    locked = lock_schemas(EventRegistry([Placed]))
    [gone] = check_schemas(EventRegistry([Renamed]), None, locked)
    assert (gone.event_type, gone.version, gone.field) == ("OrderPlaced", 1, None)
    assert "is no longer registered and there is no upcaster from v1" in str(gone)
    upcasters = Upcasters()
    upcasters.rename("OrderPlaced", 1, "PurchaseMade", to_version=1)
    assert check_schemas(EventRegistry([Renamed]), upcasters, locked) == []


def test_recursive_models_are_compared_without_looping() -> None:
    class Node(BaseModel):
        name: str
        children: list[Node] = []

    class NodeRenamedField(BaseModel):
        title: str
        children: list[NodeRenamedField] = []

    class Tree(Event):
        root: Node

    class TreeChanged(Event):
        event_type = "Tree"
        root: NodeRenamedField

    assert findings(Tree, Tree) == []
    assert findings(Tree, TreeChanged) == [
        ("root.name", "removed"),
        ("root.title", "added as a required field without a default"),
    ]


class Cat(BaseModel):
    kind: Literal["cat"] = "cat"
    lives: int


class Dog(BaseModel):
    kind: Literal["dog"] = "dog"
    bark: str


class BigDog(BaseModel):
    kind: Literal["dog"] = "dog"
    bark: str
    size: int


class Adopted(Event):
    pet: Annotated[Cat | Dog, Field(discriminator="kind")]
    previous: Dog | None = None


class AdoptedChanged(Event):
    event_type = "Adopted"
    pet: Annotated[Cat | BigDog, Field(discriminator="kind")]
    previous: BigDog | None = None


def test_a_change_inside_a_union_member_names_the_field() -> None:
    assert findings(Adopted, Adopted) == []
    assert findings(Adopted, AdoptedChanged) == [
        ("pet.size", "added as a required field without a default"),
        ("previous.size", "added as a required field without a default"),
    ]


# -- the lock file -------------------------------------------------------------------------


def test_the_lock_holds_each_types_version_and_schema() -> None:
    assert lock_schemas(EventRegistry([PlacedV2])) == {
        "eventfold_schema_lock": 1,
        "events": {"OrderPlaced": {"version": 2, "schema": PlacedV2.model_json_schema()}},
    }


def test_write_then_read_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "eventfold.lock.json"
    registry = EventRegistry([Placed])
    written = write_lock(registry, path)
    assert read_lock(path) == written == json.loads(json.dumps(lock_schemas(registry)))
    assert path.read_text() == dumps_lock(registry)
    assert check_schemas(registry, None, read_lock(path)) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ("{not json", "is not JSON"),
        ('{"events": {}}', "is not an eventfold schema lock"),
        ('{"eventfold_schema_lock": 1}', 'has no "events" object'),
        ('{"eventfold_schema_lock": 1, "events": {"A": {"version": 0, "schema": {}}}}',
         "malformed entry for 'A'"),
    ],
)
def test_a_bad_lock_file_says_what_is_wrong(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "eventfold.lock.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SchemaLockError, match=message) as caught:
        read_lock(path)
    assert "eventfold schemas lock" in str(caught.value)


def test_check_refuses_a_dict_that_is_no_lock() -> None:
    bad: dict[str, Any] = {"events": {}}
    with pytest.raises(SchemaLockError):
        check_schemas(EventRegistry([Placed]), None, bad)
