"""``eventfold run``: serve an application's subscribers until SIGTERM or SIGINT.

Runs the App's runner (projections, process managers, relays), the deadline poller when it
has process managers, and optionally the scheduled snapshot sweep and retention job (all of it is
``Running.serve``; this module adds signals and printing). Several ``eventfold run``
processes share the work through leases; one killed (even with kill -9) is replaced within
seconds.

Its standard output is meant to be read by people and by other processes alike, one line
per fact, flushed at once:

- ``runner HOLDER started`` once every subscriber is being served (or waited for);
- ``NAME: STATE`` (with a detail after ``: `` for some) each time a subscriber's state in
  this runner changes - ``running``, ``waiting`` (another runner holds it), ``halted``,
  ``stopped``;
- ``runner HOLDER stopping (SIGNAL)``, then ``runner HOLDER stopped`` before exit code 0.

Library warnings and errors are logged on stderr.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Annotated

import typer

from eventfold.cli.execution import run
from eventfold.cli.options import AppOption, DatabaseOption
from eventfold.config import Settings
from eventfold.projections import SubscriberState

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def say(line: str) -> None:
    """One line on stdout, flushed: a parent process reading the pipe sees it at once."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def state_line(state: SubscriberState) -> str:
    """How a subscriber's state in this runner is announced."""
    if state.state == "waiting":
        return f"{state.name}: waiting: held by another runner"
    if state.state in ("halted", "retrying") and state.last_error:
        return f"{state.name}: {state.state}: {' '.join(state.last_error.split())}"
    return f"{state.name}: {state.state}"


def run_command(
    ctx: typer.Context,
    app_spec: AppOption = None,
    database: DatabaseOption = None,
    metrics_port: Annotated[
        int | None,
        typer.Option("--metrics-port", min=0, max=65535, show_default=False,
                     help="Serve Prometheus metrics on this port (0: any free port)."),
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Events per batch (one transaction).")
    ] = 500,
    holder: Annotated[
        str | None,
        typer.Option("--holder", show_default=False,
                     help="This runner's name in leases and status (default: host:pid:random)."),
    ] = None,
    lease_ttl: Annotated[
        float,
        typer.Option("--lease-ttl", min=0.5,
                     help="Seconds a dead runner's subscribers stay held before another takes "
                     "them over."),
    ] = 5.0,
    shutdown_timeout: Annotated[
        float,
        typer.Option("--shutdown-timeout", min=0,
                     help="On SIGTERM/SIGINT, seconds to let batches in progress commit before "
                     "rolling them back."),
    ] = 10.0,
    sweep_every: Annotated[
        float | None,
        typer.Option("--snapshot-sweep-every", min=1, show_default=False,
                     help="Run the snapshot sweep every this many seconds (off by default)."),
    ] = None,
    sweep_threshold: Annotated[
        int,
        typer.Option("--snapshot-threshold", min=1,
                     help="The sweep snapshots streams with this many events since their "
                     "last snapshot."),
    ] = 100,
    retention_every: Annotated[
        float | None,
        typer.Option("--retention-every", min=1, show_default=False,
                     help="Apply the application's retention policies every this many "
                     "seconds (off by default)."),
    ] = None,
    log_level: Annotated[
        str,
        typer.Option("--log-level", help="Level of the library's log on stderr.",
                     case_sensitive=False),
    ] = "warning",
) -> None:
    """Run the application's projections and other subscribers until SIGTERM or SIGINT."""
    level = logging.getLevelName(log_level.upper())
    if not isinstance(level, int):
        raise typer.BadParameter(f"{log_level!r} is not a log level", param_hint="--log-level")
    logging.basicConfig(
        level=level, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    async def work(settings: Settings) -> None:
        async with settings.connect_app("`eventfold run`") as running:
            runner = running.runner(
                holder=holder, batch_size=batch_size, lease_ttl=lease_ttl,
                metrics_port=metrics_port,
            )
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()

            def on_signal(signum: signal.Signals) -> None:
                if not stop.is_set():
                    say(f"runner {runner.holder} stopping ({signum.name})")
                stop.set()

            def on_started() -> None:
                say(f"runner {runner.holder} started")
                if runner.metrics is not None:
                    say(f"metrics on port {runner.metrics.port}")

            for signum in _STOP_SIGNALS:
                loop.add_signal_handler(signum, on_signal, signum)
            try:
                await running.serve(
                    runner, stop, shutdown_timeout=shutdown_timeout, sweep_every=sweep_every,
                    sweep_threshold=sweep_threshold, retention_every=retention_every,
                    on_started=on_started,
                    on_state=lambda state: say(state_line(state)),
                )
            finally:
                for signum in _STOP_SIGNALS:
                    loop.remove_signal_handler(signum)
            say(f"runner {runner.holder} stopped")

    run(ctx, work, app=app_spec, database=database, interrupt_is_success=True)
