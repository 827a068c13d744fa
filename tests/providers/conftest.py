"""Session-wide sandboxes (Binance, Kraken, OTC) in the test loop, and per-test adapters on fresh venues.

Each test resets its venue through the control API and turns the random walk off, so books and
balances are exactly what the test sets up. ccxt's real classes talk to the sandboxes over HTTP.

The venues' request limits are kept client-side here as in production (`enable_rate_limit`, `THROTTLED`):
Binance by ccxt's throttle (50 ms per unit of request weight: a fresh adapter's market load weighs 20, so
its next call waits 1 s), Kraken as Kraken counts them (providers/exchanges/kraken.py: private calls
from the key's decaying counter, with its burst; public calls about 1 s apart). With ccxt's own model of
Kraken (3 s per private call, no burst) this directory took 317 s, so Kraken ran unthrottled; now the
whole directory takes about a minute with both on, and runs the adapter's contract (faults, unknown
outcomes, concurrent private calls) as production runs it.

`exchange_config` is also how tests/orders and tests/api_trading build their adapters; their conftests
say why they turn the throttle off.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest
import pytest_asyncio

from config.settings import DEV_SECRETS
from providers.exchanges.ccxt_adapter import CcxtAdapter, ExchangeConfig
from providers.exchanges.otc_adapter import OtcAdapter
from sandbox.runner import RunningSandboxes, start_venues

# Venues whose adapters keep the venue's request limits, as in production (module docstring).
THROTTLED = frozenset({"binance", "kraken"})
# Short enough to keep the directory fast, long enough for a loaded machine.
TIMEOUT_MS = 1000
BACKOFF_S = 0.05


@dataclass
class VenueControl:
    """The sandbox's /_control API, for setting up and inspecting a venue."""

    name: str
    url: str
    http: httpx.AsyncClient

    async def post(self, path: str, body: Any = None) -> Any:
        r = await self.http.post(f"{self.url}/_control/{path}", json=body if body is not None else {})
        r.raise_for_status()
        return r.json()

    async def reset(self) -> None:
        await self.post("reset")
        await self.post("walk", {"enabled": False})

    async def fault(self, kind: str, **spec: Any) -> None:
        await self.post("faults", {"kind": kind, **spec})

    async def book(self, symbol: str, bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> None:
        await self.post("book", {"symbol": symbol, "bids": bids, "asks": asks})

    async def price(self, symbol: str, mid: str) -> None:
        await self.post("price", {"symbol": symbol, "mid": mid})

    async def set_balances(self, **amounts: str) -> None:
        await self.post("balances", amounts)

    async def balances(self) -> dict[str, dict[str, Decimal]]:
        r = await self.http.get(f"{self.url}/_control/balances")
        return {a: {k: Decimal(v) for k, v in b.items()} for a, b in r.json().items()}

    async def orders(self) -> list[dict[str, Any]]:
        r = await self.http.get(f"{self.url}/_control/orders")
        orders: list[dict[str, Any]] = r.json()["orders"]
        return orders

    async def calls(self) -> list[str]:
        r = await self.http.get(f"{self.url}/_control/calls")
        calls: list[str] = r.json()["calls"]
        return calls


@pytest_asyncio.fixture(scope="session")
async def sandboxes() -> AsyncIterator[RunningSandboxes]:
    running = await start_venues(["binance", "kraken", "otc"], seed=7)
    try:
        yield running
    finally:
        await running.stop()


@pytest_asyncio.fixture(scope="session")
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


def exchange_config(name: str, url: str, **overrides: Any) -> ExchangeConfig:
    values: dict[str, Any] = {
        "name": name,
        "exchange_id": name,
        "api_key": DEV_SECRETS[f"{name}_api_key"],
        "secret": DEV_SECRETS[f"{name}_secret"],
        "base_url": url,
        "timeout_ms": TIMEOUT_MS,
        "enable_rate_limit": name in THROTTLED,
        "lookup_attempts": 4,
        "lookup_backoff_s": BACKOFF_S,
    }
    values.update(overrides)
    return ExchangeConfig(**values)


def quick_close(adapter: CcxtAdapter) -> CcxtAdapter:
    """ccxt waits 250 ms on close for TLS shutdowns; the sandboxes speak plain HTTP."""
    adapter.exchange.timeout_on_exit = 0
    return adapter


@pytest_asyncio.fixture(params=["binance", "kraken"])
async def venue(
    request: pytest.FixtureRequest, sandboxes: RunningSandboxes, http: httpx.AsyncClient
) -> AsyncIterator[tuple[CcxtAdapter, VenueControl]]:
    """(adapter, control) for a freshly reset venue; tests using it run once per exchange."""
    name: str = request.param
    control = VenueControl(name, sandboxes.urls[name], http)
    await control.reset()
    adapter = quick_close(CcxtAdapter(exchange_config(name, sandboxes.urls[name])))
    await adapter.load()
    try:
        yield adapter, control
    finally:
        await adapter.close()


@pytest_asyncio.fixture
async def otc(
    sandboxes: RunningSandboxes, http: httpx.AsyncClient
) -> AsyncIterator[tuple[OtcAdapter, VenueControl]]:
    control = VenueControl("otc", sandboxes.urls["otc"], http)
    await control.reset()
    adapter = OtcAdapter(
        name="otc",
        base_url=sandboxes.urls["otc"],
        api_key=DEV_SECRETS["otc_api_key"],
        timeout_s=TIMEOUT_MS / 1000,
        lookup_backoff_s=BACKOFF_S,
    )
    try:
        yield adapter, control
    finally:
        await adapter.close()
