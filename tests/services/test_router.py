"""Best-execution router on set-up books.

The venues here are small in-memory stand-ins for the *outside world's* order books (what Binance,
Kraken or the OTC desk would answer); everything of ours — pricing, breakers, the decision — is the
real code. Time is a manual clock, so cool-downs need no sleeping.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.market import (
    BestExecutionRecord,
    FeeSchedule,
    OrderBook,
    PriceLevel,
    QuoteOutcome,
    QuoteSeen,
    RefusalReason,
    RouteKind,
    Side,
    VenueKind,
)
from services.circuit_breaker import BreakerState
from services.router import (
    InvalidRouteRequest,
    NoHealthyProvider,
    NoLiquidity,
    Router,
    RouterParams,
    SlippageExceeded,
    UnpriceableSize,
    price_from_book,
)

D = Decimal
SYMBOL = "BTC-GBP"
WIDE = D("0.05")  # a slippage limit that never binds


def levels(*pairs: tuple[str, str]) -> list[PriceLevel]:
    return [PriceLevel(price=D(p), amount=D(a)) for p, a in pairs]


class ManualClock:
    """Monotonic time that moves only when the test says so."""

    def __init__(self) -> None:
        self.t = 1000.0

    def monotonic(self) -> float:
        return self.t

    def now(self) -> datetime:
        return datetime(2025, 1, 1, tzinfo=UTC)

    def advance(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class BookVenue:
    """An outside venue's order book and taker fee, with switches for its failure modes."""

    name: str
    asks: list[PriceLevel] = field(default_factory=list)
    bids: list[PriceLevel] = field(default_factory=list)
    taker: Decimal = D("0.001")
    failing: bool = False
    hang: bool = False  # never answers (until cancelled by the router's deadline)
    barrier: asyncio.Barrier | None = None  # answers only once every venue sharing it has been asked
    calls: int = 0

    def fees(self, symbol: str) -> FeeSchedule:
        return FeeSchedule(taker=self.taker, maker=self.taker)

    async def order_book(self, symbol: str, depth: int = 50) -> OrderBook:
        self.calls += 1
        if self.hang:
            await asyncio.Event().wait()
        if self.barrier is not None:
            await self.barrier.wait()
        if self.failing:
            raise ConnectionError(f"{self.name} is down")
        return OrderBook(provider=self.name, symbol=symbol, asks=self.asks[:depth], bids=self.bids[:depth])


def router(*venues: BookVenue, otc: BookVenue | None = None, **params: object) -> Router:
    return Router(
        {v.name: v for v in venues},
        otc=otc,
        params=RouterParams(**params),  # type: ignore[arg-type]
        clock=ManualClock(),
    )


def seen(record: BestExecutionRecord, provider: str) -> QuoteSeen:
    return next(q for q in record.quotes if q.provider == provider)


# --- price_from_book --------------------------------------------------------------------------------


def test_price_from_book_walks_levels_volume_weighted() -> None:
    book = OrderBook(
        provider="x", symbol=SYMBOL, asks=levels(("100", "1"), ("110", "1"), ("120", "5")), bids=[]
    )
    q = price_from_book(book, Side.BUY, amount=D("2.5"), fee_rate=D("0.001"))
    assert q.amount == D("2.5")
    assert q.quote_amount == D("270.00")  # 100 + 110 + 0.5 * 120
    assert q.average_price == D("108.00000000")
    assert q.worst_price == D("120")
    assert q.levels_used == 3
    assert q.fully_filled
    assert q.fee == D("0.27")
    assert q.all_in_price == D("108.10800000")  # (270 + 0.27) / 2.5


def test_price_from_book_reports_a_partial_fill_when_depth_runs_out() -> None:
    book = OrderBook(provider="x", symbol=SYMBOL, asks=[], bids=levels(("100", "1"), ("90", "1")))
    q = price_from_book(book, Side.SELL, amount=D("3"), fee_rate=D("0.001"))
    assert (q.amount, q.fully_filled, q.worst_price) == (D("2"), False, D("90"))
    assert q.all_in_price < q.average_price  # a seller receives less after the fee


