"""How eventfold waits before trying again: exponential backoff, capped, with optional jitter.

Every retry in the framework (a failing event, a lost race in ``Repository.update``, a
broker or database outage, a deadline that failed) takes its delays from a ``Backoff``, so
they all grow and cap the same way. The loops stay where they are: each decides what a
failure means; this only says how long to wait. Never wait with a transaction open.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays of ``initial * factor**(n - 1)`` seconds before retry ``n``, at most ``cap``.

    With ``jitter`` each delay is drawn uniformly from its upper half, so writers or runners
    that failed together do not retry together (and the wait never collapses to zero).
    """

    initial: float = 0.1
    cap: float = 5.0
    factor: float = 2.0
    jitter: bool = False

    def __post_init__(self) -> None:
        if self.initial < 0 or self.cap < 0:
            raise ValueError("a backoff's initial delay and cap must not be negative")
        if self.factor < 1:
            raise ValueError("a backoff's factor must be at least 1")

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry ``attempt`` (1 for the first retry)."""
        if attempt < 1:
            raise ValueError("attempts count from 1")
        exponent = min(attempt - 1, 64)  # past this the cap has long been reached
        base = float(min(self.cap, self.initial * self.factor**exponent))
        return random.uniform(base / 2, base) if self.jitter else base

    def delays(self) -> Iterator[float]:
        """The delays before retries 1, 2, 3, ... (endless: the caller bounds the attempts)."""
        attempt = 0
        while True:
            attempt += 1
            yield self.delay(attempt)
