"""``python -m examples.shop [--database URL]``: run the shop's story and print it."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from eventfold import DEFAULT_URL, EventfoldError
from examples.shop.app import run_shop


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run the story, and turn an eventfold error into one line."""
    parser = argparse.ArgumentParser(prog="python -m examples.shop", description=__doc__)
    parser.add_argument(
        "--database",
        default=os.environ.get("EVENTFOLD_DATABASE_URL") or DEFAULT_URL,
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