def test_price_from_book_refuses_an_empty_side_and_a_malformed_size() -> None:
    book = OrderBook(provider="x", symbol=SYMBOL, asks=[], bids=levels(("100", "1")))
    with pytest.raises(UnpriceableSize):
        price_from_book(book, Side.BUY, amount=D("1"), fee_rate=D("0.001"))
    with pytest.raises(InvalidRouteRequest):
        price_from_book(book, Side.SELL, amount=D("1"), quote_amount=D("1"), fee_rate=D("0.001"))
    with pytest.raises(UnpriceableSize):  # 1p buys no satoshi at £10m
        price_from_book(
            OrderBook(provider="x", symbol=SYMBOL, asks=levels(("10000000", "1")), bids=[]),
            Side.BUY,
            quote_amount=D("0.01"),
            fee_rate=D("0"),
        )


def test_rounding_never_favours_the_customer() -> None:
    """Exact values with more decimals than GBP/BTC allow round towards the house, each way."""
    book = OrderBook(
        provider="x", symbol=SYMBOL, asks=levels(("50000.01", "1")), bids=levels(("50000.01", "1"))
    )
    exact_notional = D("0.00012345") * D("50000.01")  # 6.1725012345
    buy = price_from_book(book, Side.BUY, amount=D("0.00012345"), fee_rate=D("0.001"))
    sell = price_from_book(book, Side.SELL, amount=D("0.00012345"), fee_rate=D("0.001"))
    assert buy.quote_amount == D("6.18") > exact_notional  # the buyer pays: up
    assert sell.quote_amount == D("6.17") < exact_notional  # the seller receives: down
    assert buy.fee == sell.fee == D("0.01")  # a fee is paid either way: up (exact 0.00617...)
    assert buy.all_in_price * buy.amount >= buy.quote_amount + buy.fee
    assert sell.all_in_price * sell.amount <= sell.quote_amount - sell.fee

    # Buying with a budget: base received rounds down, so the budget is never overspent.
    odd = OrderBook(
        provider="x", symbol=SYMBOL, asks=levels(("30000.03", "1")), bids=levels(("30000.03", "1"))
    )
    by_budget = price_from_book(odd, Side.BUY, quote_amount=D("10"), fee_rate=D("0"))
    assert by_budget.amount == D("0.00033333")  # 10 / 30000.03 = 0.000333332...
    assert by_budget.amount * D("30000.03") <= D("10")
    # Selling for a target: base given rounds up, so the customer never gives less than needed.
    for_target = price_from_book(odd, Side.SELL, quote_amount=D("10"), fee_rate=D("0"))
    assert for_target.amount == D("0.00033334")
    assert for_target.amount * D("30000.03") >= D("10")


# --- choosing a venue -------------------------------------------------------------------------------


async def test_best_price_wins_for_buys_and_sells() -> None:
    a = BookVenue("a", asks=levels(("50000", "5")), bids=levels(("49900", "5")))
    b = BookVenue("b", asks=levels(("49950", "5")), bids=levels(("49950", "5")))
    r = router(a, b)

    buy = await r.quote(SYMBOL, Side.BUY, amount=D("1"), max_slippage=WIDE)
    assert buy.route is RouteKind.SINGLE
    assert [leg.provider for leg in buy.legs] == ["b"]
    assert buy.legs[0].limit_price == D("49950")
    assert "b has the best all-in price" in buy.reason and "ahead of a" in buy.reason

    sell = await r.quote(SYMBOL, Side.SELL, amount=D("1"), max_slippage=WIDE)
    assert [leg.provider for leg in sell.legs] == ["b"]
    assert {q.provider: q.outcome for q in sell.quotes} == {"a": QuoteOutcome.OK, "b": QuoteOutcome.OK}


