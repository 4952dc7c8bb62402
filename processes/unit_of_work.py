"""A handler's commands to several aggregates, landing together: ``ctx.together()``.

::

    async with ctx.together() as unit:
        unit.send(InventoryItem, sku, reserve, undo=self.release_stock)
        unit.send(Payment, order_id, request, undo=self.void_payment)

``unit.send`` only takes the command down; when the block ends every command runs on its
freshly loaded aggregate and all their events are appended in one ``append_streams``
transaction, or none of them (docs/process-managers.md, "Commands that land together").
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from eventfold.aggregates.aggregate import Aggregate
from eventfold.eventstore.records import AppendResult
from eventfold.processes.errors import ProcessDefinitionError

A = TypeVar("A", bound=Aggregate)

Undo = str | Callable[..., Awaitable[None]]
"""A ``@compensation`` method, or its name."""


@dataclass(frozen=True, slots=True)
class SentCommand:
    """A command a handler sent: to which aggregate, what it runs, the step it records."""

    aggregate: type[Aggregate]
    id: str
    command: Callable[[Any], object]
    undo: str | None
    """The ``@compensation`` recorded as a step once the command went through."""
    data: dict[str, Any] = field(default_factory=dict)


class UnitOfWork:
    """The commands of one ``ctx.together()`` block, sent when the block ends.

    ``results`` (after the block) line up with the sends: each append's result, or None
    when its command recorded nothing or an earlier attempt already appended the unit.
    """

    def __init__(self, compensation_name: Callable[[Undo], str]) -> None:
        self._compensation_name = compensation_name
        self._commands: list[SentCommand] = []
        self._results: list[AppendResult | None] | None = None

    def send(
        self,
        aggregate: type[A],
        id: str,
        command: Callable[[A], object],
        *,
        undo: Undo | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        """Add ``command`` on the aggregate (a new one if its stream is empty) to the unit;
        ``undo`` records the step (with ``data``) for compensation once the unit went
        through. Each aggregate takes one command per unit."""
        if self._results is not None:
            raise ProcessDefinitionError(
                "this unit of work was sent already: open another ctx.together() block"
            )
        stream_id = aggregate.stream_id_for(id)
        if any(sent.aggregate.stream_id_for(sent.id) == stream_id for sent in self._commands):
            raise ProcessDefinitionError(
                f"{stream_id} is sent two commands in one unit of work: run both in one "
                "function of the aggregate"
            )
        undo_name = self._compensation_name(undo) if undo is not None else None
        self._commands.append(
            SentCommand(aggregate, id, command, undo_name, dict(data or {}))
        )

    @property
    def commands(self) -> tuple[SentCommand, ...]:
        """The commands sent, in order."""
        return tuple(self._commands)

    @property
    def results(self) -> tuple[AppendResult | None, ...]:
        """What each command appended (None: nothing, or already appended before)."""
        if self._results is None:
            raise ProcessDefinitionError(
                "the unit of work runs when its ctx.together() block ends: read its "
                "results after the block"
            )
        return tuple(self._results)

    def _sent(self, results: list[AppendResult | None]) -> None:
        self._results = results
