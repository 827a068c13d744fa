"""What the adapters offer the saga for a placement whose outcome is unknown: the venue's own trade
history as a second witness, and the one failure that proves an order was never sent."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from devstack.ports import free_port
from models.market import OrderType, PlaceOrderRequest, Side
from providers.exchanges.base import AmbiguousPlacement, RetryableVenueError
from providers.exchanges.ccxt_adapter import CcxtAdapter, client_order_id
from sandbox.runner import RunningSandboxes
from tests.providers.conftest import VenueControl, exchange_config, quick_close

Venue = tuple[CcxtAdapter, VenueControl]
D = Decimal
BOOK = {"bids": [("67990", "1")], "asks": [("68000", "0.1"), ("68010", "5")]}


def buy(amount: str) -> PlaceOrderRequest:
    return PlaceOrderRequest(
        symbol="BTC-GBP",
        side=Side.BUY,
        type=OrderType.MARKET,
        amount=D(amount),
        client_order_id=client_order_id(uuid.uuid4(), 1),
    )


async def test_trade_history_finds_our_order_by_client_id_and_nothing_else(venue: Venue) -> None:
    adapter, control = venue
    await control.book("BTC-GBP", **BOOK)
    since = datetime.now(UTC) - timedelta(seconds=5)
    ours, other = buy("0.15"), buy("0.01")
    await adapter.place_order(other)
    placed = await adapter.place_order(ours)

    found = await adapter.find_in_trades("BTC-GBP", ours.client_order_id, since)

    assert found is not None
    assert found.provider_order_id == placed.provider_order_id
    assert found.client_order_id == ours.client_order_id
    assert found.filled == D("0.15")
    assert await adapter.find_in_trades("BTC-GBP", client_order_id(uuid.uuid4(), 1), since) is None
    # Trades before `since` are not searched.
    later = datetime.now(UTC) + timedelta(seconds=5)
    assert await adapter.find_in_trades("BTC-GBP", ours.client_order_id, later) is None


async def test_trade_history_is_read_through_every_page(venue: Venue) -> None:
    """Kraken pages 50 trades at a time: the order we look for is beyond the first page."""
    adapter, control = venue
    await control.book("BTC-GBP", bids=[("67990", "1")], asks=[(str(68000 + i), "0.001") for i in range(60)])
    since = datetime.now(UTC) - timedelta(seconds=5)
    ours = buy("0.055")  # walks 55 levels: 55 trades of its own
    await adapter.place_order(ours)
    await adapter.place_order(buy("0.003"))  # newer trades in front of ours

    found = await adapter.find_in_trades("BTC-GBP", ours.client_order_id, since)

    assert found is not None and found.client_order_id == ours.client_order_id
    assert found.filled == D("0.055")


async def test_a_refused_connection_proves_the_order_was_never_sent(sandboxes: RunningSandboxes) -> None:
    """No connection, no order: the one placement failure (besides a refusal) that allows another venue."""
    for name in ("binance", "kraken"):
        adapter = quick_close(CcxtAdapter(exchange_config(name, sandboxes.urls[name])))
        await adapter.load()
        closed = f"http://127.0.0.1:{free_port()}"
        adapter.exchange.urls["api"] = {k: closed + v[len(sandboxes.urls[name]) :]
                                        for k, v in adapter.exchange.urls["api"].items()}  # fmt: skip
        try:
            with pytest.raises(RetryableVenueError) as refused:
                await adapter.place_order(buy("0.01"))
            assert not isinstance(refused.value, AmbiguousPlacement)
            assert "not sent" in str(refused.value)
        finally:
            await adapter.close()


async def test_a_timeout_while_placing_is_still_ambiguous(venue: Venue) -> None:
    adapter, control = venue
    await control.book("BTC-GBP", **BOOK)
    await control.fault("timeout_after_accept", count=1, mode="hang", hang_ms=3000)
    with pytest.raises(AmbiguousPlacement):
        await adapter.place_order(buy("0.01"))
