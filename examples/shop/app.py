"""The shop as one eventfold ``App``: what the example, its tests and the CLI share.

``eventfold --app examples.shop:app ...`` loads ``app`` below, so the command line decodes
the shop's events (upcasting release 1's), rebuilds its read models and runs its
fulfilment process exactly as the application does.
"""

from __future__ import annotations

from eventfold import App
from examples.shop.brokers import relay_for
from examples.shop.cart import CART_EVENTS, CART_RETENTION, Cart
from examples.shop.customers import CUSTOMER_EVENTS, Customer, CustomerDirectory
from examples.shop.events import SHOP_EVENTS
from examples.shop.fulfilment import Fulfilment
from examples.shop.inventory import InventoryItem
from examples.shop.legacy import shop_upcasters
from examples.shop.order import Order
from examples.shop.payment import Payment
from examples.shop.read_models import CustomerTotals, OrderList


def build_app(broker: str | None = None, *, topic: str = "shop") -> App:
    """The shop's App; with ``broker`` (amqp://, nats:// or kafka://) it also relays its
    events there.

    ``topic`` names the exchange (RabbitMQ), the stream and subject prefix (NATS) or the
    topic (Kafka).
    """
    return App(
        events=[*SHOP_EVENTS, *CUSTOMER_EVENTS, *CART_EVENTS],
        upcasters=shop_upcasters(),
        aggregates=[Order, InventoryItem, Payment, Customer, Cart],
        projections=[OrderList(), CustomerTotals(), CustomerDirectory()],
        subscribers=[Fulfilment(), *([relay_for(broker, topic=topic)] if broker else [])],
        retention=[CART_RETENTION],
    )


app = build_app()
"""The shop without a relay: ``eventfold --app examples.shop:app run``."""
