"""The schema lock: the registered JSON Schemas as committed, and the compatibility check.

``lock(registry)`` records each type's version and JSON Schema; users commit it (written
by ``eventfold schemas lock``). ``check(registry, upcasters, locked)`` compares today's
classes with it and lists every change that would break reading events already stored:
a field removed, a field's type changed, a required field added without a default, a
field made required, allowed values or constraints narrowed. Such a change is fine only
with a version bump and an upcaster chain from the locked version; adding an optional
field (one with a default) is always fine.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eventfold.eventstore.registry import EventRegistry
from eventfold.upcasters.chain import Upcasters
from eventfold.upcasters.errors import SchemaLockError

LOCK_FORMAT = 1
"""The version of the lock file's own layout, stored under ``eventfold_schema_lock``."""

_ANNOTATIONS = frozenset({
    "title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly",
    "$comment",
})
_LOWER_BOUNDS = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
_UPPER_BOUNDS = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")


@dataclass(frozen=True, slots=True)
class Incompatibility:
    """One change that stored events of ``event_type`` at ``version`` would not survive."""

    event_type: str
    version: int
    """The locked version: the one whose stored events are at risk."""
    field: str | None
    """The field's path (``lines[].sku``), or None for a change of the whole type."""
    change: str
    """What changed, e.g. ``type changed from integer to string``."""
    remedy: str
    """What to do about it."""

    def __str__(self) -> str:
        where = f" field {self.field!r}" if self.field else ""
        return f"{self.event_type} v{self.version}:{where} {self.change}: {self.remedy}"


def lock(registry: EventRegistry) -> dict[str, Any]:
    """The JSON-able lock of every registered type: its version and JSON Schema."""
    return {
        "eventfold_schema_lock": LOCK_FORMAT,
        "events": {
            cls.event_type: {"version": cls.schema_version, "schema": cls.model_json_schema()}
            for cls in sorted(registry, key=lambda c: c.event_type)
        },
    }