async def test_fees_can_change_the_winner() -> None:
    cheap_but_costly = BookVenue("cheap", asks=levels(("50000", "5")), taker=D("0.005"))  # 50250 all-in
    dearer_but_cheap = BookVenue("dear", asks=levels(("50100", "5")), taker=D("0.001"))  # 50150.1 all-in
    record = await router(cheap_but_costly, dearer_but_cheap).quote(
        SYMBOL, Side.BUY, amount=D("1"), max_slippage=WIDE
    )
    assert record.legs[0].provider == "dear"
    assert record.all_in_price == D("50150.10000000")
    cheap, dear = seen(record, "cheap").quote, seen(record, "dear").quote
    assert cheap is not None and dear is not None
    assert cheap.average_price < dear.average_price


async def test_quote_amount_buy_spends_the_budget_across_levels() -> None:
    venue = BookVenue("a", asks=levels(("40000", "0.01"), ("50000", "1")))
    record = await router(venue).quote(SYMBOL, Side.BUY, quote_amount=D("1000"), max_slippage=D("0.5"))
    leg = record.legs[0]
    # £400 buys 0.01 at 40k; the other £600 buys 0.012 at 50k.
    assert leg.amount == D("0.022")
    assert leg.quote_amount == D("1000.00")
    assert leg.fee == D("1.00")
    assert leg.limit_price == D("50000")
    assert record.requested_quote_amount == D("1000")


async def test_split_when_no_single_book_has_the_depth() -> None:
    a = BookVenue("a", asks=levels(("50000", "1")))
    b = BookVenue("b", asks=levels(("50010", "1")))
    record = await router(a, b).quote(SYMBOL, Side.BUY, amount=D("1.5"), max_slippage=D("0.01"))
    assert record.route is RouteKind.SPLIT
    legs = {leg.provider: leg for leg in record.legs}
    assert legs["a"].amount == D("1") and legs["a"].limit_price == D("50000")
    assert legs["b"].amount == D("0.5") and legs["b"].limit_price == D("50010")
    assert record.amount == D("1.5")
    assert "a alone" in record.reason and "split" in record.reason


async def test_split_when_single_books_fill_but_beyond_the_slippage_limit() -> None:
    # Each book alone would walk to a far level (> 1 %); their tops together fill it close to the touch.
    a = BookVenue("a", asks=levels(("100", "1"), ("103", "10")), taker=D("0"))
    b = BookVenue("b", asks=levels(("100.1", "1"), ("104", "10")), taker=D("0"))
    record = await router(a, b).quote(SYMBOL, Side.BUY, amount=D("2"), max_slippage=D("0.01"))
    assert record.route is RouteKind.SPLIT
    assert sorted((leg.provider, leg.amount) for leg in record.legs) == [("a", D("1")), ("b", D("1"))]
    assert record.expected_slippage is not None and record.expected_slippage <= D("0.01")


async def test_refusal_beyond_max_slippage_carries_expected_and_limit() -> None:
    a = BookVenue("a", asks=levels(("100", "1"), ("110", "10")), taker=D("0"))
    with pytest.raises(SlippageExceeded) as refused:
        await router(a).quote(SYMBOL, Side.BUY, amount=D("2"), max_slippage=D("0.01"))
    assert refused.value.expected == D("0.05")  # average 105 against a touch of 100
    assert refused.value.limit == D("0.01")
    record = refused.value.record
    assert record.refusal is RefusalReason.SLIPPAGE_EXCEEDED and record.legs == []
    assert "beyond 1.0000%" in record.reason


async def test_refusal_when_all_books_together_are_too_thin() -> None:
    a = BookVenue("a", asks=levels(("100", "1")))
    b = BookVenue("b", asks=levels(("101", "1")))
    with pytest.raises(NoLiquidity) as refused:
        await router(a, b).quote(SYMBOL, Side.BUY, amount=D("3"), max_slippage=WIDE)
    assert refused.value.available == D("2")
    assert refused.value.record.refusal is RefusalReason.NO_LIQUIDITY


async def test_refusal_when_no_venue_answers() -> None:
    a = BookVenue("a", failing=True)
    with pytest.raises(NoHealthyProvider) as refused:
        await router(a).quote(SYMBOL, Side.BUY, amount=D("1"), max_slippage=WIDE)
    assert refused.value.record.quotes[0].outcome is QuoteOutcome.ERROR
    assert "a is down" in refused.value.record.reason
    # One error path: a DomainError the API answers as it is; the venue's text stays in the record.
    assert (refused.value.code, refused.value.status) == ("market_unavailable", 503)
    assert "a is down" not in refused.value.detail and refused.value.headers() == {"Retry-After": "5"}


