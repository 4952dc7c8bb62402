"""Upcasters: carry stored events of old schema versions forward, and guard schema changes.

Register pure steps on stored JSON in an ``Upcasters`` object, hand it to the
``EventRegistry`` as ``upcaster=``, and call ``upcasters.check(registry)`` when the
application starts. ``catalog_markdown`` / ``catalog_json`` describe every registered
event type; ``lock_schemas`` and ``check_schemas`` keep stored events readable across
schema changes (the ``eventfold catalog`` and ``eventfold schemas`` commands call them).
"""

from eventfold.upcasters import catalog, schemas
from eventfold.upcasters.catalog import (
    CatalogEntry,
    catalog_dict,
    catalog_json,
    catalog_markdown,
    describe,
)
from eventfold.upcasters.chain import (
    DataUpcaster,
    JSONObject,
    ShapeKey,
    SplitUpcaster,
    StepKind,
    Upcasters,
    UpcasterStep,
)
from eventfold.upcasters.errors import (
    DuplicateUpcaster,
    InvalidUpcasterChain,
    MissingUpcaster,
    SchemaLockError,
    UpcasterError,
    UpcastFailed,
)
from eventfold.upcasters.schemas import Incompatibility, dumps_lock, read_lock, write_lock
from eventfold.upcasters.schemas import check as check_schemas
from eventfold.upcasters.schemas import lock as lock_schemas

__all__ = [
    "CatalogEntry",
    "DataUpcaster",
    "DuplicateUpcaster",
    "Incompatibility",
    "InvalidUpcasterChain",
    "JSONObject",
    "MissingUpcaster",
    "SchemaLockError",
    "ShapeKey",
    "SplitUpcaster",
    "StepKind",
    "UpcastFailed",
    "UpcasterError",
    "UpcasterStep",
    "Upcasters",
    "catalog",
    "catalog_dict",
    "catalog_json",
    "catalog_markdown",
    "check_schemas",
    "describe",
    "dumps_lock",
    "lock_schemas",
    "read_lock",
    "schemas",
    "write_lock",
]
