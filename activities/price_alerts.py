"""Price-alert activities: one check of every active alert against the venues' live best prices."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from models.market import SYMBOLS
from models.price_alerts import PriceAlertCheckInput, PriceAlertCheckResult
from services import price_alerts
from services.market_data import MarketData


class PriceAlertActivities:
    """`adapters` gives the worker's book sources (its live books, or the venue adapters) on first use."""

    def __init__(self, *, engine: AsyncEngine, adapters: Callable[[], Mapping[str, Any]]) -> None:
        self._engine = engine
        self._adapters = adapters
        self._market: MarketData | None = None

    def _market_data(self) -> MarketData:
        if self._market is None:
            exchanges = {name: a for name, a in self._adapters().items() if name != "otc"}
            self._market = MarketData(exchanges, ttl_s=0)  # each check reads each book once, fresh
        return self._market

    @activity.defn(name="price_alerts.check")
    async def check(self, data: PriceAlertCheckInput) -> PriceAlertCheckResult:
        """Read each symbol's best bid and ask across the venues, then evaluate the alerts (idempotent: the
        alert rows carry their state, and a firing's outbox row is keyed by the alert and firing number)."""
        best = await asyncio.gather(*(self._market_data().best_price(s) for s in SYMBOLS))
        prices = {
            p.symbol: price_alerts.ObservedPrice(bid=p.bid, ask=p.ask)
            for p in best
            if p.bid is not None or p.ask is not None
        }
        result = await price_alerts.check_alerts(self._engine, prices, data)
        result.symbols_without_price = sorted(set(SYMBOLS) - set(prices))
        return result
