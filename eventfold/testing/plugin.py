"""The pytest plugin for applications built on eventfold (entry point ``pytest11: eventfold``).

Give the tests your ``App`` as the fixture ``eventfold_app``; the plugin gives each test a
fresh store on the backend you choose, the App connected to it, and a runner of its
subscribers caught up on demand::

    @pytest.fixture
    def eventfold_app() -> App:
        return App(events=[OrderPlaced], aggregates=[Order], projections=[OrderList()])

    async def test_the_order_list(eventfold_running: Running, eventfold_caught_up) -> None:
        await eventfold_running.repository.create(Order, "1", lambda order: order.place())
        await eventfold_caught_up()  # every subscriber has handled every event so far
        ...

The backend is ``--eventfold-backend=memory|sqlite|postgresql`` (default: ``sqlite``, a
file in the test's ``tmp_path``), or override the fixture ``eventfold_backend`` (parametrize
it to run each test on several). PostgreSQL is the server of ``EVENTFOLD_TEST_DATABASE_URL``,
else a throwaway one started with the machine's ``pg_ctl``; each test gets a database of its
own. The fixtures are async: they need pytest-asyncio (``pip install 'eventfold[pytest]'``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from eventfold.app import App, Running
from eventfold.eventstore.migrate import migrate
from eventfold.projections import Runner
from eventfold.testing.postgres import NoServer, fresh_database, server_url

BACKENDS = ("memory", "sqlite", "postgresql")

CatchUp = Callable[[], Awaitable[Runner]]
"""``await caught_up()``: start the App's runner (once), wait until it has handled every
event committed so far, and return it."""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--eventfold-backend", choices=BACKENDS, default="sqlite",
        help="the event store eventfold's fixtures give each test (default: sqlite)",
    )


@pytest.fixture
def eventfold_backend(request: pytest.FixtureRequest) -> str:
    """The backend of this test's store: ``--eventfold-backend``, unless overridden."""
    backend: str = request.config.getoption("eventfold_backend")
    return backend


@pytest.fixture(scope="session")
def eventfold_postgres_server() -> Iterator[str]:
    """The DSN of a PostgreSQL server whose user may create databases (see the module)."""
    try:
        with server_url() as url:
            yield url
    except NoServer as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def eventfold_app() -> App:
    """Your application: override this fixture in your conftest.py."""
    pytest.fail(
        "eventfold's fixtures need your App: define a fixture named eventfold_app in your "
        "conftest.py that returns it",
        pytrace=False,
    )


try:
    import pytest_asyncio
except ModuleNotFoundError:  # the fixtures below say what to install when asked for

    def _needs_pytest_asyncio() -> None:
        pytest.fail(
            "eventfold's store fixtures are async and need pytest-asyncio: "
            "pip install 'eventfold[pytest]'",
            pytrace=False,
        )

    for _name in ("eventfold_url", "eventfold_running", "eventfold_caught_up"):
        globals()[f"_{_name}"] = pytest.fixture(name=_name)(_needs_pytest_asyncio)

else:

    @pytest_asyncio.fixture
    async def eventfold_url(
        eventfold_backend: str,
        request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory,
    ) -> AsyncIterator[str]:
        """The URL of a fresh, migrated store of ``eventfold_backend`` for this test."""
        if eventfold_backend == "memory":
            yield "memory://"
        elif eventfold_backend == "sqlite":
            url = f"sqlite:///{tmp_path_factory.mktemp('eventfold') / 'eventfold.db'}"
            await migrate(url)
            yield url
        elif eventfold_backend == "postgresql":
            server = request.getfixturevalue("eventfold_postgres_server")
            try:
                async with fresh_database(server) as url:
                    await migrate(url)
                    yield url
            except NoServer as exc:
                pytest.fail(str(exc), pytrace=False)
        else:
            pytest.fail(
                f"unknown eventfold backend {eventfold_backend!r}: choose one of "
                f"{', '.join(BACKENDS)}",
                pytrace=False,
            )

    @pytest_asyncio.fixture
    async def eventfold_running(eventfold_app: App, eventfold_url: str) -> AsyncIterator[Running]:
        """``eventfold_app`` connected to this test's store (closed after the test)."""
        async with eventfold_app.connect(eventfold_url) as running:
            yield running

    @pytest_asyncio.fixture
    async def eventfold_caught_up(eventfold_running: Running) -> AsyncIterator[CatchUp]:
        """``await eventfold_caught_up()``: the App's runner, caught up with every event
        committed so far (started on first use, stopped after the test)."""
        runner: Runner | None = None

        async def caught_up() -> Runner:
            nonlocal runner
            if runner is None:
                runner = eventfold_running.runner(lease_retry=0.05)
                await runner.start()
            await runner.wait_until(await eventfold_running.store.committed_head(), timeout=60)
            return runner

        try:
            yield caught_up
        finally:
            if runner is not None:
                await runner.stop()
