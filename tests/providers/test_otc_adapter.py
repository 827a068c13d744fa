"""The OTC desk over its RFQ protocol: quote with a time-to-live, accept, settle; and its failures."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest

from config.settings import DEV_SECRETS, Settings
from models.market import OrderType, PlaceOrderRequest, Side, VenueOrderStatus
from providers.exchanges.base import (
    AmbiguousPlacement,
    ExecutionAdapter,
    InsufficientVenueFunds,
    InvalidVenueOrder,
    RetryableVenueError,
    TerminalVenueError,
    VenueAuthError,
)
from providers.exchanges.ccxt_adapter import CcxtAdapter, build_adapters, client_order_id
from providers.exchanges.otc_adapter import OtcAdapter
from sandbox.runner import RunningSandboxes
from tests.providers.conftest import VenueControl

Otc = tuple[OtcAdapter, VenueControl]
D = Decimal
OTC_KEY = {"X-API-Key": DEV_SECRETS["otc_api_key"]}


def block(amount: str = "2", side: Side = Side.BUY, price: Decimal | None = None) -> PlaceOrderRequest:
    return PlaceOrderRequest(
        symbol="BTC-GBP",
        side=side,
        type=OrderType.MARKET,
        amount=D(amount),
        price=price,
        client_order_id=client_order_id(uuid.uuid4(), 1),
    )


async def test_quote_has_a_price_around_the_mid_and_an_expiry(otc: Otc) -> None:
    adapter, control = otc
    await control.price("BTC-GBP", "68000")
    buy = await adapter.quote("BTC-GBP", Side.BUY, D("2"))
    sell = await adapter.quote("BTC-GBP", Side.SELL, D("2"))
    assert buy.price == D("68102.00") and sell.price == D("67898.00")  # mid +/- the desk's 15 bps
    assert buy.quote_amount == D("136204.00")
    assert buy.expires_at > datetime.now(tz=UTC)


async def test_order_book_is_one_deep_level_per_side(otc: Otc) -> None:
    adapter, control = otc
    await control.price("BTC-GBP", "68000")
    book = await adapter.order_book("BTC-GBP")
    assert isinstance(adapter, ExecutionAdapter)
    assert [(lv.price, lv.amount) for lv in book.asks] == [(D("68102.00"), D("5"))]
    assert [(lv.price, lv.amount) for lv in book.bids] == [(D("67898.00"), D("5"))]
    assert adapter.fees("BTC-GBP").taker == 0


async def test_place_accepts_and_settles_at_the_quoted_price(otc: Otc) -> None:
    adapter, control = otc
    await control.price("BTC-GBP", "68000")
    before = await control.balances()
    req = block("2", price=D("68200"))
    placed = await adapter.place_order(req)
    assert placed.status is VenueOrderStatus.FILLED
    assert placed.filled == D("2") and placed.average_price == D("68102.00")
    assert placed.quote_filled == D("136204.00") and placed.client_order_id == req.client_order_id
    assert placed.raw["settled"] is True
    after = await control.balances()
    assert after["BTC"]["free"] - before["BTC"]["free"] == D("2")
    assert before["GBP"]["free"] - after["GBP"]["free"] == D("136204.00")
    status = await adapter.order_status("BTC-GBP", placed.provider_order_id)
    assert status.filled == D("2")
    assert (await adapter.cancel_order("BTC-GBP", placed.provider_order_id)).status is VenueOrderStatus.FILLED


async def test_quote_beyond_the_protective_price_is_not_accepted(otc: Otc) -> None:
    adapter, control = otc
    await control.price("BTC-GBP", "68000")
    with pytest.raises(InvalidVenueOrder):
        await adapter.place_order(block("2", price=D("68050")))
    with pytest.raises(InvalidVenueOrder):
        await adapter.place_order(block("2", side=Side.SELL, price=D("67950")))


async def test_expired_quote_is_refused_and_retryable(otc: Otc, sandboxes: RunningSandboxes) -> None:
    adapter, control = otc
    await control.post("otc", {"ttl_ms": 50})
    q = await adapter.quote("BTC-GBP", Side.BUY, D("1"))
    await asyncio.sleep(0.1)
    async with httpx.AsyncClient(base_url=sandboxes.urls["otc"], headers=OTC_KEY) as raw:
        r = await raw.post(f"/v1/quotes/{q.quote_id}/accept", json={"client_id": "late"})
    assert r.status_code == 410 and r.json()["error"] == "quote_expired"
    with pytest.raises(RetryableVenueError):
        await adapter._call("POST", f"/v1/quotes/{q.quote_id}/accept", json={"client_id": "late"})


async def test_accept_is_idempotent_by_client_id(otc: Otc, sandboxes: RunningSandboxes) -> None:
    adapter, _ = otc
    q = await adapter.quote("BTC-GBP", Side.BUY, D("1"))
    async with httpx.AsyncClient(base_url=sandboxes.urls["otc"], headers=OTC_KEY) as raw:
        first = (await raw.post(f"/v1/quotes/{q.quote_id}/accept", json={"client_id": "c1"})).json()
        again = (await raw.post(f"/v1/quotes/{q.quote_id}/accept", json={"client_id": "c1"})).json()
        other = await raw.post(f"/v1/quotes/{q.quote_id}/accept", json={"client_id": "c2"})
    assert first["trade_id"] == again["trade_id"]
    assert other.status_code == 409


async def test_timeout_on_accept_is_ambiguous_and_resolves_by_client_id(otc: Otc) -> None:
    adapter, control = otc
    await control.fault("timeout_after_accept", mode="hang", hang_ms=2000, count=1)
    req = block("1")
    with pytest.raises(AmbiguousPlacement) as caught:
        await adapter.place_order(req)
    assert caught.value.client_order_id == req.client_order_id
    resolved = await adapter.resolve_placement("BTC-GBP", req.client_order_id)
    assert resolved is not None and resolved.filled == D("1") and resolved.raw["settled"] is True
    assert await adapter.resolve_placement("BTC-GBP", client_order_id(uuid.uuid4(), 1)) is None


async def test_desk_failures_map_to_our_kinds(otc: Otc, sandboxes: RunningSandboxes) -> None:
    adapter, control = otc
    await control.fault("maintenance", count=1)
    with pytest.raises(RetryableVenueError):
        await adapter.quote("BTC-GBP", Side.BUY, D("1"))
    await control.fault("http_error", status=502, paths=["/accept"], count=1)
    with pytest.raises(AmbiguousPlacement):
        await adapter.place_order(block("1"))
    await control.set_balances(GBP="100")
    with pytest.raises(InsufficientVenueFunds):
        await adapter.place_order(block("1"))
    with pytest.raises(InvalidVenueOrder):
        await adapter.quote("DOGE-GBP", Side.BUY, D("1"))
    with pytest.raises(TerminalVenueError):
        await adapter.withdraw("BTC", D("1"), "bc1q", client_id="x")
    stranger = OtcAdapter(name="otc", base_url=sandboxes.urls["otc"], api_key="wrong")
    try:
        with pytest.raises(VenueAuthError):
            await stranger.load()
    finally:
        await stranger.close()


async def test_build_adapters_from_settings(sandboxes: RunningSandboxes) -> None:
    settings = Settings(
        environment="test",
        binance_url=sandboxes.urls["binance"],
        kraken_url=sandboxes.urls["kraken"],
        otc_url=sandboxes.urls["otc"],
    )
    adapters = build_adapters(settings)  # as production builds them: ccxt's throttle on
    try:
        assert set(adapters) == {"binance", "kraken", "otc"}
        for adapter in adapters.values():
            assert isinstance(adapter, ExecutionAdapter)
            if isinstance(adapter, CcxtAdapter):
                assert adapter.exchange.enableRateLimit
                adapter.exchange.timeout_on_exit = 0
            await adapter.load()
            book = await adapter.order_book("BTC-GBP", 5)
            assert book.bids and book.asks and book.bids[0].price < book.asks[0].price
    finally:
        for adapter in adapters.values():
            await adapter.close()


async def test_build_adapters_defaults_to_the_local_sandboxes_outside_production() -> None:
    adapters = build_adapters(Settings(environment="test", sandbox_port=9100))
    try:
        binance, kraken = adapters["binance"], adapters["kraken"]
        assert isinstance(binance, CcxtAdapter) and isinstance(kraken, CcxtAdapter)
        assert binance.exchange.urls["api"]["public"] == "http://127.0.0.1:9100/api/v3"
        assert kraken.exchange.urls["api"]["private"] == "http://127.0.0.1:9101"
        assert isinstance(adapters["otc"], OtcAdapter)
    finally:
        for adapter in adapters.values():
            if isinstance(adapter, CcxtAdapter):
                adapter.exchange.timeout_on_exit = 0
            await adapter.close()


def test_bitstamp_by_configuration_never_goes_online() -> None:
    from providers.exchanges.ccxt_adapter import ExchangeConfig, build_exchange

    ex = build_exchange(ExchangeConfig("bitstamp", "bitstamp", "k", "s", base_url="http://127.0.0.1:9"))
    assert ex.id == "bitstamp"
    assert all(url.startswith("http://127.0.0.1:9/") for url in ex.urls["api"].values())
    with pytest.raises(ValueError):
        build_exchange(ExchangeConfig("x", "no-such-exchange", "k", "s"))
