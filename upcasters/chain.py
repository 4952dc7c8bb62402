"""The upcaster registry: pure steps on stored JSON that carry old event versions forward.

Each step reads one stored ``(type, version)`` and produces the next shape: the same type
at ``version + 1`` (a field change), another type name (a rename), or several events (a
split). ``Upcasters.upcast`` applies steps until none is left, which is what the
``EventRegistry`` calls on every read path of the store.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from eventfold.eventstore.registry import EventRegistry, StoredShape
from eventfold.upcasters.errors import (
    DuplicateUpcaster,
    InvalidUpcasterChain,
    MissingUpcaster,
    UpcasterError,
    UpcastFailed,
)

JSONObject = dict[str, Any]
"""Stored event data: a JSON object."""

DataUpcaster = Callable[[JSONObject], JSONObject]
"""A field change: the data of version ``n`` in, the data of version ``n + 1`` out."""

SplitUpcaster = Callable[[JSONObject], Sequence[StoredShape]]
"""A split: the data of one stored event in, several ``(type, version, data)`` out."""

ShapeKey = tuple[str, int]
"""A stored event's ``(event_type, schema_version)``."""

D = TypeVar("D", bound=DataUpcaster)
S = TypeVar("S", bound=SplitUpcaster)


class StepKind(enum.StrEnum):
    """What an upcaster step does to the stored event."""

    TRANSFORM = "transform"
    RENAME = "rename"
    SPLIT = "split"


@dataclass(frozen=True, slots=True)
class UpcasterStep:
    """One registered step: the stored shape it reads and the shapes it may produce."""

    event_type: str
    version: int
    kind: StepKind
    outputs: tuple[ShapeKey, ...]
    """Every ``(type, version)`` the step may produce, in the order it declares them."""
    name: str
    """The step's function as ``module.qualname`` (or ``rename`` without a transform)."""
    description: str
    """The first line of the function's docstring, or a generated summary."""
    _run: Callable[[JSONObject], list[StoredShape]] = field(repr=False, compare=False)

    @property
    def source(self) -> ShapeKey:
        """The stored ``(type, version)`` this step reads."""
        return (self.event_type, self.version)

    def apply(self, data: JSONObject, *, copy: bool = True) -> list[StoredShape]:
        """The shapes this one step makes of ``data``; ``data`` itself is never changed
        (``copy=False``: the caller owns ``data`` alone and hands it over)."""
        # User functions get their own deep copy: the stored record (and the memory
        # backend's log) must never change because an upcaster edited its argument.
        try:
            return self._run(_copy_json(data) if copy else data)
        except UpcasterError:
            raise
        except Exception as exc:  # a user's function: say which step and which event failed
            raise UpcastFailed(
                self.event_type, self.version, self.name, f"{type(exc).__name__}: {exc}"
            ) from exc

    def __str__(self) -> str:
        targets = ", ".join(f"{name} v{version}" for name, version in self.outputs) or "nothing"
        return f"{self.event_type} v{self.version} -> {targets} ({self.kind}: {self.name})"