async def test_invalid_requests_are_rejected_before_asking_anyone() -> None:
    a = BookVenue("a", asks=levels(("100", "1")))
    r = router(a)
    with pytest.raises(InvalidRouteRequest):
        await r.quote(SYMBOL, Side.BUY, max_slippage=WIDE)
    with pytest.raises(InvalidRouteRequest):  # finer than BTC's 8 places: never rounded silently
        await r.quote(SYMBOL, Side.BUY, amount=D("0.000000001"), max_slippage=WIDE)
    with pytest.raises(InvalidRouteRequest):
        await r.quote("DOGE-GBP", Side.BUY, amount=D("1"), max_slippage=WIDE)
    assert a.calls == 0


# --- OTC ----------------------------------------------------------------------------------------------


async def test_orders_above_the_otc_threshold_go_to_the_otc_desk() -> None:
    exchange = BookVenue("binance", asks=levels(("50000", "10")))
    otc = BookVenue("otc", asks=levels(("50050", "100")), taker=D("0"))
    r = router(exchange, otc=otc)

    small = await r.quote(SYMBOL, Side.BUY, quote_amount=D("1000"), max_slippage=WIDE)
    assert small.route is RouteKind.SINGLE and otc.calls == 0

    by_quote = await r.quote(SYMBOL, Side.BUY, quote_amount=D("60000"), max_slippage=WIDE)
    assert by_quote.route is RouteKind.OTC
    assert by_quote.legs[0].kind is VenueKind.OTC
    assert "above the OTC threshold" in by_quote.reason

    by_base = await r.quote(SYMBOL, Side.BUY, amount=D("2"), max_slippage=WIDE)  # ~£100k
    assert by_base.route is RouteKind.OTC and by_base.notional_estimate == D("100000.00")
    assert otc.calls == 2


async def test_otc_failure_falls_back_to_exchanges_and_says_so() -> None:
    exchange = BookVenue("binance", asks=levels(("50000", "10")))
    otc = BookVenue("otc", failing=True)
    record = await router(exchange, otc=otc).quote(
        SYMBOL, Side.BUY, quote_amount=D("60000"), max_slippage=WIDE
    )
    assert record.route is RouteKind.SINGLE and record.legs[0].provider == "binance"
    assert seen(record, "otc").outcome is QuoteOutcome.ERROR
    assert "the OTC desk gave no usable quote" in record.reason


# --- reliability: circuit breakers, deadlines, fall-back ----------------------------------------------


async def test_circuit_breaker_opens_skips_half_opens_and_recovers() -> None:
    flaky = BookVenue("flaky", asks=levels(("49000", "5")), failing=True)
    steady = BookVenue("steady", asks=levels(("50000", "5")))
    r = router(flaky, steady, failure_threshold=3, cool_down_s=30.0)
    clock = r.clock
    assert isinstance(clock, ManualClock)

    for _ in range(3):
        record = await r.quote(SYMBOL, Side.BUY, amount=D("1"), max_slippage=WIDE)
        assert record.legs[0].provider == "steady"
    assert r.breaker_state("flaky") is BreakerState.OPEN

    flaky.failing = False  # it is healthy again, but the open breaker keeps us away for now
    skipped = await r.quote(SYMBOL, Side.BUY, amount=D("1"), max_slippage=WIDE)
    assert flaky.calls == 3
    assert seen(skipped, "flaky").outcome is QuoteOutcome.SKIPPED
    assert "circuit breaker open" in (seen(skipped, "flaky").reason or "")

    clock.advance(30.0)
    assert r.breaker_state("flaky") is BreakerState.HALF_OPEN
    probe = await r.quote(SYMBOL, Side.BUY, amount=D("1"), max_slippage=WIDE)
    assert flaky.calls == 4
    assert r.breaker_state("flaky") is BreakerState.CLOSED
    assert seen(probe, "flaky").breaker == "half_open"  # the state it was asked in

    # Recent failures still weigh (reliability term: 3 x 5 bp), but 2 % cheaper wins anyway.
    assert probe.legs[0].provider == "flaky"
    assert seen(probe, "flaky").recent_failures == 3


