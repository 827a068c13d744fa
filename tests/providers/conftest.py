"""Session-wide sandboxes (Binance, Kraken, OTC) in the test loop, and per-test adapters on fresh venues.

Each test resets its venue through the control API and turns the random walk off, so books and
balances are exactly what the test sets up. ccxt's real classes talk to the sandboxes over HTTP.

ccxt's client-side throttle (`enable_rate_limit`, on in production) is on here for Binance and off for
Kraken (`THROTTLED`). Measured on this suite (2 cores): all off 16 s, Binance on 37 s, both on 317 s.
Binance's throttle spaces calls by 50 ms per unit of request weight (a fresh adapter's market load
weighs 20, so its next call waits 1 s): a few tenths of a second per test, for running the adapter's
contract (faults, unknown outcomes, concurrent private calls) as production runs it. Kraken's spaces
public calls by 1 s and private ones by 3 s (ccxt's model of Kraken's Starter-tier counter, without its
burst); a Kraken test makes 5-30 calls, so it would take minutes. These tests assert behaviour (what a
call returns or raises, what the venue holds), never speed, so Kraken without the throttle proves the
same things; with it, `test_rate_limit_then_ban_then_recovery[kraken]` would also stop testing the ban
(its third call arrives after the venue's 0.6 s ban has ended). What Kraken's throttle does under load is
tested with it on: tests/market_data (live books; 30 concurrent orders through the saga) and
`test_build_adapters_from_settings` (the production build, throttle on).

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

# Venues whose adapters run with ccxt's throttle on, as in production (module docstring: why not Kraken).
THROTTLED = frozenset({"binance"})
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
