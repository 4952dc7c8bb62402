"""The example shop over HTTP, with FastAPI: ``uvicorn examples.shop_api:api``.

Commands (place, confirm, cancel an order; receive stock) run on the shop's aggregates,
reads come from its read models; ``Idempotency-Key`` makes retries safe. The store is
``$EVENTFOLD_DATABASE_URL`` (default ``sqlite:///eventfold.db``). Walked through in
docs/api.md; needs the extra ``eventfold[api]``.
"""

from examples.shop_api.app import create_api

api = create_api()
"""The application uvicorn serves: ``uvicorn examples.shop_api:api``."""

__all__ = ["api", "create_api"]