async def test_a_failed_half_open_probe_reopens_the_breaker() -> None:
    venue = BookVenue("v", asks=levels(("100", "1")), failing=True)
    other = BookVenue("w", asks=levels(("100", "1")))
    r = router(venue, other, failure_threshold=2, cool_down_s=10.0)
    for _ in range(2):
        await r.quote(SYMBOL, Side.BUY, amount=D("1"), max_slippage=WIDE)
    assert isinstance(r.clock, ManualClock)
    r.clock.advance(10.0)
    await r.quote(SYMBOL, Side.BUY, amount=D("1"), max_slippage=WIDE)  # the probe fails
    assert r.breaker_state("v") is BreakerState.OPEN
    await r.quote(SYMBOL, Side.BUY, amount=D("1"), max_slippage=WIDE)
    assert venue.calls == 3


async def test_placement_failures_reported_by_the_saga_open_the_breaker() -> None:
    a = BookVenue("a", asks=levels(("100", "1")))
    r = router(a, failure_threshold=2)
    r.record_failure("a")
    r.record_failure("a")
    with pytest.raises(NoHealthyProvider):
        await r.quote(SYMBOL, Side.BUY, amount=D("1"), max_slippage=WIDE)
    assert a.calls == 0


async def test_reliability_term_prefers_the_steadier_venue_when_prices_are_close() -> None:
    flaky = BookVenue("flaky", asks=levels(("99.99", "5")), taker=D("0"))  # 1 bp cheaper
    steady = BookVenue("steady", asks=levels(("100", "5")), taker=D("0"))
    r = router(flaky, steady)
    r.record_failure("flaky")  # one placement failure: a 5 bp handicap for the window
    record = await r.quote(SYMBOL, Side.BUY, amount=D("1"), max_slippage=WIDE)
    assert record.legs[0].provider == "steady"
    assert seen(record, "flaky").score == D("100.03999500")


async def test_a_slow_venue_past_the_deadline_is_recorded_and_ignored() -> None:
    slow = BookVenue("slow", asks=levels(("1", "100")), hang=True)  # would be the best by far
    fast = BookVenue("fast", asks=levels(("100", "5")))
    record = await router(slow, fast, deadline_s=0.02).quote(
        SYMBOL, Side.BUY, amount=D("1"), max_slippage=WIDE
    )
    assert record.legs[0].provider == "fast"
    assert seen(record, "slow").outcome is QuoteOutcome.TIMEOUT
    assert seen(record, "slow").reason == "no answer within 20 ms"


async def test_the_fan_out_is_parallel() -> None:
    """Each venue answers only after all three have been asked: a sequential fan-out would time out
    on the first venue, so three answers prove the requests were in flight together."""
    barrier = asyncio.Barrier(3)
    venues = [
        BookVenue(n, asks=levels((p, "5")), barrier=barrier)
        for n, p in [("a", "101"), ("b", "100"), ("c", "102")]
    ]
    record = await router(*venues, deadline_s=5.0).quote(SYMBOL, Side.BUY, amount=D("1"), max_slippage=WIDE)
    assert [q.outcome for q in record.quotes] == [QuoteOutcome.OK] * 3
    assert record.legs[0].provider == "b"


async def test_next_best_falls_back_when_the_chosen_venue_fails_before_accepting() -> None:
    a = BookVenue("a", asks=levels(("100", "5")))
    b = BookVenue("b", asks=levels(("101", "5")))
    r = router(a, b)
    first = await r.quote(SYMBOL, Side.BUY, amount=D("1"), max_slippage=WIDE)
    assert first.legs[0].provider == "a"
    second = await r.next_best(first, "a")
    assert second.legs[0].provider == "b"
    assert second.fallback_from == "a" and second.excluded == ["a"]
    assert seen(second, "a").outcome is QuoteOutcome.SKIPPED
    with pytest.raises(NoHealthyProvider):
        await r.next_best(second, "b")


