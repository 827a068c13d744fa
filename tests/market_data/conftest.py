"""Binance and Kraken sandboxes in the session loop, their control API, and live-book helpers.

Everything runs as in production: ccxt's own classes over real WebSockets and HTTP, with ccxt's
throttle ON (`enableRateLimit=True`) on every instance.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import ccxt.async_support as ccxt
import httpx
import pytest_asyncio

from config.settings import DEV_SECRETS
from providers.exchanges.book_streams import BookStream, StreamConfig, StreamedBook
from providers.exchanges.ccxt_adapter import CcxtAdapter, ExchangeConfig
from sandbox.runner import RunningSandboxes, start_venues

VENUES = ("binance", "kraken")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def venues() -> AsyncIterator[RunningSandboxes]:
    running = await start_venues(list(VENUES), seed=3)
    try:
        yield running
    finally:
        await running.stop()


async def control(url: str, path: str, body: object = None, method: str = "POST") -> Any:
    async with httpx.AsyncClient(timeout=5) as http:
        r = await http.request(method, f"{url}/_control/{path}", json=body if body is not None else {})
        r.raise_for_status()
        return r.json()


async def fresh(url: str) -> None:
    """Opening state, no random walk, no faults (REST or stream)."""
    await control(url, "reset")
    await control(url, "walk", {"enabled": False})
    await control(url, "stream", method="DELETE")


async def depth_calls(url: str) -> int:
    calls = (await control(url, "calls", method="GET"))["calls"]
    return sum(1 for c in calls if "/depth" in c.lower())


async def until(stream: BookStream, symbol: str, check: object, seconds: float = 5.0) -> StreamedBook:
    """Next books until `check(book)` holds; errors of a resync are part of the wait."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        try:
            got = await asyncio.wait_for(stream.next_book(symbol), max(0.1, deadline - loop.time()))
            if got.verified and check(got):  # type: ignore[operator]
                return got
        except ccxt.NetworkError:
            pass
        if loop.time() > deadline:
            raise AssertionError(f"{stream.name} {symbol}: condition not met in {seconds} s")


async def eventually(check: Callable[[], Any], seconds: float = 8.0, every: float = 0.05) -> Any:
    """Poll `check()` (sync or async) until it returns something truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(every)


def production_adapter(name: str, url: str) -> CcxtAdapter:
    """The order-path adapter as production builds it: ccxt's throttle on."""
    adapter = CcxtAdapter(
        ExchangeConfig(
            name=name,
            exchange_id=name,
            api_key=DEV_SECRETS[f"{name}_api_key"],
            secret=DEV_SECRETS[f"{name}_secret"],
            base_url=url,
            timeout_ms=2000,
            enable_rate_limit=True,
        )
    )
    adapter.exchange.timeout_on_exit = 0
    return adapter


def stream_for(name: str, url: str) -> BookStream:
    return BookStream(StreamConfig(name, name, rest_url=url, timeout_ms=2000))
