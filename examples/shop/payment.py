"""An order's payment: requested by the shop, answered by the provider, or voided."""

from __future__ import annotations

import enum
from decimal import Decimal

from eventfold import Aggregate, DomainError, applies
from examples.shop.events import PaymentCharged, PaymentFailed, PaymentRequested, PaymentVoided


class PaymentStatus(enum.StrEnum):
    """Where a payment is in its life."""

    NONE = "none"
    REQUESTED = "requested"
    CHARGED = "charged"
    FAILED = "failed"
    VOIDED = "voided"


class InvalidAmount(DomainError):
    """A payment asks for a positive amount."""


class PaymentAlreadyRequested(DomainError):
    """An order is charged once: its payment is requested once."""


class PaymentNotPending(DomainError):
    """The provider answered a payment that no longer waits for an answer."""


class Payment(Aggregate):
    """The payment of one order (its id is the order's). Invariant: requested once, then
    answered once - charged or failed - unless the shop voided it first."""

    status: PaymentStatus = PaymentStatus.NONE
    amount: Decimal = Decimal(0)
    currency: str = ""
    reference: str = ""

    def request(self, amount: Decimal, currency: str) -> None:
        """Ask the provider to charge ``amount``."""
        if self.status is not PaymentStatus.NONE:
            raise PaymentAlreadyRequested(f"payment {self.id} is {self.status} already")
        if amount <= 0:
            raise InvalidAmount(f"payment {self.id}: {amount} {currency} is not positive")
        self.record(PaymentRequested(order_id=self.id, amount=amount, currency=currency))

    def request_unless_asked(self, amount: Decimal, currency: str) -> None:
        """Ask for ``amount`` unless the payment was asked for already (the checkout reserves
        it with the order; orders placed otherwise are asked for by the fulfilment)."""
        if self.status is PaymentStatus.NONE:
            self.request(amount, currency)

    def charge(self, reference: str) -> None:
        """The provider's answer: charged, with its reference."""
        self._check_pending("a charge")
        self.record(PaymentCharged(order_id=self.id, reference=reference))

    def fail(self, reason: str) -> None:
        """The provider's answer: refused."""
        self._check_pending("a refusal")
        self.record(PaymentFailed(order_id=self.id, reason=reason))

    def void(self, reason: str) -> None:
        """Withdraw the request, so that a late answer is refused; nothing to do once the
        payment failed or was voided."""
        if self.status is PaymentStatus.CHARGED:
            raise PaymentNotPending(
                f"payment {self.id} was charged ({self.reference}): refund it, it cannot be voided"
            )
        if self.status is PaymentStatus.REQUESTED:
            self.record(PaymentVoided(order_id=self.id, reason=reason))

    def _check_pending(self, answer: str) -> None:
        if self.status is not PaymentStatus.REQUESTED:
            raise PaymentNotPending(
                f"payment {self.id} is {self.status}: {answer} is no longer accepted"
                + (" (refund the customer)" if answer == "a charge" else "")
            )

    @applies(PaymentRequested)
    def _requested(self, event: PaymentRequested) -> None:
        self.status = PaymentStatus.REQUESTED
        self.amount = event.amount
        self.currency = event.currency

    @applies(PaymentCharged)
    def _charged(self, event: PaymentCharged) -> None:
        self.status = PaymentStatus.CHARGED
        self.reference = event.reference

    @applies(PaymentFailed)
    def _failed(self, event: PaymentFailed) -> None:
        self.status = PaymentStatus.FAILED

    @applies(PaymentVoided)
    def _voided(self, event: PaymentVoided) -> None:
        self.status = PaymentStatus.VOIDED