# --- the record -------------------------------------------------------------------------------------


async def test_the_record_is_json_with_string_decimals_and_round_trips() -> None:
    a = BookVenue("a", asks=levels(("50000.5", "1")))
    b = BookVenue("b", failing=True)
    record = await router(a, b).quote(SYMBOL, Side.BUY, amount=D("0.5"), max_slippage=D("0.01"))
    body = record.model_dump(mode="json")
    json.dumps(body)  # storable as JSONB as is
    assert body["legs"][0]["limit_price"] == "50000.5"
    assert body["max_slippage"] == "0.01"
    assert {q["provider"]: q["outcome"] for q in body["quotes"]} == {"a": "ok", "b": "error"}
    assert BestExecutionRecord.model_validate(body) == record


# --- properties ---------------------------------------------------------------------------------------

prices = st.decimals(min_value=D("1000"), max_value=D("90000"), places=2)
# At least what venues accept (their minimum lot and notional): below that, penny rounding is the price.
sizes = st.decimals(min_value=D("0.001"), max_value=D("3"), places=8)
book_sides = st.lists(st.tuples(prices, sizes), min_size=1, max_size=8)
fee_rates = st.sampled_from([D("0"), D("0.0008"), D("0.001"), D("0.0026")])


def ask_book(name: str, raw: list[tuple[Decimal, Decimal]]) -> list[PriceLevel]:
    return [PriceLevel(price=p, amount=a) for p, a in sorted(raw)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    books=st.lists(st.tuples(book_sides, fee_rates), min_size=1, max_size=3),
    fraction=st.decimals(min_value=D("0.01"), max_value=D("1"), places=2),
)
async def test_property_legs_sum_to_the_requested_amount(
    books: list[tuple[list[tuple[Decimal, Decimal]], Decimal]], fraction: Decimal
) -> None:
    venues = [
        BookVenue(f"v{i}", asks=ask_book(f"v{i}", raw), taker=fee) for i, (raw, fee) in enumerate(books)
    ]
    depth = sum(level.amount for v in venues for level in v.asks)
    amount = max(D("0.00000001"), (depth * fraction).quantize(D("0.00000001"), rounding="ROUND_FLOOR"))
    record = await router(*venues).quote(SYMBOL, Side.BUY, amount=amount, max_slippage=D("1000"))
    assert sum(leg.amount for leg in record.legs) == amount == record.amount
    for leg in record.legs:
        venue = next(v for v in venues if v.name == leg.provider)
        assert leg.limit_price in {level.price for level in venue.asks}
        assert leg.all_in_price >= leg.average_price >= venue.asks[0].price


@settings(max_examples=100, deadline=None)
@given(raw=book_sides, fee=fee_rates, amount=sizes, side=st.sampled_from([Side.BUY, Side.SELL]))
def test_property_all_in_is_never_better_than_the_vwap(
    raw: list[tuple[Decimal, Decimal]], fee: Decimal, amount: Decimal, side: Side
) -> None:
    ordered = sorted(raw, reverse=side is Side.SELL)
    book_levels = [PriceLevel(price=p, amount=a) for p, a in ordered]
    book = OrderBook(provider="x", symbol=SYMBOL, asks=book_levels, bids=book_levels)
    q = price_from_book(book, side, amount=amount, fee_rate=fee)
    exact = sum(
        (p * a for p, a in _taken(ordered, q.amount)),
        D(0),
    )
    if side is Side.BUY:
        assert q.all_in_price >= q.average_price >= ordered[0][0]
        assert q.quote_amount >= exact and q.fee >= exact * fee
    else:
        assert q.all_in_price <= q.average_price <= ordered[0][0]
        assert q.quote_amount <= exact and q.fee >= exact * fee
    assert q.worst_price in {p for p, _ in ordered}


def _taken(ordered: list[tuple[Decimal, Decimal]], amount: Decimal) -> list[tuple[Decimal, Decimal]]:
    out, left = [], amount
    for p, a in ordered:
        if left <= 0:
            break
        take = min(a, left)
        out.append((p, take))
        left -= take
    return out