def dumps_lock(registry: EventRegistry) -> str:
    """The lock as the text ``write_lock`` writes: sorted keys, so diffs stay small."""
    return json.dumps(lock(registry), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_lock(registry: EventRegistry, path: Path | str) -> dict[str, Any]:
    """Write the registry's lock to ``path`` and return it."""
    text = dumps_lock(registry)
    Path(path).write_text(text, encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def read_lock(path: Path | str) -> dict[str, Any]:
    """Read and validate a lock file; raise ``SchemaLockError`` saying what is wrong."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise SchemaLockError(path, "does not exist") from exc
    except OSError as exc:
        raise SchemaLockError(path, f"cannot be read ({exc.strerror})") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SchemaLockError(path, f"is not JSON ({exc.msg} at line {exc.lineno})") from exc
    _locked_events(data, path)
    assert isinstance(data, dict)
    return data


def check(
    registry: EventRegistry, upcasters: Upcasters | None, locked: Mapping[str, Any]
) -> list[Incompatibility]:
    """Every incompatible change of the registered schemas against the ``locked`` ones.

    An empty list means events stored under the lock can still be read. Types registered
    since the lock was written are not reported: nothing of them is stored yet.
    """
    found: list[Incompatibility] = []
    for name, (version, old_schema) in sorted(_locked_events(locked, "(lock)").items()):
        current = registry.current_version(name)
        if current is None:
            gap = _chain_gap(registry, upcasters, name, version)
            if gap is not None:
                found.append(Incompatibility(
                    name, version, None, f"is no longer registered and {gap}",
                    f"register its class again, or an upcaster (rename or split) from v{version}",
                ))
        elif current < version:
            found.append(Incompatibility(
                name, version, None, f"version went down from v{version} to v{current}",
                f"stored v{version} events cannot be read as v{current}; restore "
                f"schema_version = {version} or higher",
            ))
        elif current > version:
            gap = _chain_gap(registry, upcasters, name, version)
            if gap is not None:
                found.append(Incompatibility(
                    name, version, None, f"version was raised to v{current} but {gap}",
                    f"register the missing upcaster so that v{version} events reach v{current}",
                ))
        else:
            cls = registry.class_for(name)
            assert cls is not None
            remedy = (
                f"changed without a version bump; raise schema_version to {version + 1} and "
                f"register an upcaster from v{version}, or undo the change"
            )
            for path, change in _Comparison(old_schema, cls.model_json_schema()).run():
                found.append(Incompatibility(name, version, path or None, change, remedy))
    return found


def _locked_events(locked: object, path: Path | str) -> dict[str, tuple[int, dict[str, Any]]]:
    """The lock's ``{type: (version, schema)}``, or ``SchemaLockError`` naming the fault."""
    if not isinstance(locked, Mapping) or locked.get("eventfold_schema_lock") != LOCK_FORMAT:
        raise SchemaLockError(
            path, f"is not an eventfold schema lock of format {LOCK_FORMAT} "
            "(no \"eventfold_schema_lock\": 1 at the top)",
        )
    events = locked.get("events")
    if not isinstance(events, Mapping):
        raise SchemaLockError(path, "has no \"events\" object")
    out: dict[str, tuple[int, dict[str, Any]]] = {}
    for name, entry in events.items():
        version = entry.get("version") if isinstance(entry, Mapping) else None
        schema = entry.get("schema") if isinstance(entry, Mapping) else None
        if (not isinstance(version, int) or isinstance(version, bool) or version < 1
                or not isinstance(schema, dict)):
            raise SchemaLockError(
                path, f"has a malformed entry for {name!r} (expected a version >= 1 and a schema)"
            )
        out[str(name)] = (version, schema)
    return out


def _chain_gap(
    registry: EventRegistry, upcasters: Upcasters | None, name: str, version: int
) -> str | None:
    """Why stored ``name`` v``version`` events would not reach a registered class, if so."""
    ends = [(name, version)] if upcasters is None else upcasters.ends_of(name, version)
    for end_type, end_version in ends:
        if registry.current_version(end_type) == end_version:
            continue
        if (end_type, end_version) == (name, version):
            return f"there is no upcaster from v{version}"
        return (
            f"its upcaster chain from v{version} stops at {end_type!r} v{end_version}, "
            "which is not a registered class"
        )
    return None


class _Comparison:
    """Lists what an old JSON Schema accepts that a new one does not, per field path.

    Conservative by design: a change it cannot prove harmless is reported, since a false
    alarm costs a version bump while a miss costs unreadable history.
    """

    def __init__(self, old_root: dict[str, Any], new_root: dict[str, Any]) -> None:
        self.old_root = old_root
        self.new_root = new_root
        self.old_defs: dict[str, Any] = old_root.get("$defs", {})
        self.new_defs: dict[str, Any] = new_root.get("$defs", {})
        # Pairs of definitions under comparison: recursive models must not recurse forever.
        self.active: set[tuple[str | None, str | None]] = set()

    def run(self) -> list[tuple[str, str]]:
        return _unique(self.compare(self.old_root, self.new_root, ""))

    def compare(self, old: dict[str, Any], new: dict[str, Any], path: str) -> list[tuple[str, str]]:
        old, old_ref = _resolve(old, self.old_defs)
        new, new_ref = _resolve(new, self.new_defs)
        key = (old_ref, new_ref)
        if old_ref is not None or new_ref is not None:
            if key in self.active:
                return []
            self.active.add(key)
        try:
            return self._compare(old, new, path)
        finally:
            self.active.discard(key)

    def _compare(
        self, old: dict[str, Any], new: dict[str, Any], path: str
    ) -> list[tuple[str, str]]:
        old_branches = _branches(old, self.old_defs)
        new_branches = _branches(new, self.new_defs)
        if len(old_branches) == 1 and len(new_branches) == 1:
            return self._compare_single(old_branches[0], new_branches[0], path)
        problems: list[tuple[str, str]] = []
        for branch in old_branches:
            results = [self._compare_single(branch, other, path) for other in new_branches]
            if any(not result for result in results):
                continue  # some alternative of the new schema accepts this old alternative
            pairs = list(zip(new_branches, results, strict=True))
            # The closest alternative explains the change best: the same definition, else
            # the same JSON type (a union member that gained a required field, say).
            similar = [result for other, result in pairs if _kind(other) == _kind(branch)]
            if not similar:
                types = self._types_of(branch, self.old_defs)
                similar = [
                    result for other, result in pairs
                    if types and self._types_of(other, self.new_defs) == types
                ]
            if similar:
                closest: list[tuple[str, str]] = min(similar, key=len)
                problems.extend(closest)
            else:
                problems.append((path, self._type_changed(old, new)))
                break
        return problems

    def _compare_single(
        self, old: dict[str, Any], new: dict[str, Any], path: str
    ) -> list[tuple[str, str]]:
        if old.get("$ref") or new.get("$ref"):
            return self.compare(old, new, path)
        if _accepts_anything(new):
            return []
        if _accepts_anything(old):
            return [(path, f"type changed from any value to {_describe(new)}")]
        old_types, new_types = _types(old), _types(new)
        if old_types and new_types and not all(
            kind in new_types or (kind == "integer" and "number" in new_types)
            for kind in old_types
        ):
            return [(path, self._type_changed(old, new))]
        problems: list[tuple[str, str]] = []
        new_values = _values(new)
        if new_values is not None:
            old_values = _values(old)
            if old_values is None:
                problems.append((path, f"values restricted to {_show(new_values)}"))
            else:
                dropped = [value for value in old_values if value not in new_values]
                if dropped:
                    problems.append((path, f"no longer allows {_show(dropped)}"))
        if new.get("format") and new.get("format") != old.get("format"):
            problems.append(
                (path, f"format changed from {old.get('format') or 'none'} to {new['format']}")
            )
        problems.extend(_tightened(old, new, path))
        if "properties" in old or "properties" in new:
            problems.extend(self._compare_fields(old, new, path))
        problems.extend(self._compare_containers(old, new, path))
        return problems

    def _compare_fields(
        self, old: dict[str, Any], new: dict[str, Any], path: str
    ) -> list[tuple[str, str]]:
        old_fields: dict[str, Any] = old.get("properties", {})
        new_fields: dict[str, Any] = new.get("properties", {})
        old_required = set(old.get("required", ()))
        new_required = set(new.get("required", ()))
        problems: list[tuple[str, str]] = []
        for name, schema in old_fields.items():
            where = _join(path, name)
            if name not in new_fields:
                problems.append((where, "removed"))
                continue
            if name in new_required and name not in old_required:
                problems.append((where, "became required (stored events may lack it)"))
            problems.extend(self.compare(schema, new_fields[name], where))
        for name in new_fields:
            if name not in old_fields and name in new_required:
                problems.append((_join(path, name), "added as a required field without a default"))
        return problems

    def _compare_containers(
        self, old: dict[str, Any], new: dict[str, Any], path: str
    ) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        old_extra, new_extra = old.get("additionalProperties"), new.get("additionalProperties")
        if isinstance(old_extra, dict) and isinstance(new_extra, dict):
            problems.extend(self.compare(old_extra, new_extra, f"{path}[*]"))
        elif isinstance(old_extra, dict) and new_extra is False and not _accepts_nothing(old_extra):
            problems.append((path, "no longer accepts arbitrary keys"))
        if "items" in new and isinstance(new["items"], dict):
            old_items = old.get("items", {}) if isinstance(old.get("items", {}), dict) else {}
            problems.extend(self.compare(old_items, new["items"], f"{path}[]"))
        old_prefix, new_prefix = old.get("prefixItems"), new.get("prefixItems")
        if isinstance(old_prefix, list) and isinstance(new_prefix, list):
            if len(old_prefix) != len(new_prefix):
                problems.append(
                    (path, f"tuple length changed from {len(old_prefix)} to {len(new_prefix)}")
                )
            for index, (a, b) in enumerate(zip(old_prefix, new_prefix, strict=False)):
                problems.extend(self.compare(a, b, f"{path}[{index}]"))
        return problems

    @staticmethod
    def _types_of(schema: dict[str, Any], defs: dict[str, Any]) -> set[str]:
        return _types(_resolve(schema, defs)[0])

    @staticmethod
    def _type_changed(old: dict[str, Any], new: dict[str, Any]) -> str:
        return f"type changed from {_describe(old)} to {_describe(new)}"


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The schema with a ``$ref`` (or a lone ``allOf``) replaced by what it points to."""
    all_of = schema.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1 and isinstance(all_of[0], dict):
        schema = {**{k: v for k, v in schema.items() if k != "allOf"}, **all_of[0]}
    ref = schema.get("$ref")
    if not isinstance(ref, str):
        return schema, None
    name = ref.rsplit("/", 1)[-1]
    target = defs.get(name, {})
    siblings = {k: v for k, v in schema.items() if k != "$ref"}
    return {**target, **siblings}, name


def _branches(schema: dict[str, Any], defs: dict[str, Any]) -> list[dict[str, Any]]:
    """The alternatives of a union schema, flattened; a single schema is its own one."""
    options = schema.get("anyOf", schema.get("oneOf"))
    if not isinstance(options, list) or not options:
        return [schema]
    out: list[dict[str, Any]] = []
    for option in options:
        resolved, _ = _resolve(option, defs) if isinstance(option, dict) else ({}, None)
        if "anyOf" in resolved or "oneOf" in resolved:
            out.extend(_branches(resolved, defs))
        else:
            # Keep the $ref itself so that the comparison can guard against recursion.
            out.append(option if isinstance(option, dict) else {})
    return out


def _accepts_anything(schema: dict[str, Any]) -> bool:
    return all(key in _ANNOTATIONS for key in schema)


def _accepts_nothing(schema: dict[str, Any]) -> bool:
    return schema.get("not") == {}


def _types(schema: dict[str, Any]) -> set[str]:
    kind = schema.get("type")
    if isinstance(kind, str):
        return {kind}
    if isinstance(kind, list):
        return {str(item) for item in kind}
    values = _values(schema)
    if values is not None:
        return {_json_type(value) for value in values}
    if "properties" in schema or "additionalProperties" in schema:
        return {"object"}
    if "items" in schema or "prefixItems" in schema:
        return {"array"}
    return set()


def _values(schema: dict[str, Any]) -> list[Any] | None:
    if "const" in schema:
        return [schema["const"]]
    enum = schema.get("enum")
    return list(enum) if isinstance(enum, list) else None


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _kind(schema: dict[str, Any]) -> str:
    """A coarse label of a union alternative: a definition's name or the JSON type."""
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return ref.rsplit("/", 1)[-1]
    return ",".join(sorted(_types(schema))) or "any"


def _tightened(old: dict[str, Any], new: dict[str, Any], path: str) -> Iterator[tuple[str, str]]:
    for key in _LOWER_BOUNDS:
        if key in new and (key not in old or new[key] > old[key]):
            yield path, f"constraint {key} tightened from {old.get(key, 'none')} to {new[key]}"
    for key in _UPPER_BOUNDS:
        if key in new and (key not in old or new[key] < old[key]):
            yield path, f"constraint {key} tightened from {old.get(key, 'none')} to {new[key]}"
    for key in ("pattern", "multipleOf"):
        if key in new and new[key] != old.get(key):
            yield path, f"constraint {key} changed from {old.get(key, 'none')} to {new[key]}"


def _describe(schema: dict[str, Any]) -> str:
    """A short human name of a schema: ``integer``, ``array of Line``, ``string | null``."""
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return ref.rsplit("/", 1)[-1]
    options = schema.get("anyOf", schema.get("oneOf"))
    if isinstance(options, list) and options:
        return " | ".join(_describe(option) for option in options)
    values = _values(schema)
    if values is not None:
        return " | ".join(json.dumps(value) for value in values)
    if _accepts_anything(schema):
        return "any value"
    types = _types(schema)
    if types == {"array"} and isinstance(schema.get("items"), dict):
        return f"array of {_describe(schema['items'])}"
    if types == {"object"} and isinstance(schema.get("additionalProperties"), dict):
        return f"object of {_describe(schema['additionalProperties'])}"
    text = " | ".join(sorted(types)) or "any value"
    if schema.get("format"):
        text = f"{text} ({schema['format']})"
    return text


def _show(values: list[Any]) -> str:
    return ", ".join(json.dumps(value) for value in values)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _unique(items: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return list(dict.fromkeys(items))
