"""A venue's request limit as a decaying counter with a ceiling, kept on our side of the wire.

Kraken counts requests this way (per API key, and per pair in its matching engine): every call raises
the counter by its cost, the counter falls back at a steady rate, and a call that would lift it past
the ceiling is refused ("EAPI:Rate limit exceeded"). So a quiet key has a burst of `ceiling` calls
available at once, and a busy one a steady `decay_per_s`. ccxt's own throttle is a leaky bucket with
room for one call: it spaces every call out even when the venue would take a burst.

Two steps, because a call may queue between being allowed and being sent (Kraken's private calls go
out one at a time, in nonce order): `admit(cost)` waits, if it must, until the call fits, and holds
its cost as pending; `charge(cost)` counts it when it is really sent. The venue counts a call when it
arrives, so a call's cost must start decaying only from then: counting it at admission would spend
decay it never had at the venue while it queued, and a burst behind a slow call would then arrive
together and overshoot. Admission keeps `level + pending + cost <= ceiling`, so whatever the order and
timing of the sends, the level never passes the ceiling. `release(cost)` returns a pending cost that
was never sent. `waited` counts the calls that had to wait, which is how tests see a burst go through
without a pause without timing anything.
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
        self._pending = 0.0  # admitted, not yet sent
        self._queue = asyncio.Lock()  # one waiter at a time, first come first served
        self.taken = 0  # calls admitted
        self.waited = 0  # of those, calls that had to wait for the counter to fall

    def level(self) -> float:
        """The counter now (calls sent), after its decay since the last look."""
        now = self._clock()
        self._level = max(0.0, self._level - (now - self._at) * self.decay_per_s)
        self._at = now
        return self._level

    def cost_of(self, cost: float) -> float:
        """A call dearer than the ceiling is counted at the ceiling: it goes once the counter is empty."""
        return min(cost, self.ceiling)

    async def admit(self, cost: float) -> None:
        """Wait until a call of `cost` fits under the ceiling with every call admitted before it."""
        cost = self.cost_of(cost)
        if cost <= 0:
            return
        async with self._queue:
            waited = False
            while (over := self.level() + self._pending + cost - self.ceiling) > 1e-9:
                waited = True
                await asyncio.sleep(over / self.decay_per_s)
            self._pending += cost
            self.taken += 1
            self.waited += waited

    def charge(self, cost: float) -> None:
        """The admitted call is being sent now: its cost counts (and decays) from here."""
        cost = self.cost_of(cost)
        if cost <= 0:
            return
        self.level()
        self._pending = max(0.0, self._pending - cost)
        self._level += cost

    def release(self, cost: float) -> None:
        """The admitted call was never sent (cancelled while it queued): its place is free again."""
        cost = self.cost_of(cost)
        if cost > 0:
            self._pending = max(0.0, self._pending - cost)
