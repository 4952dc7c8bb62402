"""``eventfold streams``: list the streams of the store and show the events of one."""

from __future__ import annotations

from typing import Annotated

import typer

from eventfold.cli.execution import run
from eventfold.cli.options import AppOption, DatabaseOption
from eventfold.cli.render import (
    envelope,
    events_table,
    print_json_lines,
    stdout_console,
    stream_summary,
    streams_table,
)
from eventfold.config import Settings
from eventfold.errors import StreamNotFound, StreamWasDeleted

app = typer.Typer(help="List streams and show their events.", no_args_is_help=True)

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print JSON Lines (one object per line) for scripts.")
]


@app.command("list")
def list_streams(
    ctx: typer.Context,
    category: Annotated[
        str | None,
        typer.Option("--category", "-c", help="Only streams of this category (Order: Order-123)."),
    ] = None,
    after: Annotated[
        str | None, typer.Option("--after", help="Start after this stream id (to page on).")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, help="At most this many streams.")
    ] = 100,
    as_json: JsonOption = False,
    app_spec: AppOption = None,
    database: DatabaseOption = None,
) -> None:
    """List streams in id order, with their version and last append."""

    async def work(settings: Settings) -> None:
        async with settings.connect() as store:
            # One more than asked tells whether to say that there are more.
            found = await store.list_streams(category=category, after=after, limit=limit + 1)
        shown, more = found[:limit], len(found) > limit
        if as_json:
            print_json_lines(stream_summary(info) for info in shown)
            return
        console = stdout_console()
        if not shown:
            what = f"of category {category!r} " if category else ""
            console.print(f"no streams {what}in {store.url}")
            return
        console.print(streams_table(f"streams in {store.url}", shown))
        if more:
            console.print(
                f"[dim]more streams follow: --after {shown[-1].stream_id!r} shows the next ones[/]"
            )

    run(ctx, work, app=app_spec, database=database)


@app.command("show")
def show_stream(
    ctx: typer.Context,
    stream_id: Annotated[str, typer.Argument(help="The stream, e.g. Order-123.")],
    from_version: Annotated[
        int | None, typer.Option("--from", min=1, help="Start at this version.")
    ] = None,
    to_version: Annotated[
        int | None, typer.Option("--to", min=1, help="Stop at this version.")
    ] = None,
    as_json: JsonOption = False,
    app_spec: AppOption = None,
    database: DatabaseOption = None,
) -> None:
    """Show the events of one stream, oldest first."""

    async def work(settings: Settings) -> None:
        async with settings.connect() as store:
            records = await store.read_stream(
                stream_id, from_version=from_version, to_version=to_version
            )
            if not records:
                version = await store.stream_version(stream_id)
                if version == 0:
                    raise StreamNotFound(stream_id, store.url)
                life = await store.stream_life(stream_id)
                if life.reads_as_absent(version):
                    raise StreamWasDeleted(stream_id, store.url, version, hard=life.hard)
        if as_json:
            print_json_lines(envelope(record) for record in records)
            return
        stdout_console().print(events_table(f"{stream_id} in {store.url}", records))

    run(ctx, work, app=app_spec, database=database)
