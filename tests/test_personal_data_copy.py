"""Moving a store holding personal data: a copy carries the keys of data subjects (a live
one's values read in the copy, a forgotten one stays forgotten), resumes with them, and is
verified; an export refuses to write values whose keys it cannot carry, or writes them
revealed for the import to seal again; a key one
store lacks or destroyed does not make another store's data read as forgotten."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventfold.eventstore import (
    FORGOTTEN,
    Event,
    EventRegistry,
    EventStore,
    PersonalData,
    SubjectForgotten,
    connect,
)
from eventfold.eventstore.cloudevents import to_cloudevent_json
from eventfold.eventstore.errors import CloudEventError, CopyMismatch, ExportRefused
from eventfold.eventstore.keys import SubjectKey, new_key_id, new_secret
from eventfold.eventstore.migrate import migrate
from eventfold.eventstore.personal import is_sealed
from eventfold.eventstore.transfer import (
    TransferProgress,
    copy_store,
    export_events,
    import_file,
)

ADA = ("Ada Lovelace", "ada@example.org")
ALAN = ("Alan Turing", "alan@example.org")


class CustomerRegistered(Event):
    customer_id: str
    name: Annotated[str, PersonalData(subject="customer_id")]
    email: Annotated[str, PersonalData(subject="customer_id")]


REGISTRY = EventRegistry([CustomerRegistered])


class Interrupted(Exception):
    """Stands for a copy killed between two batches."""


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """A source holding ADA's data and ALAN's (forgotten), and an empty, migrated target."""
    if request.param == "sqlite":
        source, target = (f"sqlite:///{tmp_path / name}" for name in ("source.db", "target.db"))
        asyncio.run(migrate(source))
        asyncio.run(migrate(target))
    else:
        source = request.getfixturevalue("pg_clean_url")
        target = request.getfixturevalue("pg_fresh_url")
    asyncio.run(_fill(source))
    return source, target


async def _fill(url: str) -> None:
    async with connect(url, REGISTRY) as store:
        for subject, (name, email) in (("ada", ADA), ("alan", ALAN)):
            await store.append(f"Customer-{subject}", [
                CustomerRegistered(customer_id=subject, name=name, email=email)
            ])
        await store.forget("alan")


@pytest.fixture
async def raw(urls: tuple[str, str]) -> AsyncIterator[tuple[EventStore, EventStore]]:
    """Both stores opened raw, as a copy opens them."""
    async with connect(urls[0], EventRegistry()) as source, connect(
        urls[1], EventRegistry()
    ) as target:
        yield source, target


async def _read(url: str) -> dict[str, tuple[str, str]]:
    """What the store at ``url`` gives each subject's personal fields."""
    async with connect(url, REGISTRY) as store:
        return {
            r.data["customer_id"]: (r.data["name"], r.data["email"])
            for r in await store.read_all()
        }


async def test_a_copy_carries_the_keys_the_forgotten_one_stays_forgotten(
    urls: tuple[str, str], raw: tuple[EventStore, EventStore]
) -> None:
    result = await copy_store(*raw)
    assert (result.events, result.keys) == (2, 2)
    assert await _read(urls[1]) == {"ada": ADA, "alan": (FORGOTTEN, FORGOTTEN)}
    async with connect(urls[1], REGISTRY) as target:
        with pytest.raises(SubjectForgotten):
            await target.append("Customer-alan", [
                CustomerRegistered(customer_id="alan", name=ALAN[0], email=ALAN[1])
            ])
    again = await copy_store(*raw)
    assert (again.written, again.events, again.keys) == (0, 2, 2)


async def test_an_interrupted_copy_has_its_keys_and_the_resumed_one_forgets_as_the_source(
    urls: tuple[str, str], raw: tuple[EventStore, EventStore]
) -> None:
    def stop_after_one(report: TransferProgress) -> None:
        raise Interrupted

    with pytest.raises(Interrupted):
        await copy_store(*raw, batch_size=1, on_progress=stop_after_one)
    assert await _read(urls[1]) == {"ada": ADA}  # the copied prefix reads whole
    await raw[0].forget("ada")  # in the source, before the copy goes on
    result = await copy_store(*raw, batch_size=1)
    assert (result.written, result.events, result.keys) == (1, 2, 2)
    assert await raw[1].keys.secrets([key.key_id for key in await raw[0].keys.page()]) == {}


async def test_a_target_holding_another_key_of_a_subject_fails_the_verification(
    raw: tuple[EventStore, EventStore],
) -> None:
    source, target = raw
    await target.forget("ada")  # a key of the target's own, forgotten
    with pytest.raises(CopyMismatch, match="keys of data subjects but they differ"):
        await copy_store(source, target)


