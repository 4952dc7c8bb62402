"""A property of archiving on every backend: whatever mix of appends and archives a stream
goes through, its whole history reads back unchanged with the archive, versions continue,
and the hot reads hold exactly what was not archived (the last event always among them)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventfold.eventstore import Event, EventRegistry, connect
from eventfold.eventstore.migrate import migrate
from tests.conftest import truncate_store_tables


class Ticked(Event):
    """One step of the property's stream."""

    n: int


Step = tuple[str, int]
steps = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(min_value=1, max_value=5)),
        st.tuples(st.just("archive"), st.integers(min_value=0, max_value=25)),
    ),
    min_size=1,
    max_size=12,
)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/"  # a new file per example, below
    return str(request.getfixturevalue("pg_url"))


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(script=steps)
async def test_archiving_never_loses_or_reorders_an_event(url: str, script: list[Step]) -> None:
    if url.startswith("sqlite"):
        url = f"{url}{uuid.uuid4().hex}.db"
        await migrate(url)
    elif url.startswith("postgres"):
        await truncate_store_tables(url)
    async with connect(url, EventRegistry([Ticked])) as store:
        written: list[int] = []
        archived_below = 1
        for kind, value in script:
            if kind == "append":
                first = len(written)
                await store.append("S-1", [Ticked(n=first + i) for i in range(value)])
                written += range(first, first + value)
            elif written:
                before = value or None
                end = len(written) if before is None else min(before, len(written))
                moved = await store.archive_stream("S-1", before=before)
                assert moved == max(0, end - archived_below)
                archived_below = max(archived_below, end)
        history = await store.read_stream_with_archive("S-1")
        assert [e.data["n"] for e in history] == written
        assert [e.stream_version for e in history] == list(range(1, len(written) + 1))
        hot = [e.stream_version for e in await store.read_stream("S-1")]
        assert hot == list(range(archived_below, len(written) + 1))
