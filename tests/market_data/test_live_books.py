"""Best execution from live books: the keeper, the router over it, and the venues' stream faults.

Real ccxt.pro streams over WebSockets against the sandboxes; ccxt's throttle on everywhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal

import pytest
import pytest_asyncio

from models.market import BestExecutionRecord, OrderBook, QuoteOutcome, Side
from providers.exchanges.ccxt_adapter import CcxtAdapter
from sandbox.runner import RunningSandboxes
from services.live_books import BookKeeper, LiveBookSource, rest_budgets
from services.router import Router, RouterParams
from tests.market_data.conftest import (
    VENUES,
    control,
    depth_calls,
    eventually,
    fresh,
    production_adapter,
    stream_for,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

SYMBOL = "BTC-GBP"
MAX_AGE_S = 0.6
BIDS = [["60000.00", "1.00000"], ["59990.00", "2.00000"], ["59980.00", "3.00000"]]
ASKS = [["60010.00", "1.00000"], ["60020.00", "2.00000"], ["60030.00", "3.00000"]]
# Kraken's pairs have other steps (BTC-GBP: price 0.1, amount 1e-8).
K_BIDS = [["60000.0", "1.00000000"], ["59990.0", "2.00000000"], ["59980.0", "3.00000000"]]
K_ASKS = [["60010.0", "1.00000000"], ["60020.0", "2.00000000"], ["60030.0", "3.00000000"]]


@dataclass
class Desk:
    keeper: BookKeeper
    router: Router
    adapters: dict[str, CcxtAdapter]
    urls: dict[str, str]


def levels(book: OrderBook) -> tuple[list[list[Decimal]], list[list[Decimal]]]:
    return [[lv.price, lv.amount] for lv in book.bids], [[lv.price, lv.amount] for lv in book.asks]


def as_dec(rows: list[list[str]]) -> list[list[Decimal]]:
    return [[Decimal(p), Decimal(a)] for p, a in rows]


async def set_books(urls: dict[str, str], b_asks: list[list[str]], k_asks: list[list[str]]) -> None:
    await control(urls["binance"], "book", {"symbol": SYMBOL, "bids": BIDS, "asks": b_asks})
    await control(urls["kraken"], "book", {"symbol": SYMBOL, "bids": K_BIDS, "asks": k_asks})


@pytest_asyncio.fixture(loop_scope="session")
async def desk(venues: RunningSandboxes) -> AsyncIterator[Desk]:
    urls = {v: venues.urls[v] for v in VENUES}
    for url in urls.values():
        await fresh(url)
        await control(url, "faults", method="DELETE")
    await set_books(urls, ASKS, K_ASKS)
    keeper = BookKeeper(
        {v: stream_for(v, urls[v]) for v in VENUES},
        [SYMBOL],
        budgets=rest_budgets(list(VENUES), processes=2),
        max_age_s=MAX_AGE_S,
        reconnect_after_s=1.0,
    )
    adapters = {v: production_adapter(v, urls[v]) for v in VENUES}
    for adapter in adapters.values():
        await adapter.load()
    router = Router(
        {v: LiveBookSource(v, keeper, adapters[v]) for v in VENUES},
        params=RouterParams(deadline_s=1.5, cool_down_s=0.5),
    )
    keeper.start()
    try:
        await eventually(lambda: all(keeper.fresh_book(v, SYMBOL) for v in VENUES))
        yield Desk(keeper, router, adapters, urls)
    finally:
        await keeper.stop()
        for adapter in adapters.values():
            await adapter.close()
        for url in urls.values():
            await fresh(url)
            await control(url, "faults", method="DELETE")


async def market_loads(url: str) -> int:
    """Market loads the venue has served (Binance's exchangeInfo, Kraken's AssetPairs)."""
    calls = (await control(url, "calls", method="GET"))["calls"]
    return sum(1 for c in calls if "exchangeinfo" in c.lower() or "assetpairs" in c.lower())


async def buy(desk: Desk, gbp: str = "1000") -> BestExecutionRecord:
    return await desk.router.quote(SYMBOL, Side.BUY, quote_amount=Decimal(gbp), max_slippage=Decimal("0.01"))


async def test_thirty_concurrent_orders_price_every_venue_from_live_books_without_a_venue_request(
    desk: Desk,
) -> None:
    before = {v: await depth_calls(u) for v, u in desk.urls.items()}
    records = await asyncio.gather(*(buy(desk) for _ in range(30)))
    after = {v: await depth_calls(u) for v, u in desk.urls.items()}
    for record in records:
        seen = {q.provider: q for q in record.quotes}
        assert {v: seen[v].outcome for v in VENUES} == dict.fromkeys(VENUES, QuoteOutcome.OK)
        for v in VENUES:
            assert seen[v].book_source == "stream"
            age = seen[v].book_age_ms
            assert age is not None and age <= MAX_AGE_S * 1000
            assert seen[v].depth_used == 1
            assert seen[v].verdict is not None
    assert after == before, "an order read a book from the venue although the live books were fresh"


async def test_the_better_venue_wins_and_the_record_says_why_each_won_or_lost(desk: Desk) -> None:
    await set_books(desk.urls, ASKS, [["59700.0", "1.00000000"], *K_ASKS])
    await eventually(
        lambda: (
            (b := desk.keeper.fresh_book("kraken", SYMBOL)) is not None
            and b.asks[0].price == Decimal("59700.0")
        )
    )
    record = await buy(desk)
    seen = {q.provider: q for q in record.quotes}
    assert [leg.provider for leg in record.legs] == ["kraken"]
    assert (seen["kraken"].verdict or "").startswith("won:")
    assert (seen["binance"].verdict or "").startswith("lost: all-in")

    await set_books(desk.urls, [["59900.00", "1.00000"], *ASKS], K_ASKS)
    await eventually(
        lambda: (
            (b := desk.keeper.fresh_book("binance", SYMBOL)) is not None
            and b.asks[0].price == Decimal("59900.00")
            and (k := desk.keeper.fresh_book("kraken", SYMBOL)) is not None
            and k.asks[0].price == Decimal("60010.0")
        )
    )
    record = await buy(desk)
    assert [leg.provider for leg in record.legs] == ["binance"]


@pytest.mark.parametrize(
    ("venue", "fault"), [("binance", "gap"), ("kraken", "gap"), ("kraken", "bad_checksum")]
)
async def test_a_gap_or_bad_checksum_resyncs_and_no_wrong_book_is_ever_priced(
    desk: Desk, venue: str, fault: str
) -> None:
    url = desk.urls[venue]
    bids = BIDS if venue == "binance" else K_BIDS
    asks = ASKS if venue == "binance" else K_ASKS
    decimals = ".00" if venue == "binance" else ".0"
    truths = [(as_dec(bids), as_dec(asks))]
    resyncs = desk.keeper.books[(venue, SYMBOL)].resyncs
    await control(url, "stream", {"kind": fault, "count": 1})
    seen: list[OrderBook] = []
    sampling = True

    async def sample() -> None:
        while sampling:
            book = desk.keeper.fresh_book(venue, SYMBOL)
            if book is not None:
                seen.append(book)
            await asyncio.sleep(0.005)

    sampler = asyncio.ensure_future(sample())
    for i in range(1, 4):
        asks = [[f"{60010 - i}{decimals}", asks[0][1]], *asks[1:]]
        truths.append((as_dec(bids), as_dec(asks)))
        await control(url, "book", {"symbol": SYMBOL, "bids": bids, "asks": asks})
        await asyncio.sleep(0.25)
    final = truths[-1]
    await eventually(lambda: (b := desk.keeper.fresh_book(venue, SYMBOL)) is not None and levels(b) == final)
    sampling = False
    await sampler
    assert desk.keeper.books[(venue, SYMBOL)].resyncs > resyncs, "the fault did not make the book resync"
    wrong = [levels(b) for b in seen if levels(b) not in truths]
    assert not wrong, f"a book the venue never had was fresh: {wrong[:1]}"


async def test_a_stalled_stream_goes_stale_is_priced_by_rest_within_budget_then_streams_again(
    desk: Desk,
) -> None:
    url = desk.urls["kraken"]
    await control(url, "stream", {"kind": "stall"})
    await eventually(lambda: desk.keeper.fresh_book("kraken", SYMBOL) is None)
    reads_before = await depth_calls(url)
    records = await asyncio.gather(*(buy(desk) for _ in range(10)))
    reads = await depth_calls(url) - reads_before
    for record in records:
        seen = {q.provider: q for q in record.quotes}
        assert seen["binance"].book_source == "stream"
        kraken = seen["kraken"]
        # Priced from one shared REST read; any order beyond the budget says why it left Kraken out.
        assert (kraken.outcome is QuoteOutcome.OK and kraken.book_source == "rest") or (
            kraken.outcome is QuoteOutcome.SKIPPED and "stale since" in (kraken.reason or "")
        ), kraken
    assert (
        sum(1 for r in records for q in r.quotes if q.provider == "kraken" and q.book_source == "rest") >= 1
    )
    assert reads == 1, f"{reads} REST reads for one stale book (budget: one, shared)"
    await control(url, "stream", method="DELETE")
    await eventually(lambda: desk.keeper.fresh_book("kraken", SYMBOL) is not None)
    record = await buy(desk)
    assert {q.provider: q.book_source for q in record.quotes}["kraken"] == "stream"


async def test_a_disconnected_venue_is_left_out_with_its_reason_and_comes_back(desk: Desk) -> None:
    url = desk.urls["binance"]
    await control(url, "faults", {"kind": "http_error", "status": 503})
    await control(url, "stream", {"kind": "disconnect"})
    await eventually(lambda: desk.keeper.fresh_book("binance", SYMBOL) is None)
    await asyncio.sleep(0.3)
    record = await buy(desk)
    seen = {q.provider: q for q in record.quotes}
    assert [leg.provider for leg in record.legs] == ["kraken"]
    assert seen["binance"].outcome is not QuoteOutcome.OK
    assert "stale since" in (seen["binance"].reason or "") or "breaker" in (seen["binance"].reason or "")
    assert (seen["binance"].verdict or "").startswith("not priced:")
    await control(url, "faults", method="DELETE")
    await eventually(lambda: desk.keeper.fresh_book("binance", SYMBOL) is not None, seconds=15)
    await asyncio.sleep(0.6)  # the breaker's cool-down (RouterParams above)

    async def priced_again() -> bool:
        r = await buy(desk)
        return {q.provider: q.outcome for q in r.quotes}["binance"] is QuoteOutcome.OK

    await eventually(priced_again, seconds=5, every=0.3)


async def test_a_slow_consumer_is_dropped_by_the_venue_and_resyncs_to_the_venues_book(desk: Desk) -> None:
    url = desk.urls["binance"]
    resyncs = desk.keeper.books[("binance", SYMBOL)].resyncs
    # Each message 200 ms late, at most 3 queued: the 100 ms events pile up and the venue hangs up.
    await control(url, "stream", {"kind": "slow", "delay_ms": 200, "max_queue": 3})
    await eventually(lambda: desk.keeper.books[("binance", SYMBOL)].resyncs > resyncs)
    await control(url, "stream", method="DELETE")
    final = [["60004.00", "1.00000"], *ASKS]
    await control(url, "book", {"symbol": SYMBOL, "bids": BIDS, "asks": final})
    await eventually(
        lambda: (
            (b := desk.keeper.fresh_book("binance", SYMBOL)) is not None
            and levels(b) == (as_dec(BIDS), as_dec(final))
        ),
        seconds=10,
    )


async def test_concurrent_first_quotes_on_cold_adapters_load_each_venue_once_and_price_every_venue(
    desk: Desk,
) -> None:
    """A worker whose warm-up missed a venue (down at start) or an API process that never warms: the first
    orders all find the adapter's fee table empty at once. Each used to load the markets again in turn
    behind the venue's throttle (a second or more apiece), past the router's deadline: every venue timed
    out and its breaker opened on our own queue. One load serves them all."""
    cold = {v: production_adapter(v, desk.urls[v]) for v in VENUES}
    loads_before = {v: await market_loads(desk.urls[v]) for v in VENUES}
    router = Router(
        {v: LiveBookSource(v, desk.keeper, cold[v]) for v in VENUES},
        params=RouterParams(deadline_s=1.5, cool_down_s=0.5),
    )
    try:
        records = await asyncio.gather(
            *(
                router.quote(SYMBOL, Side.BUY, quote_amount=Decimal("1000"), max_slippage=Decimal("0.01"))
                for _ in range(10)
            )
        )
        assert {v: await market_loads(desk.urls[v]) - loads_before[v] for v in VENUES} == dict.fromkeys(
            VENUES, 1
        )
        for record in records:
            seen = {q.provider: q for q in record.quotes}
            assert {v: seen[v].outcome for v in VENUES} == dict.fromkeys(VENUES, QuoteOutcome.OK), [
                seen[v].reason for v in VENUES
            ]
    finally:
        for adapter in cold.values():
            await adapter.close()
