"""given/when/then specifications for aggregates.

    scenario(Order, "7").given(OrderPlaced(...)).when(lambda o: o.ship()).then(OrderShipped(...))
    scenario(Order, "7").given(...).when(lambda o: o.ship()).then_raises(OrderNotPlaced)

The scenario folds the ``given`` events in process (no store, no event loop, so it runs in
sync and async tests alike), after a JSON round trip like the store's, then runs the
command and compares what it recorded with what is expected, showing both on failure.
"""

from __future__ import annotations

import copy
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

import pydantic

from eventfold.aggregates.aggregate import Aggregate, check_aggregate
from eventfold.eventstore.event import Event
from eventfold.eventstore.registry import EventRegistry

A = TypeVar("A", bound=Aggregate)
ErrorT = TypeVar("ErrorT", bound=BaseException)


def scenario(
    aggregate: type[A], id: str = "1", *, registry: EventRegistry | None = None
) -> Scenario[A]:
    """Start a specification of ``aggregate`` with the given id.

    With ``registry``, the aggregate's handlers and every event are checked against it,
    as the store would.
    """
    if registry is not None:
        check_aggregate(aggregate, registry)
    return Scenario(aggregate, id, registry)


@dataclass(frozen=True)
class Scenario(Generic[A]):
    """An immutable specification: each step returns a new scenario, so a common ``given``
    can be shared by several tests."""

    aggregate: type[A]
    id: str = "1"
    registry: EventRegistry | None = None
    history: tuple[Event, ...] = ()
    command: Callable[[A], object] | None = None

    def given(self, *events: Event) -> Scenario[A]:
        """These events are already stored in the aggregate's stream, in order."""
        for event in events:
            if not isinstance(event, Event):
                raise TypeError(f"given() takes events, got {type(event).__name__}")
        return replace(self, history=self.history + events)

    def when(self, command: Callable[[A], object]) -> Scenario[A]:
        """Run this command on the aggregate loaded from the ``given`` events."""
        return replace(self, command=command)

    def then(self, *expected: Event) -> A:
        """Assert that the command succeeded and recorded exactly ``expected``, in order.

        Returns the aggregate after the command, for assertions on its state.
        """
        __tracebackhide__ = True
        aggregate = self._load()
        try:
            self._run(aggregate)
        except Exception as exc:
            raise AssertionError(
                f"{self._name()}: expected the command to record\n{_listing(expected)}\n"
                f"but it raised {type(exc).__qualname__}: {exc}"
            ) from exc
        actual = tuple(aggregate.pending_events)
        if actual != expected:
            raise AssertionError(
                f"{self._name()}: the command recorded other events than expected\n"
                f"expected:\n{_listing(expected)}\nactual:\n{_listing(actual)}\n"
                f"{_first_difference(expected, actual)}"
            )
        for event in actual:
            self._stored(event, "recorded")
        return aggregate

    def then_nothing(self) -> A:
        """Assert that the command succeeded and recorded no event."""
        __tracebackhide__ = True
        return self.then()

    def then_raises(self, error: type[ErrorT], match: str | None = None) -> ErrorT:
        """Assert that the command raised ``error`` (its message matching the regular
        expression ``match``, if given) and left the aggregate as it was: nothing pending,
        state unchanged. Returns the error."""
        __tracebackhide__ = True
        aggregate = self._load()
        before = copy.deepcopy(vars(aggregate))
        try:
            self._run(aggregate)
        except error as exc:
            if match is not None and not re.search(match, str(exc)):
                raise AssertionError(
                    f"{self._name()}: {type(exc).__qualname__} was raised, but its message "
                    f"{str(exc)!r} does not match {match!r}"
                ) from exc
            if aggregate.pending_events:
                raise AssertionError(
                    f"{self._name()}: the command raised {type(exc).__qualname__} but left "
                    f"events pending:\n{_listing(aggregate.pending_events)}"
                ) from exc
            if vars(aggregate) != before:
                raise AssertionError(
                    f"{self._name()}: the command raised {type(exc).__qualname__} but changed "
                    f"the state\nbefore: {before!r}\nafter:  {vars(aggregate)!r}"
                ) from exc
            return exc
        except Exception as exc:
            raise AssertionError(
                f"{self._name()}: expected {error.__qualname__}, but the command raised "
                f"{type(exc).__qualname__}: {exc}"
            ) from exc
        raise AssertionError(
            f"{self._name()}: expected {error.__qualname__}, but the command succeeded and "
            f"recorded\n{_listing(aggregate.pending_events)}"
        )

    # --- running --------------------------------------------------------------------------

    def _name(self) -> str:
        return f"{self.aggregate.__qualname__} {self.aggregate.stream_id_for(self.id)!r}"

    def _load(self) -> A:
        __tracebackhide__ = True
        if self.command is None:
            raise TypeError("call .when(command) before .then(...) or .then_raises(...)")
        stored = [
            self._stored(event, f"given event #{number}")
            for number, event in enumerate(self.history, start=1)
        ]
        return self.aggregate.from_events(self.id, stored)

    def _run(self, aggregate: A) -> None:
        assert self.command is not None
        result = self.command(aggregate)
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()
            raise TypeError(
                "the scenario's command returned an awaitable: commands on aggregates are "
                "synchronous (do I/O before calling them)"
            )

    def _stored(self, event: Event, what: str) -> Event:
        """The event as a reader would get it back from the store."""
        __tracebackhide__ = True
        if self.registry is not None:
            self.registry.check_registered(event)
        try:
            back = type(event).model_validate_json(event.model_dump_json())
        except (pydantic.ValidationError, ValueError) as exc:
            raise AssertionError(
                f"{self._name()}: {what} {event!r} does not survive storage as JSON: {exc}"
            ) from exc
        if back != event:
            raise AssertionError(
                f"{self._name()}: {what} changes when stored as JSON\n"
                f"before: {event!r}\nafter:  {back!r}"
            )
        return back


def _listing(events: tuple[Event, ...]) -> str:
    if not events:
        return "  (no events)"
    return "\n".join(f"  {number}. {event!r}" for number, event in enumerate(events, start=1))


def _first_difference(expected: tuple[Event, ...], actual: tuple[Event, ...]) -> str:
    for number, (want, got) in enumerate(zip(expected, actual, strict=False), start=1):
        if want == got:
            continue
        if type(want) is not type(got):
            return (
                f"first difference at #{number}: expected {type(want).__qualname__}, "
                f"got {type(got).__qualname__}"
            )
        fields = _differing_fields(want, got)
        return f"first difference at #{number} ({type(want).__qualname__}): {fields}"
    if len(expected) > len(actual):
        return f"{len(expected) - len(actual)} expected event(s) missing at the end"
    return f"{len(actual) - len(expected)} unexpected event(s) at the end"


def _differing_fields(want: Event, got: Event) -> str:
    expected: dict[str, Any] = dict(want)
    actual: dict[str, Any] = dict(got)
    return ", ".join(
        f"{name}: expected {expected.get(name)!r}, got {actual.get(name)!r}"
        for name in expected
        if expected.get(name) != actual.get(name)
    )
