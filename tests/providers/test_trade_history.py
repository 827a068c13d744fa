"""Our trades as each venue's history shows them (reconciliation's fill matching): every page read, each
trade once, amounts from the venue's own text. How a venue pages and writes its trades lives in its
class (`trade_history`, `trade_figures`, `traits.trade_history_all_pairs`), not in
`providers/exchanges/trades.py`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from models.market import OrderType, PlaceOrderRequest, Side
from providers.exchanges.ccxt_adapter import CcxtAdapter, client_order_id
from providers.exchanges.trades import venue_trades
from tests.providers.conftest import VenueControl, exchange_config

Venue = tuple[CcxtAdapter, VenueControl]
D = Decimal
LEVELS = 60  # more than one of Kraken's 50-trade pages
STEP = D("0.001")


async def test_every_trade_is_read_once_with_the_venue_s_exact_amounts(venue: Venue) -> None:
    adapter, control = venue
    asks = [(str(D("68000.01") + i), str(STEP)) for i in range(LEVELS)]
    await control.book("BTC-GBP", bids=[("67990", "1")], asks=asks)
    since = datetime.now(UTC) - timedelta(seconds=5)
    for amount in ("0.055", "0.003"):  # 58 trades, one per level walked
        await adapter.place_order(
            PlaceOrderRequest(
                symbol="BTC-GBP",
                side=Side.BUY,
                type=OrderType.MARKET,
                amount=D(amount),
                client_order_id=client_order_id(uuid.uuid4(), 1),
            )
        )

    trades = await venue_trades(adapter, int(since.timestamp() * 1000))

    assert len(trades) == 58 and len({t.trade_id for t in trades}) == 58
    assert {t.symbol for t in trades} == {"BTC-GBP"} and {t.side for t in trades} == {"buy"}
    assert all(t.amount == STEP for t in trades)
    prices = sorted(t.cost / t.amount for t in trades)
    assert prices == [D("68000.01") + i for i in range(58)]  # cost exact to the penny's fraction
    assert sum((t.amount for t in trades), D(0)) == D("0.058")
    assert all(isinstance(t.fee, Decimal) and t.fee >= 0 and t.fee_currency for t in trades)


@pytest.mark.parametrize(
    ("name", "info", "exact"),
    [
        ("binance", {"qty": "0.3", "quoteQty": "20400.003", "commission": "0.0003", "commissionAsset": "BTC"},
         (D("0.3"), D("20400.003"), D("0.0003"), "BTC")),
        ("kraken", {"vol": "0.3", "cost": "20400.003", "fee": "0.0003"},
         (D("0.3"), D("20400.003"), D("0.0003"), "GBP")),
    ],
)  # fmt: skip
def test_trade_amounts_come_from_the_venue_s_text_not_ccxt_s_floats(
    name: str, info: dict[str, str], exact: tuple[Decimal, Decimal, Decimal, str]
) -> None:
    adapter = CcxtAdapter(exchange_config(name, "http://127.0.0.1:9"))  # never called: no network
    lossy = {"amount": 0.1 + 0.2, "cost": 20400.003000000001, "fee": {"cost": 0.0003, "currency": "GBP"}}
    figures = adapter.trade_figures({**lossy, "info": info})
    assert (figures.amount, figures.cost, figures.fee, figures.fee_currency) == exact
