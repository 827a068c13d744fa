"""The API and the worker each build one live-book keeper from settings and price from it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from api.routes.market import MarketState
from config import Settings
from models.market import SYMBOLS, QuoteOutcome, Side
from sandbox.runner import RunningSandboxes
from services.live_books import LiveBookSource
from tests.market_data.conftest import VENUES, depth_calls, eventually, fresh
from workers.registry import Dependencies

pytestmark = pytest.mark.asyncio(loop_scope="session")


def settings_for(venues: RunningSandboxes) -> Settings:
    return Settings(
        environment="test",
        binance_url=venues.urls["binance"],
        kraken_url=venues.urls["kraken"],
        otc_threshold_gbp=Decimal("100000000"),
        book_max_age_s=1.0,
    )


async def test_the_worker_router_prices_every_venue_from_its_live_books(venues: RunningSandboxes) -> None:
    for v in VENUES:
        await fresh(venues.urls[v])
    deps = Dependencies(settings=settings_for(venues), engine=None)  # type: ignore[arg-type]
    router = deps.best_execution_router()
    try:
        assert all(isinstance(src, LiveBookSource) for src in router.adapters.values())
        keeper = next(iter(router.adapters.values())).keeper  # type: ignore[attr-defined]
        keeper.start()
        await eventually(lambda: all(keeper.fresh_book(v, s) for v in VENUES for s in SYMBOLS))
        before = [await depth_calls(venues.urls[v]) for v in VENUES]
        record = await router.quote("ETH-GBP", Side.SELL, amount=Decimal("0.5"), max_slippage=Decimal("0.01"))
        assert {q.provider: (q.outcome, q.book_source) for q in record.quotes} == dict.fromkeys(
            VENUES, (QuoteOutcome.OK, "stream")
        )
        assert [await depth_calls(venues.urls[v]) for v in VENUES] == before
    finally:
        for close in deps.closers:
            result: Any = close()
            if result is not None:
                await result


async def test_the_api_market_data_reads_the_same_live_books(venues: RunningSandboxes) -> None:
    state = MarketState(settings_for(venues))
    state.start()
    try:
        market = state.market()
        keeper = state._keeper
        assert keeper is not None
        await eventually(lambda: all(keeper.fresh_book(v, "BTC-GBP") for v in VENUES))
        books, errors = await market.books("BTC-GBP")
        assert errors == {}
        assert {b.provider: b.source for b in books} == dict.fromkeys(VENUES, "stream")
    finally:
        await state.close()
