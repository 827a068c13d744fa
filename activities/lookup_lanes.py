"""One lookup round at a time per venue, so asking about unknown placements never starves placing.

A venue gives us a request budget (Kraken: a few private calls a second at most; ccxt spaces them
out, and our adapter sends Kraken's one at a time for its nonces). Every order whose placement
outcome is unknown asks again on its own timer: order lookup by client id, then the trade history,
each a handful of calls. A few such orders at one venue used to fill its queue end to end: a new
placement (or its confirmation) waited behind minutes of lookups, outlived its activity's
start-to-close timeout, was retried as "maybe sent" and became one more unknown order to look up.

So each worker process lets one lookup round per venue into the venue's queue at a time. A round
that cannot get its turn within `wait_s` is not made: its answer is "still unknown, ask again
later", which is what a round that found nothing says too (unknown is never absent). Placements
do not take a turn, so they wait behind at most the one call of the round in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class LookupLanes:
    def __init__(self, wait_s: float = 10.0) -> None:
        self.wait_s = wait_s
        self._lanes: dict[str, asyncio.Lock] = {}
        self.skipped = 0  # rounds that did not get a turn in time (for tests and logs)

    @contextlib.asynccontextmanager
    async def turn(self, venue: str) -> AsyncIterator[bool]:
        """Yields True while this round holds `venue`'s lane, False if the wait ran out (no turn)."""
        lane = self._lanes.setdefault(venue, asyncio.Lock())
        try:
            await asyncio.wait_for(lane.acquire(), timeout=self.wait_s)
        except TimeoutError:
            self.skipped += 1
            yield False
            return
        try:
            yield True
        finally:
            lane.release()

    def busy(self, venue: str) -> bool:
        lane = self._lanes.get(venue)
        return lane is not None and lane.locked()
