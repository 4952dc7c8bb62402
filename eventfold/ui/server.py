"""Serving the console with uvicorn until SIGINT or SIGTERM (what ``eventfold ui`` runs)."""

from __future__ import annotations

import contextlib
import secrets
import socket
from collections.abc import Callable, Iterator

import uvicorn

from eventfold.config import Settings
from eventfold.errors import ConsoleUnavailable
from eventfold.ui.console import create_console
from eventfold.ui.sources import open_sources

SHUTDOWN_GRACE = 2
"""Seconds a stop waits for open responses: the live tail's never ends by itself."""


def new_token() -> str:
    """A fresh random action token (printed once at start, kept nowhere else)."""
    return secrets.token_urlsafe(18)


async def serve(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
    on_started: Callable[[str], None] = lambda url: None,
) -> None:
    """Serve the console on ``host:port`` (port 0: any free one) until SIGINT or SIGTERM.

    The store (and application) ``settings`` name is opened first, so an unreachable
    database fails here with its own error. ``on_started`` gets the console's URL once it
    accepts connections. ``token`` None makes the console read-only.
    """
    async with open_sources(settings) as sources:
        listening = _bind(host, port)
        bound_host, bound_port = listening.getsockname()[:2]
        config = uvicorn.Config(
            create_console(sources, token=token), log_level="warning", lifespan="off",
            timeout_graceful_shutdown=SHUTDOWN_GRACE,
        )
        server = _Server(config, lambda: on_started(_url(bound_host, bound_port)))
        await server.serve(sockets=[listening])


class _Server(uvicorn.Server):
    """uvicorn's server, saying when it is up."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.should_exit:
            self._on_started()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn raises the SIGINT it stopped on again once it has shut down; asyncio.run
        # would then cancel this task while it closes the store's connections (tracebacks
        # from the pool). The console's shutdown is the command's normal end: exit 0.
        with super().capture_signals():
            yield
            self._captured_signals.clear()


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``: bound here so that a taken address is one
    clear error, and port 0 tells which port it got."""
    listening = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind((host, port))
    except OSError as exc:
        listening.close()
        raise ConsoleUnavailable(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}): choose another --port "
            "(0: any free port) or --host"
        ) from exc
    return listening


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"
