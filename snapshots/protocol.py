"""The port between the repository and a snapshot store.

``aggregates`` sits above ``snapshots`` in the package order, so the repository names this
Protocol and never a snapshot backend; anything that implements it plugs into the load and
save paths of ``aggregates.Repository``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An aggregate's folded state at one version of its stream.

    ``state`` is JSON-able (what ``Aggregate.snapshot_state()`` returns); ``state_version`` is
    the aggregate class's ``state_version`` when it was taken, so a snapshot of an older
    state shape is recognised and never applied to a class whose state changed.
    """

    stream_id: str
    version: int
    state_version: int
    state: dict[str, Any]


@runtime_checkable
class SnapshotStore(Protocol):
    """Where snapshots live, and the policy that decides when to take one at save time."""

    async def latest(
        self, stream_id: str, *, state_version: int, max_version: int | None = None
    ) -> Snapshot | None:
        """The newest snapshot of the stream taken at ``state_version`` and at or before
        ``max_version`` (any version when None), or None.

        A stored snapshot that cannot be read back is reported with a warning and treated
        as absent, so loading falls back to the events.
        """
        ...

    async def save(self, snapshot: Snapshot) -> None:
        """Store a snapshot (replacing, or kept beside, older ones of the stream)."""
        ...

    async def after_save(
        self,
        stream_id: str,
        *,
        previous_version: int,
        version: int,
        every: int | None,
        capture: Callable[[], Snapshot],
    ) -> None:
        """Called by the repository once events ``previous_version + 1 .. version`` are stored.

        ``every`` is the aggregate class's ``snapshot_every`` (None: no snapshots at save
        time). ``capture`` builds the snapshot of the aggregate as saved; call it only when
        the policy decides to take one, since it serializes the whole state.
        """
        ...


SnapshotFold = Callable[[str], Awaitable[Snapshot]]
"""Loads the aggregate of a stream id and captures its snapshot (not stored): what the
scheduled sweep and ``eventfold snapshots take`` call, so ``snapshots`` never imports
``aggregates``. ``aggregates.Repository.snapshot_fold(Order, ...)`` builds one."""
