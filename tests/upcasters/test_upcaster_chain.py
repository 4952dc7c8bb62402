"""The upcaster registry: steps, renames, splits, and the chain check at start-up."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from upcaster_samples import (
    OrderPlaced,
    PaymentReceived,
    build_upcasters,
    reader_registry,
)

from eventfold.eventstore import EventfoldError, EventRegistry, EventTypeError, StoredShape
from eventfold.eventstore.registry import FreshUpcaster
from eventfold.upcasters import (
    DuplicateUpcaster,
    InvalidUpcasterChain,
    MissingUpcaster,
    StepKind,
    Upcasters,
    UpcastFailed,
)

V1 = {"order_id": "o-1", "amount": 1250}
V3 = {"order_id": "o-1", "total": {"cents": 1250, "currency": "EUR"}}


class TestSteps:
    def test_a_field_change_goes_to_the_next_version(self) -> None:
        upcasters = Upcasters()

        @upcasters.register("OrderPlaced", 1)
        def add_currency(data: dict[str, Any]) -> dict[str, Any]:
            return {**data, "currency": "EUR"}

        assert upcasters.upcast("OrderPlaced", 1, {"amount": 5}) == [
            ("OrderPlaced", 2, {"amount": 5, "currency": "EUR"})
        ]
        assert add_currency({"amount": 1}) == {"amount": 1, "currency": "EUR"}  # returned as is

    def test_a_multi_step_chain_runs_step_by_step_to_the_end(self) -> None:
        assert build_upcasters().upcast("OrderPlaced", 1, V1) == [("OrderPlaced", 3, V3)]

    def test_a_shape_without_step_comes_back_unchanged(self) -> None:
        data = {"order_id": "o-1"}
        [(name, version, out)] = build_upcasters().upcast("Unrelated", 7, data)
        assert (name, version, out) == ("Unrelated", 7, data)

    def test_the_stored_data_is_never_changed_even_by_a_mutating_step(self) -> None:
        # add_currency in the samples assigns into its argument.
        stored = copy.deepcopy(V1)
        nested = {"order_id": "o-1", "amount": 1, "extra": {"deep": [1, 2]}}
        nested_before = copy.deepcopy(nested)
        upcasters = build_upcasters()
        upcasters.upcast("OrderPlaced", 1, stored)
        upcasters.step("OrderPlaced", 1, nested)
        assert stored == V1
        assert nested == nested_before

    def test_fresh_data_is_handed_to_the_first_step_without_a_copy(self) -> None:
        # A load owns the data it just parsed: the first step may take it as is; the
        # result is the one upcast gives.
        upcasters = build_upcasters()
        fresh = copy.deepcopy(V1)
        assert upcasters.upcast_fresh("OrderPlaced", 1, fresh) == [("OrderPlaced", 3, V3)]
        assert fresh == {**V1, "currency": "EUR"}  # add_currency assigned into it
        assert isinstance(upcasters, FreshUpcaster)

    def test_one_step_at_a_time(self) -> None:
        upcasters = build_upcasters()
        [v2] = upcasters.step("OrderPlaced", 1, V1)
        assert v2 == ("OrderPlaced", 2, {**V1, "currency": "EUR"})
        assert upcasters.step(*v2) == [("OrderPlaced", 3, V3)]


class TestRenamesAndSplits:
    def test_a_rename_follows_the_new_types_chain(self) -> None:
        assert build_upcasters().upcast("OrderCreated", 1, V1) == [("OrderPlaced", 3, V3)]

    def test_a_rename_goes_to_the_next_version_unless_told(self) -> None:
        upcasters = Upcasters()
        upcasters.rename("OrderCreated", 2, "OrderPlaced")
        assert upcasters.upcast("OrderCreated", 2, {"a": 1}) == [("OrderPlaced", 3, {"a": 1})]

    def test_a_rename_can_transform_the_data(self) -> None:
        upcasters = Upcasters()

        def drop_legacy(data: dict[str, Any]) -> dict[str, Any]:
            """The legacy flag went away with the rename."""
            data.pop("legacy")
            return data

        upcasters.rename("OrderCreated", 1, "OrderPlaced", to_version=1, transform=drop_legacy)
        stored = {"order_id": "o", "legacy": True}
        assert upcasters.upcast("OrderCreated", 1, stored) == [
            ("OrderPlaced", 1, {"order_id": "o"})
        ]
        assert stored == {"order_id": "o", "legacy": True}
        step = upcasters.step_for("OrderCreated", 1)
        assert step is not None and step.kind is StepKind.RENAME
        assert "legacy flag went away" in step.description

    def test_a_split_makes_several_events_each_carried_to_its_current_version(self) -> None:
        assert build_upcasters().upcast("OrderPlacedAndPaid", 1, V1) == [
            ("OrderPlaced", 3, V3),
            ("PaymentReceived", 1, {"order_id": "o-1", "cents": 1250}),
        ]

    def test_a_split_that_shares_one_dict_between_events_cannot_couple_them(self) -> None:
        upcasters = Upcasters()

        @upcasters.split("Pair", 1, into=[("A", 1), ("B", 1)])
        def pair(data: dict[str, Any]) -> list[StoredShape]:
            return [("A", 1, data), ("B", 1, data)]

        @upcasters.register("A", 1)
        def change_a(data: dict[str, Any]) -> dict[str, Any]:
            data["x"] = "changed"
            return data

        assert upcasters.upcast("Pair", 1, {"x": 1}) == [
            ("A", 2, {"x": "changed"}), ("B", 1, {"x": 1})
        ]

    def test_a_split_may_drop_an_event(self) -> None:
        upcasters = Upcasters()

        @upcasters.split("Retired", 1, into=[])
        def retire(data: dict[str, Any]) -> list[StoredShape]:
            return []

        assert upcasters.upcast("Retired", 1, {}) == []

    def test_a_split_returning_an_undeclared_shape_fails_naming_it(self) -> None:
        upcasters = Upcasters()

        @upcasters.split("Pair", 1, into=[("A", 1)])
        def pair(data: dict[str, Any]) -> list[StoredShape]:
            return [("A", 1, {}), ("C", 4, {})]

        with pytest.raises(UpcastFailed, match=r"'C' v4, which is not among the declared"):
            upcasters.upcast("Pair", 1, {})

    def test_a_split_returning_something_else_than_triples_fails(self) -> None:
        upcasters = Upcasters()

        @upcasters.split("Pair", 1, into=[("A", 1)])
        def pair(data: dict[str, Any]) -> Any:
            return {"A": data}

        with pytest.raises(UpcastFailed, match="not a list of"):
            upcasters.upcast("Pair", 1, {})


class TestBadSteps:
    def test_a_step_that_raises_is_named_with_the_type_and_version(self) -> None:
        upcasters = Upcasters()

        @upcasters.register("OrderPlaced", 1)
        def needs_amount(data: dict[str, Any]) -> dict[str, Any]:
            return {"cents": data["amount"]}

        with pytest.raises(UpcastFailed) as caught:
            upcasters.upcast("OrderPlaced", 1, {})
        message = str(caught.value)
        assert "needs_amount" in message and "'OrderPlaced' v1" in message
        assert "KeyError" in message
        assert isinstance(caught.value.__cause__, KeyError)

    def test_a_step_that_returns_no_dict_fails(self) -> None:
        upcasters = Upcasters()
        upcasters.register("OrderPlaced", 1)(lambda data: None)  # type: ignore[type-var]
        with pytest.raises(UpcastFailed, match="returned NoneType"):
            upcasters.upcast("OrderPlaced", 1, {})

    def test_two_steps_from_one_version_are_refused(self) -> None:
        upcasters = build_upcasters()
        with pytest.raises(DuplicateUpcaster, match=r"'OrderPlaced' v1 is already registered"):
            upcasters.register("OrderPlaced", 1)(lambda data: data)
        with pytest.raises(DuplicateUpcaster):
            upcasters.rename("OrderPlaced", 2, "Other")

    def test_a_cycle_is_refused_at_registration(self) -> None:
        upcasters = Upcasters()
        upcasters.rename("A", 1, "B", to_version=1)
        with pytest.raises(InvalidUpcasterChain, match="cycle"):
            upcasters.rename("B", 1, "A", to_version=1)

    @pytest.mark.parametrize(("name", "version"), [("", 1), ("A", 0), ("A", True), ("A", "1")])
    def test_bad_keys_are_refused(self, name: str, version: Any) -> None:
        with pytest.raises(InvalidUpcasterChain):
            Upcasters().register(name, version)

    def test_a_rename_to_the_same_name_is_refused(self) -> None:
        with pytest.raises(InvalidUpcasterChain, match="register"):
            Upcasters().rename("A", 1, "A")


class TestStartupCheck:
    def test_a_complete_setup_passes(self) -> None:
        upcasters = build_upcasters()
        upcasters.check(reader_registry(upcasters))
        assert upcasters.problems(reader_registry(upcasters)) == []

    def test_a_gap_names_the_type_and_the_versions(self) -> None:
        upcasters = Upcasters()
        upcasters.register("OrderPlaced", 1)(lambda data: data)
        registry = EventRegistry([OrderPlaced], upcaster=upcasters)  # current v3, no 2 -> 3
        with pytest.raises(MissingUpcaster) as caught:
            upcasters.check(registry)
        error = caught.value
        assert (error.event_type, error.from_version, error.current_version) == (
            "OrderPlaced", 2, 3
        )
        assert "no upcaster from 'OrderPlaced' v2 to v3" in str(error)
        assert "registered at v3" in str(error)
        assert "@upcasters.register('OrderPlaced', 2)" in str(error)

    def test_a_bumped_class_without_any_upcaster_is_reported_from_v1(self) -> None:
        upcasters = Upcasters()
        registry = EventRegistry([OrderPlaced], upcaster=upcasters)
        problems = upcasters.problems(registry)
        assert [(p.event_type, p.from_version) for p in problems  # type: ignore[attr-defined]
                ] == [("OrderPlaced", 1), ("OrderPlaced", 2)]
        with pytest.raises(MissingUpcaster) as caught:
            upcasters.check(registry)
        assert caught.value.from_version == 1
        assert any("1 more problem" in note for note in caught.value.__notes__)

    def test_versions_never_stored_need_no_upcaster(self) -> None:
        upcasters = Upcasters()
        upcasters.stored_since("OrderPlaced", 3)
        upcasters.check(EventRegistry([OrderPlaced], upcaster=upcasters))

    def test_declared_stored_versions_of_a_type_gone_away_are_checked(self) -> None:
        upcasters = build_upcasters()
        upcasters.stored_since("OrderShipped", 1)
        with pytest.raises(MissingUpcaster) as caught:
            upcasters.check(reader_registry(upcasters))
        assert (caught.value.event_type, caught.value.from_version) == ("OrderShipped", 1)
        assert "no event class is registered under 'OrderShipped'" in str(caught.value)

    def test_an_output_that_is_neither_registered_nor_upcast_further_is_a_gap(self) -> None:
        upcasters = build_upcasters()
        upcasters.rename("CouponApplied", 1, "DiscountGranted", to_version=1)
        with pytest.raises(MissingUpcaster) as caught:
            upcasters.check(reader_registry(upcasters))
        error = caught.value
        assert (error.event_type, error.from_version, error.current_version) == (
            "DiscountGranted", 1, None
        )
        assert error.reached_from == ("CouponApplied", 1)
        assert "stored 'CouponApplied' v1 events are carried there" in str(error)

    def test_a_rename_above_the_registered_version_says_to_set_to_version(self) -> None:
        upcasters = Upcasters()
        upcasters.rename("Paid", 1, "PaymentReceived")  # to v2, but v1 is registered
        with pytest.raises(InvalidUpcasterChain, match=r"to_version"):
            upcasters.check(EventRegistry([PaymentReceived], upcaster=upcasters))

    def test_a_step_from_the_current_version_would_never_run(self) -> None:
        upcasters = Upcasters()
        upcasters.register("PaymentReceived", 1)(lambda data: data)
        with pytest.raises(InvalidUpcasterChain, match=r"never applied.*schema_version to 2"):
            upcasters.check(EventRegistry([PaymentReceived], upcaster=upcasters))

    def test_the_errors_belong_to_the_eventfold_hierarchy(self) -> None:
        assert issubclass(MissingUpcaster, EventTypeError)
        assert issubclass(UpcastFailed, EventfoldError)
        assert issubclass(InvalidUpcasterChain, ValueError)


class TestIntrospection:
    def test_steps_are_listed_in_stored_order(self) -> None:
        upcasters = build_upcasters()
        assert [(s.event_type, s.version, s.kind) for s in upcasters.steps()] == [
            ("OrderCreated", 1, StepKind.RENAME),
            ("OrderPlaced", 1, StepKind.TRANSFORM),
            ("OrderPlaced", 2, StepKind.TRANSFORM),
            ("OrderPlacedAndPaid", 1, StepKind.SPLIT),
        ]
        assert len(upcasters) == 4
        assert ("OrderPlaced", 2) in upcasters
        assert list(upcasters) == upcasters.steps()

    def test_a_step_describes_itself(self) -> None:
        step = build_upcasters().step_for("OrderPlaced", 1)
        assert step is not None
        assert step.description == "Orders before v2 were all in euros."
        assert step.name.endswith("build_upcasters.<locals>.add_currency")
        assert str(step).startswith("OrderPlaced v1 -> OrderPlaced v2 (transform:")

    def test_ends_of_follows_renames_and_splits_without_data(self) -> None:
        upcasters = build_upcasters()
        assert upcasters.ends_of("OrderPlacedAndPaid", 1) == [
            ("OrderPlaced", 3), ("PaymentReceived", 1)
        ]
        assert upcasters.ends_of("OrderCreated", 1) == [("OrderPlaced", 3)]

    def test_stored_types_of_finds_the_names_a_type_was_stored_under(self) -> None:
        upcasters = build_upcasters()
        assert upcasters.stored_types_of(["OrderPlaced"]) == {
            "OrderPlaced", "OrderCreated", "OrderPlacedAndPaid"
        }
        assert upcasters.stored_types_of({"PaymentReceived"}) == {
            "PaymentReceived", "OrderPlacedAndPaid"
        }
        assert upcasters.stored_types_of([]) == set()

    def test_the_registry_accepts_it_as_its_upcaster(self) -> None:
        registry = reader_registry()
        assert isinstance(registry.upcaster, Upcasters)
