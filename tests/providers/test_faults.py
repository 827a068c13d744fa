"""Every injected fault, through ccxt, and the error kind the adapter maps it to (per venue).

Also: the ambiguous placement (timeout after the venue accepted) ends with exactly one order at the
venue and the adapter knowing its fill; "not found" lag is tolerated; a truly absent order is
reported absent after the retries; bad signatures, keys, timestamps and nonces.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from decimal import Decimal

import pytest
from ccxt.base import errors as ccxt_errors

from models.market import OrderType, PlaceOrderRequest, Side, VenueOrderStatus
from providers.exchanges.base import (
    AmbiguousPlacement,
    InsufficientVenueFunds,
    InvalidVenueOrder,
    OrderNotFoundAtVenue,
    RetryableVenueError,
    TerminalVenueError,
    VenueAuthError,
)
from providers.exchanges.ccxt_adapter import CcxtAdapter, client_order_id
from sandbox.runner import RunningSandboxes
from tests.providers.conftest import VenueControl, exchange_config, quick_close

Venue = tuple[CcxtAdapter, VenueControl]
D = Decimal

BOOK = {"bids": [("67990", "5")], "asks": [("68000", "5")]}
# The path of each venue's order endpoints, for faults limited to placement or lookups.
PLACE_PATH = {"binance": "/api/v3/order", "kraken": "/0/private/AddOrder"}
DEPTH_PATH = {"binance": "/api/v3/depth", "kraken": "/0/public/Depth"}


def buy(amount: str = "0.01", **kw: object) -> PlaceOrderRequest:
    values: dict[str, object] = {
        "symbol": "BTC-GBP",
        "side": Side.BUY,
        "type": OrderType.MARKET,
        "amount": D(amount),
        "client_order_id": client_order_id(uuid.uuid4(), 1),
    }
    values.update(kw)
    return PlaceOrderRequest.model_validate(values)


def placements(calls: list[str], venue: str) -> int:
    return sum(1 for c in calls if c == f"POST {PLACE_PATH[venue]}")


async def test_latency_is_added(venue: Venue) -> None:
    adapter, control = venue
    await control.fault("latency", latency_ms=300, paths=[DEPTH_PATH[control.name]], count=1)
    start = time.monotonic()
    book = await adapter.order_book("BTC-GBP", 5)
    assert time.monotonic() - start >= 0.3
    assert book.asks


async def test_5xx_on_a_read_is_retryable(venue: Venue) -> None:
    adapter, control = venue
    await control.fault("http_error", status=502, paths=[DEPTH_PATH[control.name]], count=1)
    with pytest.raises(RetryableVenueError):
        await adapter.order_book("BTC-GBP", 5)
    assert (await adapter.order_book("BTC-GBP", 5)).bids  # one occurrence only


async def test_5xx_on_placement_is_ambiguous_and_a_truly_absent_order_resolves_to_none(venue: Venue) -> None:
    adapter, control = venue
    await control.book("BTC-GBP", **BOOK)
    await control.fault("http_error", status=502, paths=[PLACE_PATH[control.name]], count=1)
    req = buy()
    with pytest.raises(AmbiguousPlacement) as caught:
        await adapter.place_order(req)
    assert caught.value.client_order_id == req.client_order_id
    # The gateway failed before the venue saw it: several lookups, all "not found", then absent.
    assert await adapter.resolve_placement("BTC-GBP", req.client_order_id) is None
    assert await control.orders() == []
    assert placements(await control.calls(), control.name) == 1  # never resent


@pytest.mark.parametrize("mode", ["hang", "drop"])
async def test_timeout_after_accept_resolves_to_exactly_one_filled_order(venue: Venue, mode: str) -> None:
    adapter, control = venue
    await control.book("BTC-GBP", **BOOK)
    await control.fault("timeout_after_accept", mode=mode, hang_ms=2500, count=1)
    req = buy("0.02")
    with pytest.raises(AmbiguousPlacement) as caught:
        await adapter.place_order(req)
    assert caught.value.client_order_id == req.client_order_id

    resolved = await adapter.resolve_placement("BTC-GBP", req.client_order_id)
    assert resolved is not None
    assert resolved.status is VenueOrderStatus.FILLED
    assert resolved.client_order_id == req.client_order_id
    assert resolved.filled == D("0.02") and resolved.quote_filled == D("1360")
    [at_venue] = await control.orders()  # exactly one order
    assert at_venue["client_order_id"] == req.client_order_id
    assert D(at_venue["fee"]) == resolved.fee > 0
    assert at_venue["fee_asset"] == resolved.fee_currency
    assert placements(await control.calls(), control.name) == 1


async def test_not_found_lag_is_tolerated_by_resolution(venue: Venue) -> None:
    adapter, control = venue
    await control.book("BTC-GBP", **BOOK)
    await control.fault("timeout_after_accept", mode="drop", count=1)
    await control.fault("not_found_lag", lookups=3, count=1)
    req = buy()
    with pytest.raises(AmbiguousPlacement):
        await adapter.place_order(req)
    resolved = await adapter.resolve_placement("BTC-GBP", req.client_order_id)
    assert resolved is not None and resolved.filled == D("0.01")
    lookups = [c for c in await control.calls() if not c.startswith("POST " + PLACE_PATH[control.name])]
    assert len(lookups) >= 2  # the first answers said "not found"; the adapter kept looking


async def test_not_found_lag_after_a_clean_placement(venue: Venue) -> None:
    # Kraken's AddOrder returns only a txid, so the adapter must look the order up at once: the lag
    # must not turn a successful placement into an error.
    adapter, control = venue
    await control.book("BTC-GBP", **BOOK)
    await control.fault("not_found_lag", lookups=2, count=1)
    placed = await adapter.place_order(buy())
    assert placed.status is VenueOrderStatus.FILLED and placed.filled == D("0.01")


async def test_lookups_that_keep_failing_are_not_reported_absent(venue: Venue) -> None:
    adapter, control = venue
    await control.fault("maintenance")  # every request, until cleared
    with pytest.raises(RetryableVenueError):
        await adapter.resolve_placement("BTC-GBP", client_order_id(uuid.uuid4(), 1))


async def test_rate_limit_then_ban_then_recovery(venue: Venue) -> None:
    adapter, control = venue
    # The ban outlasts a public read's wait in Kraken's throttle (about 1 s a public call).
    await control.fault("rate_limit", ban_after=1, ban_seconds=2.0, count=2)
    with pytest.raises(RetryableVenueError) as first:
        await adapter.balance("GBP")
    with pytest.raises(RetryableVenueError) as second:
        await adapter.balance("GBP")
    with pytest.raises(RetryableVenueError) as during_ban:
        await adapter.order_book("BTC-GBP")
    if control.name == "binance":
        assert "429" in str(first.value) and "418" in str(second.value) and "418" in str(during_ban.value)
    else:
        assert "Rate limit exceeded" in str(first.value) and "Temporary lockout" in str(second.value)
    assert isinstance(first.value.__cause__, ccxt_errors.DDoSProtection)
    await asyncio.sleep(2.1)
    assert (await adapter.balance("GBP")).total > 0


async def test_rate_limited_placement_is_retryable_not_ambiguous(venue: Venue) -> None:
    adapter, control = venue
    await control.fault("rate_limit", paths=[PLACE_PATH[control.name]], count=1)
    with pytest.raises(RetryableVenueError):
        await adapter.place_order(buy())
    assert await control.orders() == []


async def test_maintenance_is_retryable_even_when_placing(venue: Venue) -> None:
    adapter, control = venue
    await control.book("BTC-GBP", **BOOK)
    await control.fault("maintenance", count=2)
    with pytest.raises(RetryableVenueError) as read:
        await adapter.order_book("BTC-GBP")
    with pytest.raises(RetryableVenueError) as place:
        await adapter.place_order(buy())
    assert not isinstance(place.value, AmbiguousPlacement)
    expected = "System is under maintenance" if control.name == "binance" else "EService:Unavailable"
    assert expected in str(read.value) and expected in str(place.value)
    assert await control.orders() == []


async def test_partial_fill(venue: Venue) -> None:
    adapter, control = venue
    await control.book("BTC-GBP", **BOOK)
    await control.fault("partial_fill", ratio="0.4", count=1)
    placed = await adapter.place_order(buy("0.1"))
    assert placed.filled == D("0.04") and placed.amount == D("0.1")
    assert placed.status is VenueOrderStatus.CANCELLED  # the rest expired
    resting = await adapter.place_order(buy("0.1", type=OrderType.LIMIT, price=D("68000")))
    assert resting.status is VenueOrderStatus.FILLED  # fault used up: fills fully


async def test_partial_fill_of_a_resting_order_stays_open(venue: Venue) -> None:
    adapter, control = venue
    await control.book("BTC-GBP", **BOOK)
    await control.fault("partial_fill", ratio="0.5", count=1)
    placed = await adapter.place_order(buy("0.1", type=OrderType.LIMIT, price=D("68000")))
    assert placed.status is VenueOrderStatus.PARTIALLY_FILLED and placed.filled == D("0.05")
    cancelled = await adapter.cancel_order("BTC-GBP", placed.provider_order_id)
    assert cancelled.status is VenueOrderStatus.CANCELLED and cancelled.filled == D("0.05")


async def test_insufficient_balance_fault_and_real_shortfall(venue: Venue) -> None:
    adapter, control = venue
    await control.book("BTC-GBP", **BOOK)
    await control.fault("insufficient_balance", count=2)
    with pytest.raises(InsufficientVenueFunds):
        await adapter.place_order(buy())
    with pytest.raises(InsufficientVenueFunds):
        await adapter.withdraw("BTC", D("0.01"), "bc1qdest", client_id="w1")
    await control.set_balances(GBP="10")
    with pytest.raises(InsufficientVenueFunds):
        await adapter.place_order(buy())
    assert await control.orders() == []


async def test_duplicate_open_client_order_id_is_refused(venue: Venue) -> None:
    adapter, control = venue
    await control.book("BTC-GBP", **BOOK)
    req = buy(type=OrderType.LIMIT, price=D("60000"))
    await adapter.place_order(req)
    with pytest.raises(TerminalVenueError):
        await adapter.place_order(req)
    assert len(await control.orders()) == 1


async def test_cancel_of_an_unknown_order_is_not_found(venue: Venue) -> None:
    adapter, control = venue
    unknown = "999999" if control.name == "binance" else "OAAAAA-BBBBB-CCCCCC"
    with pytest.raises(OrderNotFoundAtVenue):
        await adapter.cancel_order("BTC-GBP", unknown)


async def test_unknown_market_is_an_invalid_order(venue: Venue) -> None:
    adapter, _ = venue
    with pytest.raises(InvalidVenueOrder):
        await adapter.place_order(buy().model_copy(update={"symbol": "DOGE-GBP"}))


@pytest.mark.parametrize("which", ["secret", "key"])
@pytest.mark.parametrize("name", ["binance", "kraken"])
async def test_bad_credentials_are_auth_errors(sandboxes: RunningSandboxes, name: str, which: str) -> None:
    wrong = {"secret": "d3Jvbmctc2VjcmV0"} if which == "secret" else {"api_key": "someone-else"}
    adapter = quick_close(CcxtAdapter(exchange_config(name, sandboxes.urls[name], **wrong)))
    try:
        # Binance signs even the load (its fee endpoint); Kraken's load is public. Either way the first
        # private call fails as an authentication error, never as something worth retrying.
        with pytest.raises(VenueAuthError):
            await adapter.balance("GBP")
    finally:
        await adapter.close()


async def test_binance_timestamp_outside_recv_window_is_retryable(sandboxes: RunningSandboxes) -> None:
    adapter = quick_close(CcxtAdapter(exchange_config("binance", sandboxes.urls["binance"])))
    try:
        await adapter.load()
        adapter.exchange.options["timeDifference"] = 120_000  # our clock two minutes behind the venue's
        with pytest.raises(RetryableVenueError) as caught:
            await adapter.balance("GBP")
        assert "-1021" in str(caught.value)
    finally:
        await adapter.close()


async def test_kraken_stale_nonce_is_retryable(sandboxes: RunningSandboxes) -> None:
    # Two processes sharing one key, the second with a slower clock: its nonce is not increasing.
    url = sandboxes.urls["kraken"]
    first = quick_close(CcxtAdapter(exchange_config("kraken", url)))
    second = quick_close(CcxtAdapter(exchange_config("kraken", url, options={"timeDifference": 60_000})))
    try:
        await first.load()
        await second.load()
        await first.balance("GBP")
        with pytest.raises(RetryableVenueError) as caught:
            await second.balance("GBP")
        assert "EAPI:Invalid nonce" in str(caught.value)
        assert isinstance(caught.value.__cause__, ccxt_errors.InvalidNonce)
    finally:
        await first.close()
        await second.close()


# ------------------------------------------------------------------ the mapping itself, per ccxt class


@pytest.mark.parametrize(
    ("error", "reading", "placing"),
    [
        (ccxt_errors.NetworkError, RetryableVenueError, AmbiguousPlacement),
        (ccxt_errors.RequestTimeout, RetryableVenueError, AmbiguousPlacement),
        (ccxt_errors.ExchangeNotAvailable, RetryableVenueError, AmbiguousPlacement),
        (ccxt_errors.OnMaintenance, RetryableVenueError, RetryableVenueError),
        (ccxt_errors.DDoSProtection, RetryableVenueError, RetryableVenueError),
        (ccxt_errors.RateLimitExceeded, RetryableVenueError, RetryableVenueError),
        (ccxt_errors.InvalidNonce, RetryableVenueError, RetryableVenueError),
        (ccxt_errors.InsufficientFunds, InsufficientVenueFunds, InsufficientVenueFunds),
        (ccxt_errors.InvalidOrder, InvalidVenueOrder, InvalidVenueOrder),
        (ccxt_errors.BadSymbol, InvalidVenueOrder, InvalidVenueOrder),
        (ccxt_errors.AuthenticationError, VenueAuthError, VenueAuthError),
        (ccxt_errors.PermissionDenied, VenueAuthError, VenueAuthError),
        (ccxt_errors.OrderNotFound, OrderNotFoundAtVenue, OrderNotFoundAtVenue),
        (ccxt_errors.ExchangeError, TerminalVenueError, TerminalVenueError),
    ],
)
async def test_error_kinds(venue: Venue, error: type[Exception], reading: type, placing: type) -> None:
    adapter, _ = venue
    e = error("venue said no")
    read_kind = adapter._map_error(e)
    place_kind = adapter._map_error(e, placing=True, cid="abc")
    assert type(read_kind) is reading
    assert type(place_kind) is placing
    if placing is AmbiguousPlacement:
        assert isinstance(place_kind, AmbiguousPlacement) and place_kind.client_order_id == "abc"


async def test_binance_unknown_execution_status_codes_are_ambiguous_when_placing(
    sandboxes: RunningSandboxes,
) -> None:
    adapter = quick_close(CcxtAdapter(exchange_config("binance", sandboxes.urls["binance"])))
    try:
        # -1007: "Timeout waiting for response from backend server. Send status unknown."
        e = ccxt_errors.ExchangeError('binance {"code":-1007,"msg":"Timeout waiting for response"}')
        assert isinstance(adapter._map_error(e, placing=True, cid="x"), AmbiguousPlacement)
        assert type(adapter._map_error(e)) is RetryableVenueError
    finally:
        await adapter.close()
