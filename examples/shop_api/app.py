"""The FastAPI application: the shop connected for the application's lifetime.

The lifespan opens the store (``App.connect``), migrates it first (as the story does; a
deployment would run ``eventfold migrate`` instead) and serves the App's subscribers
in the same process with ``Running.serve``, as ``eventfold run`` does: the read models,
the fulfilment process and its payment timeouts. The reads therefore see the
projections move without a second process.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from eventfold import migrate
from eventfold.config import Settings
from examples.shop.app import build_app
from examples.shop_api.commands import commands
from examples.shop_api.errors import install_error_handlers
from examples.shop_api.queries import queries
from examples.shop_api.state import Shop


def create_api(url: str | None = None) -> FastAPI:
    """The shop's HTTP API on the store at ``url``.

    Without ``url`` the store is ``$EVENTFOLD_DATABASE_URL`` (read at start-up), else
    ``sqlite:///eventfold.db`` in the working directory, the file ``python -m
    examples.shop`` and ``eventfold --app examples.shop:app`` use too.
    """
    @contextlib.asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[None]:
        database = url or Settings.from_environment().database_url
        if not database.startswith("memory:"):
            await migrate(database)
        async with build_app().connect(database) as running:
            runner = running.runner()
            stop = asyncio.Event()
            started = asyncio.Event()
            serving = asyncio.create_task(running.serve(runner, stop, on_started=started.set))
            waiting = asyncio.create_task(started.wait())
            try:
                await asyncio.wait({serving, waiting}, return_when=asyncio.FIRST_COMPLETED)
                if serving.done():
                    serving.result()  # the runner could not start: its error, at start-up
                api.state.shop = Shop(running, runner)
                yield
            finally:
                waiting.cancel()
                stop.set()
                await serving

    api = FastAPI(
        title="eventfold shop",
        summary="The example shop's commands and read models over HTTP",
        lifespan=lifespan,
    )
    install_error_handlers(api)
    api.include_router(commands)
    api.include_router(queries)
    return api
