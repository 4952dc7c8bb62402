"""Errors of upcaster chains and schema locks: each says what is wrong and what to do."""

from __future__ import annotations

from pathlib import Path

from eventfold.eventstore.errors import EventfoldError, EventTypeError


class UpcasterError(EventTypeError):
    """Base of the errors about upcasters and their chains."""


class DuplicateUpcaster(UpcasterError, ValueError):
    """Two upcasters were registered for the same stored type and version."""

    def __init__(self, event_type: str, version: int, existing: str, new: str) -> None:
        self.event_type = event_type
        self.version = version
        super().__init__(
            f"an upcaster from {event_type!r} v{version} is already registered ({existing}); "
            f"cannot add {new}: one stored version has exactly one step, so merge the two"
        )


class MissingUpcaster(UpcasterError):
    """A stored (type, version) has no step towards a registered class.

    Raised by ``Upcasters.check`` at start-up, so that a gap in a chain is an error when
    the application starts rather than when an old event is first read.
    """

    def __init__(
        self,
        event_type: str,
        from_version: int,
        *,
        current_version: int | None = None,
        reached_from: tuple[str, int] | None = None,
    ) -> None:
        self.event_type = event_type
        self.from_version = from_version
        self.current_version = current_version
        self.reached_from = reached_from
        if current_version is not None:
            what = (
                f"no upcaster from {event_type!r} v{from_version} to v{from_version + 1}: "
                f"{event_type!r} is registered at v{current_version}"
            )
        else:
            what = (
                f"no upcaster from {event_type!r} v{from_version}, and no event class is "
                f"registered under {event_type!r}"
            )
        origin = ""
        if reached_from is not None and reached_from != (event_type, from_version):
            origin = f" (stored {reached_from[0]!r} v{reached_from[1]} events are carried there)"
        super().__init__(
            f"{what}{origin}, so stored events of that version cannot be read: register "
            f"`@upcasters.register({event_type!r}, {from_version})` (or a rename or split "
            f"from that version), or register the class of {event_type!r} v{from_version}"
        )


class InvalidUpcasterChain(UpcasterError, ValueError):
    """An upcaster is registered in a way that can never work (a cycle, an unused step)."""


class UpcastFailed(UpcasterError):
    """An upcaster function raised, or returned something that is not stored JSON."""

    def __init__(self, event_type: str, version: int, step: str, reason: str) -> None:
        self.event_type = event_type
        self.version = version
        self.step = step
        super().__init__(
            f"upcaster {step} failed on a stored {event_type!r} v{version} event: {reason}; "
            "fix the upcaster so that it accepts every stored shape of that version"
        )


class SchemaLockError(EventfoldError, ValueError):
    """A schema lock file is missing, unreadable or not in the expected format."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        super().__init__(
            f"schema lock {str(path)!r} {reason}: write it with `eventfold schemas lock` and "
            "commit it"
        )
