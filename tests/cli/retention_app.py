"""An application with a retention policy, for ``eventfold streams expire`` (the carts of
``cli_support``: a cart's events go once it has more than two)."""

from __future__ import annotations

from cli_support import REGISTRY_EVENTS

from eventfold import App, Retention

app = App(events=REGISTRY_EVENTS, retention=[Retention("Cart", max_count=2, action="archive")])