async def test_a_store_holding_keys_is_exported_only_revealed(
    raw: tuple[EventStore, EventStore],
) -> None:
    file = io.BytesIO()
    with pytest.raises(ExportRefused, match="--reveal-personal-data"):
        await export_events(raw[0], file)
    assert file.getvalue() == b""
    assert (await export_events(raw[1], file)).events == 0  # no personal data: exported
    await raw[0].forget("ada")  # now only forgotten data, which needs no key: exported
    assert (await export_events(raw[0], file)).events == 2
    assert b"Ada" not in file.getvalue() and b"ciphertext" not in file.getvalue()


async def test_a_revealed_export_imports_sealed_again_and_forgotten_stays_forgotten(
    urls: tuple[str, str], raw: tuple[EventStore, EventStore]
) -> None:
    source, target = raw
    file = io.BytesIO()
    exported = await export_events(source, file, reveal_personal_data=True)
    lines = file.getvalue().splitlines()
    assert ADA[0].encode() in lines[0] and b"ciphertext" not in file.getvalue()
    assert ALAN[0].encode() not in lines[1]
    imported = await import_file(lines, target, batch_size=1)
    assert (imported.events, imported.checksum) == (2, exported.checksum)
    stored = await target.read_all()
    assert all(is_sealed(stored[0].data[field]) for field in ("name", "email"))
    assert await _read(urls[1]) == {"ada": ADA, "alan": (FORGOTTEN, FORGOTTEN)}
    async with connect(urls[1], REGISTRY) as reader:
        with pytest.raises(SubjectForgotten):
            await reader.append("Customer-alan", [
                CustomerRegistered(customer_id="alan", name=ALAN[0], email=ALAN[1])
            ])
    again = await import_file(lines, target)
    assert (again.written, again.events, again.checksum) == (0, 2, exported.checksum)


async def test_an_import_refuses_sealed_values_whose_keys_are_not_in_the_file(
    raw: tuple[EventStore, EventStore],
) -> None:
    source, target = raw
    lines = [to_cloudevent_json(record) for record in await source.read_all()]
    with pytest.raises(CloudEventError, match="line 1: field 'name' is a sealed personal"):
        await import_file(lines, target)
    assert await target.read_all() == []


async def test_a_key_one_store_lacks_does_not_make_anothers_data_read_as_forgotten(
    urls: tuple[str, str], raw: tuple[EventStore, EventStore]
) -> None:
    source, target = raw
    await target.import_events(await source.read_all())  # the events without their keys
    assert await _read(urls[1]) == {
        "ada": (FORGOTTEN, FORGOTTEN), "alan": (FORGOTTEN, FORGOTTEN),
    }
    assert (await _read(urls[0]))["ada"] == ADA


async def test_a_forget_in_one_copy_leaves_the_other_copy_readable_in_the_same_process(
    urls: tuple[str, str], raw: tuple[EventStore, EventStore]
) -> None:
    await copy_store(*raw)
    async with connect(urls[0], REGISTRY) as source, connect(urls[1], REGISTRY) as target:
        assert (await target.read_all())[0].data["name"] == ADA[0]  # its key is cached now
        await source.forget("ada")
        await asyncio.sleep(0)
        assert (await source.read_all())[0].data["name"] == FORGOTTEN
        assert (await target.read_all())[0].data["name"] == ADA[0]


SUBJECTS = st.sampled_from(["a", "b", "c", "d", "e"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    given_keys=st.dictionaries(SUBJECTS, st.booleans()),
    held=st.dictionaries(SUBJECTS, st.sampled_from(["same", "same-forgotten", "other"])),
    url=st.sampled_from(["memory://", "sqlite://"]),
)
def test_importing_keys_twice_is_once_and_forgetting_is_final(
    given_keys: dict[str, bool], held: dict[str, str], url: str
) -> None:
    """``given_keys``: subject -> forgotten in the source; ``held``: what the target holds
    for a subject before the import (the same key, the same key forgotten, another key)."""
    keys = {
        subject: SubjectKey(subject, new_key_id(), None if forgotten else new_secret())
        for subject, forgotten in given_keys.items()
    }

    async def story() -> None:
        async with connect(url, EventRegistry()) as store:
            before: dict[str, SubjectKey] = {}
            for subject, what in held.items():
                key = keys.get(subject)
                if what == "other" or key is None:
                    await store.keys.create(subject)
                else:
                    await store.keys.import_keys([key])
                    if what == "same-forgotten":
                        await store.keys.destroy(subject)
                found = await store.keys.find(subject)
                assert found is not None
                before[subject] = found
            await store.keys.import_keys(list(keys.values()))
            await store.keys.import_keys(list(keys.values()))
            after = await store.keys.page()
            expected = {**keys, **before}
            for subject, key in before.items():
                given = keys.get(subject)
                if given is not None and given.key_id == key.key_id and given.secret is None:
                    expected[subject] = SubjectKey(subject, key.key_id, None)
            assert after == [expected[subject] for subject in sorted(expected)]

    asyncio.run(story())
