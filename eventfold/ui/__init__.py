"""The web console, ``eventfold ui``: streams, events, traces, projections and their lag,
leases, parked events and the live log, in a browser (the extra ``eventfold[ui]``).

``open_sources(settings)`` opens the store (and the application), ``create_console(sources)``
is the ASGI application on them, ``serve(settings)`` runs it with uvicorn. The console is
read-only unless it is given a token (``new_token()``); retrying and skipping parked events
then need it (``eventfold.ui.actions``). See docs/ui.md.
"""

from eventfold.ui.actions import TOKEN_HEADER
from eventfold.ui.console import create_console
from eventfold.ui.search import StreamPage, find_streams
from eventfold.ui.server import new_token, serve
from eventfold.ui.sources import Sources, open_sources

__all__ = [
    "TOKEN_HEADER",
    "Sources",
    "StreamPage",
    "create_console",
    "find_streams",
    "new_token",
    "open_sources",
    "serve",
]
