"""The one place the command line runs async work, and turns errors into exit codes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from eventfold.aggregates import AggregateNotFound
from eventfold.config import Settings
from eventfold.errors import AppNotFound, AppRequired, StreamNotFound, UnknownAggregateCategory
from eventfold.eventstore import (
    ConcurrencyError,
    EventfoldError,
    EventTypeError,
    InvalidAppend,
    SchemaNotMigrated,
    StoreUnavailable,
    StreamTombstoned,
    TransactionHorizonError,
)
from eventfold.projections import ParkedEventNotFound, ProjectionHeld, UnknownProjection
from eventfold.projections.trace import TraceNotFound

T = TypeVar("T")

EXIT_ERROR = 1
"""An eventfold error with no more precise code."""
EXIT_USAGE = 2
"""Bad arguments (the code click uses for its own usage errors), or no application where
one is needed, or an ``--app`` that names none."""
EXIT_UNAVAILABLE = 3
"""The database could not be reached, or the URL is not one eventfold knows."""
EXIT_NOT_MIGRATED = 4
"""The store's schema is missing or old: run ``eventfold migrate``."""
EXIT_HORIZON = 5
"""Stored transaction ids lie beyond the server's: run ``eventfold repair-horizon``."""
EXIT_NOT_FOUND = 6
"""What was asked for does not exist: a stream, an aggregate (or its category), a
projection, a parked event, an event or correlation id to trace."""
EXIT_CONFLICT = 7
"""An append met a stream at another version than it expected, or a hard-deleted stream's
tombstone, or another process holds what the command needs (a rebuild in progress)."""
EXIT_INCOMPATIBLE = 8
"""``schemas check`` found schema changes that stored events would not survive."""
EXIT_INTERNAL = 70
"""A bug: an error eventfold did not raise on purpose (EX_SOFTWARE)."""
EXIT_INTERRUPTED = 130
"""Stopped with Ctrl-C where that is not the normal way to stop (128 + SIGINT)."""

# Most precise first: the first class an error is an instance of gives its code.
EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (StoreUnavailable, EXIT_UNAVAILABLE),
    (SchemaNotMigrated, EXIT_NOT_MIGRATED),
    (TransactionHorizonError, EXIT_HORIZON),
    (StreamNotFound, EXIT_NOT_FOUND),
    (AggregateNotFound, EXIT_NOT_FOUND),
    (UnknownAggregateCategory, EXIT_NOT_FOUND),
    (TraceNotFound, EXIT_NOT_FOUND),
    (UnknownProjection, EXIT_NOT_FOUND),
    (ParkedEventNotFound, EXIT_NOT_FOUND),
    (ConcurrencyError, EXIT_CONFLICT),
    (StreamTombstoned, EXIT_CONFLICT),
    (ProjectionHeld, EXIT_CONFLICT),
    (AppRequired, EXIT_USAGE),
    (AppNotFound, EXIT_USAGE),
    (InvalidAppend, EXIT_USAGE),
    (EventTypeError, EXIT_ERROR),
    (EventfoldError, EXIT_ERROR),
)


def exit_code_for(error: BaseException) -> int:
    """The process exit code for an error that ended a command."""
    for error_type, code in EXIT_CODES:
        if isinstance(error, error_type):
            return code
    return EXIT_INTERNAL


def settings_of(ctx: typer.Context) -> Settings:
    """The settings the top-level options resolved (defaults if a command runs alone)."""
    root = ctx.find_root()
    obj = root.obj
    return obj if isinstance(obj, Settings) else Settings.from_environment()


def run(
    ctx: typer.Context,
    work: Callable[[Settings], Coroutine[Any, Any, T]],
    *,
    app: str | None = None,
    database: str | None = None,
    interrupt_is_success: bool = False,
) -> T:
    """Run a command's coroutine with ``asyncio.run``, turning errors into exit codes.

    An error ends the process with one line on stderr (``error: ...``) and the code from
    ``EXIT_CODES``; ``--debug`` shows the traceback as well. Ctrl-C exits with 130, or 0
    for commands that run until stopped (``interrupt_is_success``). ``app`` is the
    command's own ``--app`` (given after the command name), which wins over the global one;
    ``database`` likewise.
    """
    settings = settings_of(ctx).with_app(app).with_database(database)
    try:
        return asyncio.run(work(settings))
    except KeyboardInterrupt:
        raise typer.Exit(0 if interrupt_is_success else EXIT_INTERRUPTED) from None
    except (typer.Exit, typer.Abort):
        raise
    except BrokenPipeError:
        reader_gone()
    except Exception as error:
        fail(error, settings)


def reader_gone() -> NoReturn:
    """Stop quietly, with exit code 0: the reader of stdout went away (``| head -1``) and
    has what it wanted. stdout is pointed at /dev/null so that flushing it at exit cannot
    fail again with a second broken pipe."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    raise typer.Exit(0)


def fail(error: BaseException, settings: Settings) -> NoReturn:
    """Print ``error`` as one line on stderr (with its traceback under ``--debug``) and exit."""
    stderr = Console(stderr=True, soft_wrap=True, highlight=False)
    if settings.debug:
        stderr.print_exception(show_locals=False)
    if isinstance(error, EventfoldError):
        message = str(error)
    else:
        # Not raised on purpose: name the type so a bug report says something.
        message = (
            f"unexpected {type(error).__module__}.{type(error).__qualname__}: {error} "
            "(rerun with --debug for the traceback and report it)"
        )
    message = " ".join(message.split())  # one line, whatever the message held
    stderr.print(f"[bold red]error:[/] {escape(message)}")
    sys.stderr.flush()
    raise typer.Exit(exit_code_for(error))
