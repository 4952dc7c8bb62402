"""How a broker connection lives through an outage: quietly, and backing off.

An outage is a state, not a stream of errors: ``BrokerHealth`` logs one line when the
broker goes down and one when it is back (a traceback only with debug logging on), and
spaces the attempts to reach it with a jittered exponential ``Backoff``, so a relay or
consumer that cannot reach its broker neither floods the log nor hammers the broker.
"""

from __future__ import annotations

import logging
import time

from eventfold.eventstore.backoff import Backoff
from eventfold.messaging.errors import BrokerUnavailable

RECONNECT = Backoff(initial=0.5, cap=30.0, jitter=True)
"""Delays between attempts to reach a broker that is down."""


class BrokerHealth:
    """Whether a broker is reachable, when to try it again, and the log of its changes."""

    def __init__(self, logger: logging.Logger, broker: str, backoff: Backoff = RECONNECT) -> None:
        self.logger = logger
        self.broker = broker
        self.backoff = backoff
        self.failures = 0
        """Attempts that failed since the broker was last reachable."""
        self._next_attempt = 0.0
        self._reason = ""

    @property
    def down(self) -> bool:
        """Whether the last attempt to reach the broker failed."""
        return self.failures > 0

    def failed(self, reason: str, error: BaseException | None = None) -> float:
        """Record a failed attempt; returns the seconds to wait before the next one.

        Only the first failure of an outage is logged (a warning; with its traceback when
        debug logging is on); the others are debug lines."""
        self.failures += 1
        self._reason = reason
        delay = self.backoff.delay(self.failures)
        self._next_attempt = time.monotonic() + delay
        debug = self.logger.isEnabledFor(logging.DEBUG)
        if self.failures == 1:
            self.logger.warning(
                "%s is down (%s); trying again with backoff up to %.0fs",
                self.broker, reason, self.backoff.cap, exc_info=error if debug else None,
            )
        else:
            self.logger.debug(
                "%s still down after %d attempts (%s); next in %.1fs",
                self.broker, self.failures, reason, delay,
            )
        return delay

    def reachable(self) -> None:
        """Record that the broker answered; logs once that it is back after an outage."""
        if self.failures:
            self.logger.warning(
                "%s is up again after %d failed attempts", self.broker, self.failures
            )
        self.failures = 0
        self._next_attempt = 0.0

    def check(self) -> None:
        """Raise ``BrokerUnavailable`` at once, without touching the network, while the
        backoff after a failure has not run out."""
        wait = self._next_attempt - time.monotonic()
        if self.failures and wait > 0:
            raise BrokerUnavailable(
                self.broker, f"{self._reason}; next attempt in {wait:.1f}s"
            )
