"""``python -m examples.shop [--database URL]``: run the shop's story and print it."""

from __future__ import annotations

import argparse
import asyncio
import sys

from eventfold import DEFAULT_URL, EventfoldError, Settings
from examples.shop.app import run_shop


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run the story, and turn an eventfold error into one line."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.shop",
        description="Place, pay and ship orders on an eventfold store, printing each step.",
    )
    parser.add_argument(
        "--database",
        default=Settings.from_environment().database_url,
        help=f"event store URL (default: $EVENTFOLD_DATABASE_URL or {DEFAULT_URL})",
    )
    args = parser.parse_args(argv)
    try:
        asyncio.run(run_shop(args.database))
    except EventfoldError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
