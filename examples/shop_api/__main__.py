"""``python -m examples.shop_api [--host H] [--port P]``: serve the shop's API with uvicorn."""

from __future__ import annotations

import argparse

import uvicorn

from examples.shop_api import api


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments and serve until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.shop_api",
        description="Serve the example shop over HTTP on the store at $EVENTFOLD_DATABASE_URL "
        "(default sqlite:///eventfold.db).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    args = parser.parse_args(argv)
    uvicorn.run(api, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
