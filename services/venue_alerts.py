"""The ops alert "a venue is down" (docs/architecture.md §7), raised when a venue's circuit breaker opens.

A breaker lives in each process's memory (services/circuit_breaker.py) and is told of failures by the
order saga; its opening is the moment a venue has failed often enough that routing skips it. That moment
is sync and inside routing, so the alert is written by a task of its own: an audit row and an ops
notification (mailbox and webhook) through the outbox, in one transaction.

Every process with a router has its own breakers, so several may see the same outage: the notification's
dedupe key names the venue and the quarter-hour, so ops are told once per venue per `QUIET_SECONDS`
whichever process saw it first (each process still writes its audit row: what it saw is evidence).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from services import alerts

log = logging.getLogger("broker.venue_alerts")

ACTION = "ops.alert.venue_down"
QUIET_SECONDS = 900


def quarter(now: float, quiet_seconds: int = QUIET_SECONDS) -> int:
    """The window a venue-down notification is told once in."""
    return int(now // quiet_seconds)


class VenueDownAlerts:
    """`raise_for` is a breaker's `on_open` hook: it schedules the alert on the running loop."""

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._clock = clock
        self._tasks: set[asyncio.Task[None]] = set()

    def raise_for(self, venue: str) -> None:
        try:
            task = asyncio.get_running_loop().create_task(self.write(venue))
        except RuntimeError:  # no loop (a sync caller in a script): the log line is all there is
            log.warning("venue %s is down (breaker open); no loop to record the alert", venue)
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def write(self, venue: str) -> None:
        """The audit row and (once per venue per quarter-hour) the ops notification, in one transaction."""
        try:
            async with self._engine.begin() as conn:
                await alerts.alert(
                    conn,
                    ACTION,
                    target_type="venue",
                    target_id=venue,
                    dedupe_key=f"{ACTION}:{venue}:{quarter(self._clock())}",
                    detail="the venue failed repeatedly; routing skips it until a probe succeeds",
                )
        except Exception:  # an alert must never break routing; the log line still pages
            log.exception("could not record the venue-down alert for %s", venue)

    async def drain(self) -> None:
        """Wait for alerts still being written (a clean shutdown, and tests)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
