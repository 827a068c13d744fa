"""Heartbeating around one long call, shared by the activity classes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from temporalio import activity

T = TypeVar("T")


async def heartbeating(call: Awaitable[T], every_s: float = 1.0) -> T:
    """Heartbeat while a venue call is in flight, so a worker that dies mid-call is noticed within the
    heartbeat timeout, and a call that is only slow (a venue's throttle, a cold market load) is not
    mistaken for a dead worker."""

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(every_s)

    beating = asyncio.create_task(beat())
    try:
        return await call
    finally:
        beating.cancel()
