"""``python -m examples.shop [--database URL] [--broker URL]``: run a day of the shop."""

from __future__ import annotations

import argparse
import asyncio
import sys

from eventfold import EventfoldError
from eventfold.config import Settings
from eventfold.eventstore import DEFAULT_URL
from examples.shop.brokers import UnknownBroker
from examples.shop.story import run_shop


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run the story, and turn an eventfold error into one line."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.shop",
        description="Run a day of the shop: orders, stock, payments, a fulfilment process "
        "with compensation and a timeout, read models; printing each step. Each run is a "
        "new day with new order ids, on the same database.",
    )
    parser.add_argument(
        "--database",
        default=Settings.from_environment().database_url,
        help=f"event store URL (default: $EVENTFOLD_DATABASE_URL or {DEFAULT_URL})",
    )
    parser.add_argument(
        "--broker",
        help="also relay every event to RabbitMQ (amqp://guest:guest@127.0.0.1/), NATS "
        "JetStream (nats://127.0.0.1:4222) or Kafka (kafka://127.0.0.1:9092)",
    )
    args = parser.parse_args(argv)
    try:
        asyncio.run(run_shop(args.database, broker=args.broker))
    except (EventfoldError, UnknownBroker) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
