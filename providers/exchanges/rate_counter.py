"""A venue's request limit as a decaying counter with a ceiling, kept on our side of the wire.

Kraken counts requests this way (per API key, and per pair in its matching engine): every call raises
the counter by its cost, the counter falls back at a steady rate, and a call that would lift it past
the ceiling is refused ("EAPI:Rate limit exceeded"). So a quiet key has a burst of `ceiling` calls
available at once, and a busy one a steady `decay_per_s`. ccxt's own throttle is a leaky bucket with
room for one call: it spaces every call out even when the venue would take a burst.

`DecayingCounter.take(cost)` waits, if it must, until the call fits under the ceiling, then counts it.
Waiters are served in arrival order. It counts the calls that had to wait (`waited`), which is how
tests see a burst go through without a pause without timing anything.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class DecayingCounter:
    """`ceiling`: the most the counter may hold; `decay_per_s`: how fast it falls."""

    def __init__(
        self, ceiling: float, decay_per_s: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if ceiling <= 0 or decay_per_s <= 0:
            raise ValueError("a counter needs a positive ceiling and decay")
        self.ceiling = ceiling
        self.decay_per_s = decay_per_s
        self._clock = clock
        self._level = 0.0
        self._at = clock()
        self._queue = asyncio.Lock()  # one waiter at a time, first come first served
        self.taken = 0  # calls counted
        self.waited = 0  # of those, calls that had to wait for the counter to fall

    def level(self) -> float:
        """The counter now, after its decay since the last call."""
        now = self._clock()
        self._level = max(0.0, self._level - (now - self._at) * self.decay_per_s)
        self._at = now
        return self._level

    async def take(self, cost: float) -> None:
        """Count a call of `cost`, first waiting until it fits under the ceiling."""
        if cost <= 0:
            return
        cost = min(cost, self.ceiling)  # a call dearer than the ceiling goes once the counter is empty
        async with self._queue:
            waited = False
            while (over := self.level() + cost - self.ceiling) > 1e-9:
                waited = True
                await asyncio.sleep(over / self.decay_per_s)
            self._level += cost
            self.taken += 1
            self.waited += waited