class Upcasters:
    """The upcasters of one application: register steps, then hand it to the EventRegistry.

    >>> upcasters = Upcasters()
    >>> @upcasters.register("OrderPlaced", 1)
    ... def add_currency(data: dict[str, object]) -> dict[str, object]:
    ...     return {**data, "currency": "EUR"}
    >>> upcasters.upcast("OrderPlaced", 1, {"total": 5})
    [('OrderPlaced', 2, {'total': 5, 'currency': 'EUR'})]

    Steps never change the data they are given. Use ``check(registry)`` when the
    application starts: it raises ``MissingUpcaster`` for a gap in any chain.
    """

    def __init__(self) -> None:
        self._steps: dict[ShapeKey, UpcasterStep] = {}
        self._stored_since: dict[str, int] = {}

    # -- registration -------------------------------------------------------------------

    def register(self, event_type: str, version: int) -> Callable[[D], D]:
        """Decorator: ``fn(data) -> data`` carries ``event_type`` from ``version`` to the next."""
        _check_key(event_type, version)
        target = (event_type, version + 1)

        def decorator(fn: D) -> D:
            name = _name_of(fn)

            def run(data: JSONObject) -> list[StoredShape]:
                out = fn(data)
                if not isinstance(out, dict):
                    raise UpcastFailed(
                        event_type, version, name,
                        f"it returned {type(out).__name__}, not the data dict of v{version + 1}",
                    )
                return [(event_type, version + 1, out)]

            self._add(UpcasterStep(
                event_type, version, StepKind.TRANSFORM, (target,), name,
                _summary(fn, f"{event_type} v{version} to v{version + 1}"), run,
            ))
            return fn

        return decorator

    def rename(
        self,
        event_type: str,
        version: int,
        new_type: str,
        *,
        to_version: int | None = None,
        transform: DataUpcaster | None = None,
    ) -> None:
        """Read stored ``event_type`` at ``version`` as ``new_type`` (at ``version + 1``).

        Pass ``to_version`` when the new type's chain starts elsewhere (for example 1 for a
        brand-new class) and ``transform`` to change the data on the way.
        """
        _check_key(event_type, version)
        target_version = version + 1 if to_version is None else to_version
        _check_key(new_type, target_version)
        if new_type == event_type:
            raise InvalidUpcasterChain(
                f"rename of {event_type!r} v{version} to the same name: use "
                f"@upcasters.register({event_type!r}, {version}) for a change within one type"
            )
        name = "rename" if transform is None else _name_of(transform)

        def run(data: JSONObject) -> list[StoredShape]:
            out = data if transform is None else transform(data)
            if not isinstance(out, dict):
                raise UpcastFailed(
                    event_type, version, name,
                    f"it returned {type(out).__name__}, not the data dict of {new_type!r}",
                )
            return [(new_type, target_version, out)]

        summary = f"renamed to {new_type} v{target_version}"
        if transform is not None:
            summary = f"{summary}: {_summary(transform, '')}".rstrip(": ")
        self._add(UpcasterStep(
            event_type, version, StepKind.RENAME, ((new_type, target_version),), name, summary,
            run,
        ))

    def split(
        self, event_type: str, version: int, *, into: Iterable[tuple[str, int]]
    ) -> Callable[[S], S]:
        """Decorator: ``fn(data) -> [(type, version, data), ...]`` makes several events of one.

        ``into`` declares every ``(type, version)`` the function may return, so that chains
        can be checked at start-up; returning anything else fails the read. Returning an
        empty list drops the stored event from what readers see.
        """
        _check_key(event_type, version)
        outputs = tuple(dict.fromkeys((str(name), int(v)) for name, v in into))
        for name, v in outputs:
            _check_key(name, v)
        allowed = set(outputs)

        def decorator(fn: S) -> S:
            fn_name = _name_of(fn)

            def run(data: JSONObject) -> list[StoredShape]:
                produced = fn(data)
                if isinstance(produced, (str, bytes, dict)) or not isinstance(produced, Sequence):
                    raise UpcastFailed(
                        event_type, version, fn_name,
                        f"it returned {type(produced).__name__}, not a list of "
                        "(type, version, data)",
                    )
                shapes: list[StoredShape] = []
                for item in produced:
                    if not (isinstance(item, (tuple, list)) and len(item) == 3
                            and isinstance(item[2], dict)):
                        raise UpcastFailed(
                            event_type, version, fn_name,
                            f"it returned {item!r}, not a (type, version, data) triple",
                        )
                    out_type, out_version, out_data = item
                    if (out_type, out_version) not in allowed:
                        raise UpcastFailed(
                            event_type, version, fn_name,
                            f"it returned {out_type!r} v{out_version}, which is not among the "
                            f"declared into={sorted(allowed)}",
                        )
                    # A split may hand one dict to several events; each gets its own copy
                    # so that a later step on one of them cannot change another.
                    shapes.append((out_type, out_version, _copy_json(out_data)))
                return shapes

            self._add(UpcasterStep(
                event_type, version, StepKind.SPLIT, outputs, fn_name,
                _summary(fn, f"split into {len(outputs)} events"), run,
            ))
            return fn

        return decorator

    def stored_since(self, event_type: str, version: int) -> None:
        """Declare the lowest version of ``event_type`` ever stored (1 unless declared).

        ``check`` then requires a chain only from that version on, and for a type that is
        no longer registered (renamed or split away) it checks the versions from there.
        """
        _check_key(event_type, version)
        self._stored_since[event_type] = version

    def _add(self, step: UpcasterStep) -> None:
        existing = self._steps.get(step.source)
        if existing is not None:
            raise DuplicateUpcaster(step.event_type, step.version, existing.name, step.name)
        cycle = self._path_back(step)
        if cycle is not None:
            route = " -> ".join(f"{name} v{v}" for name, v in cycle)
            raise InvalidUpcasterChain(
                f"upcaster {step} would close a cycle ({route}): stored events would be "
                "upcast forever; every chain must end at a registered class"
            )
        self._steps[step.source] = step

    def _path_back(self, step: UpcasterStep) -> list[ShapeKey] | None:
        """A path from one of the step's outputs back to its source, if there is one."""
        stack: list[tuple[ShapeKey, list[ShapeKey]]] = [
            (out, [step.source, out]) for out in step.outputs
        ]
        seen: set[ShapeKey] = set()
        while stack:
            node, path = stack.pop()
            if node == step.source:
                return path
            if node in seen:
                continue
            seen.add(node)
            following = self._steps.get(node)
            if following is not None:
                stack.extend((out, [*path, out]) for out in following.outputs)
        return None

    # -- reading ------------------------------------------------------------------------

    def step(self, event_type: str, schema_version: int, data: JSONObject) -> list[StoredShape]:
        """Apply only the step from ``(event_type, schema_version)``; unchanged if none."""
        found = self._steps.get((event_type, schema_version))
        if found is None:
            return [(event_type, schema_version, data)]
        return found.apply(data)

    def upcast(self, event_type: str, schema_version: int, data: JSONObject) -> list[StoredShape]:
        """Apply steps until none is left: the latest shapes of one stored event.

        A shape with no further step is returned as it is; when it is not a registered
        class, ``EventRegistry.decode`` raises ``UnknownEventType`` naming the stored type,
        version, stream and position (and a tolerant reader can skip it).
        """
        return self._upcast(event_type, schema_version, data, copy=True)

    def upcast_fresh(
        self, event_type: str, schema_version: int, data: JSONObject
    ) -> list[StoredShape]:
        """``upcast`` of data the caller owns alone (just parsed from the stored JSON): the
        first step takes it without the copy that protects data held elsewhere."""
        return self._upcast(event_type, schema_version, data, copy=False)

    def _upcast(
        self, event_type: str, schema_version: int, data: JSONObject, *, copy: bool
    ) -> list[StoredShape]:
        if (event_type, schema_version) not in self._steps:
            return [(event_type, schema_version, data)]
        out: list[StoredShape] = []
        # Depth-first with an explicit stack, so that a split's events come out in the
        # order the split returned them, each followed through its own chain. Registration
        # refuses cycles, so this always ends. Only the first step may skip the copy: what
        # a step returns may share objects with whatever the user's function holds.
        pending: list[StoredShape] = [(event_type, schema_version, data)]
        while pending:
            shape = pending.pop()
            found = self._steps.get((shape[0], shape[1]))
            if found is None:
                out.append(shape)
            else:
                pending.extend(reversed(found.apply(shape[2], copy=copy)))
                copy = True
        return out

    # -- introspection --------------------------------------------------------------------

    def step_for(self, event_type: str, schema_version: int) -> UpcasterStep | None:
        """The step registered from ``(event_type, schema_version)``, or None."""
        return self._steps.get((event_type, schema_version))

    def steps(self) -> list[UpcasterStep]:
        """Every registered step, ordered by stored type name and version."""
        return [self._steps[key] for key in sorted(self._steps)]

    def first_stored_version(self, event_type: str) -> int:
        """The lowest stored version declared with ``stored_since`` (1 if none was)."""
        return self._stored_since.get(event_type, 1)

    def ends_of(self, event_type: str, schema_version: int) -> list[ShapeKey]:
        """The ``(type, version)`` shapes a stored event ends as, found without any data."""
        ends: list[ShapeKey] = []
        stack: list[ShapeKey] = [(event_type, schema_version)]
        while stack:
            node = stack.pop()
            found = self._steps.get(node)
            if found is None:
                if node not in ends:
                    ends.append(node)
            else:
                stack.extend(reversed(found.outputs))
        return ends

    def stored_types_of(self, event_types: Iterable[str]) -> set[str]:
        """The stored type names whose events may be read as one of ``event_types``.

        The names themselves are included. A reader that filters the log by type must
        query these stored names and filter again after upcasting, or it misses events
        stored under a name that was since renamed or split.
        """
        wanted = set(event_types)
        found = set(wanted)
        for name, version in self._steps:
            if any(end[0] in wanted for end in self.ends_of(name, version)):
                found.add(name)
        return found

    def __iter__(self) -> Iterator[UpcasterStep]:
        return iter(self.steps())

    def __len__(self) -> int:
        return len(self._steps)

    def __contains__(self, key: object) -> bool:
        return key in self._steps

    # -- validation -----------------------------------------------------------------------

    def problems(self, registry: EventRegistry) -> list[UpcasterError]:
        """Every gap and dead end of the chains against ``registry``, in a stable order.

        Checked: for each registered type, every version from the first stored one (1
        unless declared with ``stored_since``) up to its current version reaches a
        registered class; every step's outputs do too; no step starts at a registered
        type's current version (the registry would never apply it).
        """
        found: list[UpcasterError] = []
        visited: set[ShapeKey] = set()
        types = sorted({cls.event_type for cls in registry})
        for name in types:
            current = registry.current_version(name)
            assert current is not None
            for version in range(self.first_stored_version(name), current):
                self._walk(registry, (name, version), (name, version), visited, found)
        for name in sorted(set(self._stored_since) - set(types)):
            # A type no longer registered (renamed or split away): every declared stored
            # version must still lead somewhere.
            last = max((v for t, v in self._steps if t == name), default=0)
            for version in range(self._stored_since[name], max(last, self._stored_since[name]) + 1):
                self._walk(registry, (name, version), (name, version), visited, found)
        for step in self.steps():
            current = registry.current_version(step.event_type)
            if current == step.version:
                found.append(InvalidUpcasterChain(
                    f"upcaster {step} is never applied: {step.event_type!r} is registered at "
                    f"v{current}, and events at their current version are read as they are; "
                    f"raise the class's schema_version to {current + 1} or remove the upcaster"
                ))
                continue
            for out in step.outputs:
                self._walk(registry, out, step.source, visited, found)
        return found

    def check(self, registry: EventRegistry) -> None:
        """Raise the first of ``problems(registry)``; call it when the application starts."""
        found = self.problems(registry)
        if found:
            first = found[0]
            if len(found) > 1:
                first.add_note(
                    f"{len(found) - 1} more problem(s):\n"
                    + "\n".join(f"- {problem}" for problem in found[1:])
                )
            raise first

    def _walk(
        self,
        registry: EventRegistry,
        start: ShapeKey,
        origin: ShapeKey,
        visited: set[ShapeKey],
        found: list[UpcasterError],
    ) -> None:
        stack = [start]
        while stack:
            node = stack.pop()
            if node in visited:
                continue
            visited.add(node)
            name, version = node
            current = registry.current_version(name)
            if current == version:
                continue
            following = self._steps.get(node)
            if following is not None:
                stack.extend(reversed(following.outputs))
            elif current is not None and version > current:
                found.append(InvalidUpcasterChain(
                    f"upcasters carry stored {origin[0]!r} v{origin[1]} events to {name!r} "
                    f"v{version}, above its registered version v{current}: raise the class's "
                    f"schema_version to {version}, or make the step produce v{current} "
                    "(for a rename: to_version=...)"
                ))
            else:
                found.append(MissingUpcaster(
                    name, version, current_version=current, reached_from=origin
                ))


def _check_key(event_type: object, version: object) -> None:
    if not isinstance(event_type, str) or not event_type:
        raise InvalidUpcasterChain(f"event type must be a non-empty string, got {event_type!r}")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InvalidUpcasterChain(
            f"schema version of {event_type!r} must be an int >= 1, got {version!r}"
        )


def _name_of(fn: Callable[..., object]) -> str:
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{module}.{qualname}" if module else qualname


def _summary(fn: Callable[..., object], default: str) -> str:
    doc = (getattr(fn, "__doc__", None) or "").strip()
    return doc.splitlines()[0].strip() if doc else default


def _copy_json(value: Any) -> Any:
    """A deep copy of JSON data (dicts, lists, scalars), faster than ``copy.deepcopy``.

    Containers are copied in C (``dict.copy``, ``list.copy``) and only nested containers
    are visited again: most events are flat, so most copies make no Python-level call per
    field (the copy ran once per upcast event of every read).
    """
    if isinstance(value, dict):
        copied = value.copy()
        for key, item in value.items():
            if isinstance(item, (dict, list)):
                copied[key] = _copy_json(item)
        return copied
    if isinstance(value, list):
        return [_copy_json(item) if isinstance(item, (dict, list)) else item for item in value]
    return value
