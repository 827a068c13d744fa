"""Creating the stack's Temporal schedules when a process starts (client code, not workflow code).

`ensure_payment_schedules` runs in the background of the API's lifespan: Temporal may come up after the
API, so it retries for about a minute; creating a schedule that exists is a no-op, so every start calls it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from temporalio.client import Client

from config import Settings

log = logging.getLogger("temporal.schedules")


async def ensure_payment_schedules(
    connect: Callable[[], Awaitable[Client]], settings: Settings, *, attempts: int = 30, pause_s: float = 2.0
) -> None:
    """Create the float-monitor, crypto-deposit and hold-audit schedules once Temporal is reachable."""
    from workflows.float_monitor import ensure_schedules

    if settings.environment == "test":
        return  # tests run their own workers on their own queues; nothing should poll on a timer
    for _ in range(attempts):
        try:
            await ensure_schedules(await connect(), settings)
            return
        except Exception as e:  # Temporal not up yet: try again shortly
            log.info("payments schedules not created yet: %s", type(e).__name__)
            await asyncio.sleep(pause_s)
