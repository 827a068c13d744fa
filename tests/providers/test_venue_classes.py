"""Each venue's specifics live in its own adapter class, picked by the venue wherever an adapter is built."""

from __future__ import annotations

from typing import Any

import pytest

from config import Settings
from providers.exchanges.binance import BinanceAdapter
from providers.exchanges.ccxt_adapter import CcxtAdapter, ExchangeConfig, build_adapters, build_exchange
from providers.exchanges.kraken import TIERS, KrakenAdapter, KrakenExchange


def _config(exchange_id: str, **overrides: Any) -> ExchangeConfig:
    return ExchangeConfig(
        exchange_id, exchange_id, "key", "c2VjcmV0", base_url="http://127.0.0.1:9", **overrides
    )


@pytest.mark.parametrize(
    ("exchange_id", "cls"),
    [("binance", BinanceAdapter), ("kraken", KrakenAdapter), ("bitstamp", CcxtAdapter)],
)
async def test_building_an_adapter_gives_the_venues_own_class(exchange_id: str, cls: type) -> None:
    adapter = CcxtAdapter(_config(exchange_id))
    try:
        assert type(adapter) is cls
        assert type(build_exchange(_config(exchange_id))).__name__ == type(adapter.exchange).__name__
    finally:
        adapter.exchange.timeout_on_exit = 0
        await adapter.close()


async def test_the_capability_tables_say_how_each_venue_differs() -> None:
    binance, kraken, other = (CcxtAdapter(_config(v)) for v in ("binance", "kraken", "bitstamp"))
    try:
        # Withdrawals: Binance keeps our id and is asked by it; Kraken only by the refid it answered.
        assert binance.withdrawals.lookup_by == "client_id"
        assert binance.withdrawals.client_id_param == "withdrawOrderId"
        assert kraken.withdrawals.lookup_by == "venue_ref" and kraken.traits.withdraws_to_key
        assert binance.traits.cancel_answers_order and not kraken.traits.cancel_answers_order
        # Their own words for errors; a venue we know only through ccxt has none of theirs.
        assert "-1007" in binance.traits.errors.unknown_outcome_codes
        assert "EOrder:Insufficient funds" in kraken.traits.errors.insufficient_markers
        assert other.traits.errors.unknown_outcome_codes == frozenset()
        assert not other.traits.errors.insufficient_markers
    finally:
        for a in (binance, kraken, other):
            a.exchange.timeout_on_exit = 0
            await a.close()


async def test_kraken_keeps_to_its_tier_and_its_share_of_the_key() -> None:
    adapter = CcxtAdapter(_config("kraken", account_tier="pro", key_share=2))
    try:
        exchange = adapter.exchange
        assert isinstance(exchange, KrakenExchange)
        assert exchange.rest_counter.ceiling == TIERS["pro"].rest_ceiling / 2
        assert exchange.rest_counter.decay_per_s == TIERS["pro"].rest_decay_per_s / 2
        assert exchange.trading_counter.ceiling == TIERS["pro"].trading_ceiling / 2
    finally:
        adapter.exchange.timeout_on_exit = 0
        await adapter.close()


async def test_the_production_build_gives_each_venue_its_class_and_kraken_its_configured_tier() -> None:
    settings = Settings(
        environment="test", sandbox_port=9100, kraken_account_tier="intermediate", market_data_processes=3
    )
    adapters = build_adapters(settings)
    try:
        assert type(adapters["binance"]) is BinanceAdapter
        kraken = adapters["kraken"]
        assert isinstance(kraken, KrakenAdapter)
        assert kraken.exchange.rest_counter.ceiling == TIERS["intermediate"].rest_ceiling / 3
    finally:
        for a in adapters.values():
            if isinstance(a, CcxtAdapter):
                a.exchange.timeout_on_exit = 0
            await a.close()
