"""Best-execution router (seed §C.1): which venue, or venues, fill an order at the best all-in price.

The broker holds no order book. For each order the router asks every healthy venue for its book in
parallel, each under its own deadline; prices the requested size by walking the book (volume-weighted);
adds the venue's taker fee to get the all-in price; and picks:

1. the OTC desk, when the order's notional is above the OTC threshold and the desk can fill it within
   the customer's slippage limit (large orders would walk the public books and leak our flow);
2. otherwise the single exchange with the best all-in price, adjusted by a reliability term, among
   those that fill the whole size within the slippage limit (one placement is one thing to go wrong);
3. otherwise a split: greedy over all books merged by all-in level price, one leg per venue, each leg
   with its own protective limit (the deepest level it touches);
4. otherwise a refusal with a typed reason (`NoHealthyProvider`, `NoLiquidity`, `SlippageExceeded`).

Every decision, refusals included, is a `BestExecutionRecord` that is stored with the order.

Definitions, written once here:

- **Slippage** is the relative distance between the order's all-in average price and the best
  *fee-inclusive* touch over the venues that answered: for a buy `(all_in - ref) / ref` with
  `ref = min(best_ask * (1 + taker_fee))`; for a sell `(ref - all_in) / ref` with
  `ref = max(best_bid * (1 - taker_fee))`. It is never negative, and an order small enough to fill at
  the best venue's touch has zero slippage: the fee itself is not slippage, but a costlier venue or
  walking down the book is. See `slippage()`.
- **Rounding** follows the house rule of `models.assets.round_for_house`: an amount the customer pays
  rounds up, an amount the customer receives rounds down. A buyer's prices round up and a seller's
  down (`price_for_house`, 8 decimal places); the venue fee always rounds up; a base amount bought
  with a quote budget rounds down, one sold for a quote target rounds up. Divisions run in a context
  whose rounding has the same direction, so a rounded result is never on the customer's side of the
  exact value.
- **Reliability term**: a venue's all-in price is worsened by `reliability_penalty` (5 bp by default)
  per failure it had inside the breaker's window, so a flaky venue must be clearly cheaper to win. A
  venue whose breaker is open is not asked at all.

Nothing here knows Temporal or HTTP: venues are anything with `name`, `fees(symbol)` and
`order_book(symbol, depth)` (every `ExecutionAdapter` qualifies), and time comes from an injected clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, localcontext
from typing import Protocol

from models.assets import Direction, check_scale, round_for_house, scale
from models.market import (
    BestExecutionRecord,
    ExecutionLeg,
    FeeSchedule,
    OrderBook,
    PriceLevel,
    ProviderQuote,
    QuoteOutcome,
    QuoteSeen,
    RefusalReason,
    RouteKind,
    Side,
    VenueKind,
    split_symbol,
)
from services.circuit_breaker import BreakerState, CircuitBreakers, Clock, SystemClock
from services.live_books import BookUnavailable

# Enough significant digits for 36-digit NUMERIC arithmetic; set per computation, not globally, so the
# result does not depend on which thread or task happens to run it.
PRECISION = 60
# Prices (quote per base unit) are ratios, not amounts: kept finer than any venue's tick.
PRICE_PLACES = 8
_PRICE_QUANTUM = Decimal(1).scaleb(-PRICE_PLACES)
_ZERO = Decimal(0)
_ONE = Decimal(1)


class BookSource(Protocol):
    """What the router needs from a venue: its name, its fees and its order book."""

    name: str

    def fees(self, symbol: str) -> FeeSchedule: ...

    async def order_book(self, symbol: str, depth: int = 50) -> OrderBook: ...


# --- errors -----------------------------------------------------------------------------------------


class InvalidRouteRequest(ValueError):
    """The request itself is malformed (both or neither size given, non-positive size). Reject it."""


class UnpriceableSize(ValueError):
    """This book cannot price the size at all (empty side, or a budget below one base unit)."""


class RoutingRefused(Exception):
    """Nothing can fill the order within the customer's limits. Reject the order; store `record`.

    Subclasses say why; `record.refusal` carries the same reason for storage and the API.
    """

    reason: RefusalReason

    def __init__(self, record: BestExecutionRecord) -> None:
        super().__init__(record.reason)
        self.record = record


class NoHealthyProvider(RoutingRefused):
    """No venue answered (all failed, timed out, or had an open breaker). Retry later."""

    reason = RefusalReason.NO_HEALTHY_PROVIDER


class NoLiquidity(RoutingRefused):
    """All answering books together cannot fill the size. Offer a smaller order."""

    reason = RefusalReason.NO_LIQUIDITY

    def __init__(self, record: BestExecutionRecord, available: Decimal) -> None:
        super().__init__(record)
        self.available = available  # base amount all books together could fill


class SlippageExceeded(RoutingRefused):
    """The best possible fill is worse than the customer's maximum slippage. Offer a re-quote."""

    reason = RefusalReason.SLIPPAGE_EXCEEDED

    def __init__(self, record: BestExecutionRecord, expected: Decimal, limit: Decimal) -> None:
        super().__init__(record)
        self.expected = expected
        self.limit = limit


# --- pricing ----------------------------------------------------------------------------------------


def customer_direction(side: Side) -> Direction:
    """Who pays the quote currency: the buyer pays it, the seller receives it."""
    return Direction.CUSTOMER_PAYS if side is Side.BUY else Direction.CUSTOMER_RECEIVES


def _rounding(direction: Direction) -> str:
    return ROUND_CEILING if direction is Direction.CUSTOMER_PAYS else ROUND_FLOOR


def _divide(numerator: Decimal, denominator: Decimal, places: int, direction: Direction) -> Decimal:
    """`numerator / denominator` to `places` decimals, rounded in the house's favour for `direction`.

    The division itself runs with the same directed rounding, so the quantized result is the exact
    quotient rounded once in that direction (a ceiling of a ceiling is the ceiling).
    """
    rounding = _rounding(direction)
    with localcontext(prec=PRECISION, rounding=rounding):
        return (numerator / denominator).quantize(Decimal(1).scaleb(-places), rounding=rounding)


def price_for_house(price: Decimal, side: Side) -> Decimal:
    """Round a price to `PRICE_PLACES` in the house's favour: a buyer's up, a seller's down."""
    return price.quantize(_PRICE_QUANTUM, rounding=_rounding(customer_direction(side)))


def slippage(all_in_price: Decimal, reference: Decimal, side: Side) -> Decimal:
    """Relative distance of an all-in price from the fee-inclusive best touch (module docstring).

    Rounded up to 8 decimals: an order on the edge of the customer's limit is refused, not filled.
    """
    gap = all_in_price - reference if side is Side.BUY else reference - all_in_price
    result = _divide(gap, reference, 8, Direction.CUSTOMER_PAYS)
    return result if result > 0 else _ZERO  # plain "0" in the record, not "0E-8"


def fee_inclusive_touch(book: OrderBook, side: Side, fee_rate: Decimal) -> Decimal | None:
    """The best level's price with the venue fee applied (the slippage reference of one book)."""
    levels = book.asks if side is Side.BUY else book.bids
    if not levels:
        return None
    factor = _ONE + fee_rate if side is Side.BUY else _ONE - fee_rate
    with localcontext(prec=PRECISION):
        return levels[0].price * factor


def _walk(
    levels: Sequence[PriceLevel], side: Side, base: str, amount: Decimal | None, quote_amount: Decimal | None
) -> tuple[list[tuple[int, Decimal, Decimal]], bool]:
    """Take levels best-first until the size is met.

    Returns (level index, price, base taken) per level used, and whether the whole size was met.
    """
    taken: list[tuple[int, Decimal, Decimal]] = []
    remaining = amount if amount is not None else quote_amount
    assert remaining is not None
    # A quote budget buys base the customer receives (round down); a quote target sells base the
    # customer gives (round up).
    base_direction = Direction.CUSTOMER_RECEIVES if side is Side.BUY else Direction.CUSTOMER_PAYS
    with localcontext(prec=PRECISION):
        for index, level in enumerate(levels):
            if remaining <= 0:
                break
            if level.amount <= 0 or level.price <= 0:
                continue
            if amount is not None:
                qty = min(level.amount, remaining)
                remaining -= qty
            else:
                notional = level.price * level.amount
                if notional <= remaining:
                    qty = level.amount
                    remaining -= notional
                else:
                    qty = min(level.amount, _divide(remaining, level.price, scale(base), base_direction))
                    remaining = _ZERO  # the budget ends inside this level
                    if qty <= 0:
                        break
            taken.append((index, level.price, qty))
    return taken, remaining <= 0


def price_from_book(
    book: OrderBook,
    side: Side,
    amount: Decimal | None = None,
    quote_amount: Decimal | None = None,
    *,
    fee_rate: Decimal,
    latency_ms: float = 0.0,
) -> ProviderQuote:
    """Price a size on one book: volume-weighted average, protective worst price, fee and all-in price.

    Give either `amount` (base, e.g. 0.5 BTC) or `quote_amount` (the quote notional before the venue
    fee, e.g. "£1,000 of BTC"). If the book is too thin the quote covers what it can, with
    `fully_filled=False`. Raises `UnpriceableSize` when nothing at all can be priced.
    """
    if (amount is None) == (quote_amount is None):
        raise InvalidRouteRequest("give exactly one of amount or quote_amount")
    size = amount if amount is not None else quote_amount
    assert size is not None
    if size <= 0:
        raise InvalidRouteRequest(f"size must be positive, got {size}")
    base, quote = split_symbol(book.symbol)
    levels = book.asks if side is Side.BUY else book.bids
    if not levels:
        raise UnpriceableSize(f"{book.provider} has no {'asks' if side is Side.BUY else 'bids'}")
    taken, filled_all = _walk(levels, side, base, amount, quote_amount)
    if not taken:
        raise UnpriceableSize(f"{book.provider}: {size} {quote} is below one {base} unit at the touch")

    direction = customer_direction(side)
    with localcontext(prec=PRECISION, rounding=_rounding(direction)):
        filled = sum((qty for _, _, qty in taken), _ZERO)
        exact_notional = sum((price * qty for _, price, qty in taken), _ZERO)
    with localcontext(prec=PRECISION, rounding=ROUND_CEILING):
        exact_fee = exact_notional * fee_rate
    notional = round_for_house(quote, exact_notional, direction)
    fee = round_for_house(quote, exact_fee, Direction.CUSTOMER_PAYS)  # a fee is always paid
    all_in_total = notional + fee if side is Side.BUY else notional - fee
    return ProviderQuote(
        provider=book.provider,
        symbol=book.symbol,
        side=side,
        amount=filled,
        quote_amount=notional,
        average_price=_divide(exact_notional, filled, PRICE_PLACES, direction),
        worst_price=taken[-1][1],
        fee_rate=fee_rate,
        fee=fee,
        all_in_price=_divide(all_in_total, filled, PRICE_PLACES, direction),
        levels_used=len(taken),
        fully_filled=filled_all,
        latency_ms=latency_ms,
    )


# --- the router -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RouterParams:
    """Tunables. `from_settings` reads what `config.Settings` has; the rest are defaults."""

    otc_threshold: Decimal = Decimal("50000")  # quote currency (GBP); strictly above goes to OTC
    deadline_s: float = 1.5  # per venue, for one order-book answer
    depth: int = 50  # levels asked per book side
    failure_threshold: int = 3  # consecutive failures that open a breaker
    cool_down_s: float = 30.0  # open -> half-open
    reliability_window_s: float = 300.0  # failures this recent count in the reliability term
    reliability_penalty: Decimal = Decimal("0.0005")  # per recent failure, relative to all-in price

    @classmethod
    def from_settings(cls, settings: object) -> RouterParams:
        threshold = getattr(settings, "otc_threshold_gbp", None)
        return cls(otc_threshold=Decimal(threshold)) if threshold is not None else cls()


@dataclass
class _Asked:
    """One venue's answer inside a decision: the record's view plus the book (kept out of the record)."""

    seen: QuoteSeen
    book: OrderBook | None = None
    fee_rate: Decimal = _ZERO
    touch_ref: Decimal | None = None


@dataclass
class _Request:
    symbol: str
    side: Side
    amount: Decimal | None
    quote_amount: Decimal | None
    max_slippage: Decimal
    excluded: list[str] = field(default_factory=list)
    fallback_from: str | None = None


class Router:
    """Chooses venues for an order. One instance per process: it owns the venues' circuit breakers.

    Args:
        adapters: exchanges by name (the name used in records and breakers).
        otc: the OTC desk, priced from its `order_book` like any venue; None disables OTC routing.
        params: thresholds, deadline and breaker parameters.
        clock: monotonic time for latencies and cool-downs, wall time for record timestamps.
    """

    def __init__(
        self,
        adapters: Mapping[str, BookSource],
        otc: BookSource | None = None,
        params: RouterParams | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.adapters = dict(adapters)
        self.otc = otc
        self.params = params or RouterParams()
        self.clock = clock or SystemClock()
        self.breakers = CircuitBreakers(
            clock=self.clock,
            failure_threshold=self.params.failure_threshold,
            cool_down_s=self.params.cool_down_s,
            window_s=self.params.reliability_window_s,
        )

    # -- breaker feedback from the order saga --

    def record_success(self, provider: str) -> None:
        """A placement at `provider` was accepted: closes a half-open breaker."""
        self.breakers.record_success(provider)

    def record_failure(self, provider: str) -> None:
        """A placement at `provider` failed on the venue's side (not a business refusal of ours)."""
        self.breakers.record_failure(provider)

    def breaker_state(self, provider: str) -> BreakerState:
        return self.breakers.state(provider)

    # -- quoting --

    async def quote(
        self,
        symbol: str,
        side: Side,
        *,
        amount: Decimal | None = None,
        quote_amount: Decimal | None = None,
        max_slippage: Decimal,
        exclude: Collection[str] = (),
    ) -> BestExecutionRecord:
        """Decide where to send an order. Returns the record with its legs, or raises `RoutingRefused`.

        Args:
            amount: base size (sell 0.5 BTC), or
            quote_amount: quote notional before venue fees (buy £1,000 of BTC).
            max_slippage: a fraction (0.01 = 1 %), see the module docstring.
            exclude: venues not to ask (they failed earlier for this order); recorded as skipped.
        """
        return await self._route(
            _Request(symbol, side, amount, quote_amount, max_slippage, excluded=list(dict.fromkeys(exclude)))
        )

    async def next_best(self, record: BestExecutionRecord, failed_provider: str) -> BestExecutionRecord:
        """Re-route after `failed_provider` failed before accepting the order.

        Records the failure in its breaker, then routes the same request again without it (and without
        any venue that failed earlier for this order). It re-asks the remaining venues rather than
        reusing `record`'s quotes because books move: the fallback's protective limit must come from a
        fresh book. For a split where other legs already filled, call `quote(..., amount=remaining,
        exclude=...)` for the unfilled remainder instead.
        """
        self.record_failure(failed_provider)
        excluded = list(dict.fromkeys([*record.excluded, failed_provider]))
        request = _Request(
            record.symbol,
            record.side,
            record.requested_amount,
            record.requested_quote_amount,
            record.max_slippage,
            excluded=excluded,
            fallback_from=failed_provider,
        )
        return await self._route(request)

    async def _route(self, req: _Request) -> BestExecutionRecord:
        self._validate(req)
        started = self.clock.monotonic()
        # A quote-sized order's notional is known now, so the OTC desk is asked in the same fan-out.
        otc_now = (
            self._otc_usable(req)
            and req.quote_amount is not None
            and req.quote_amount > self.params.otc_threshold
        )
        sources: list[tuple[str, BookSource, VenueKind]] = [
            (name, src, VenueKind.EXCHANGE) for name, src in self.adapters.items()
        ]
        if otc_now and self.otc is not None:
            sources.append((self.otc.name, self.otc, VenueKind.OTC))
        asked = list(await asyncio.gather(*(self._ask(req, n, s, k) for n, s, k in sources)))

        notional = self._notional_estimate(req, asked)
        # A base-sized order's notional needs a price first: ask the OTC desk in a second round.
        if (
            not otc_now
            and self._otc_usable(req)
            and self.otc is not None
            and notional is not None
            and notional > self.params.otc_threshold
        ):
            asked.append(await self._ask(req, self.otc.name, self.otc, VenueKind.OTC))
        fanout_ms = (self.clock.monotonic() - started) * 1000
        return self._decide(req, asked, notional, fanout_ms)

    def _otc_usable(self, req: _Request) -> bool:
        return self.otc is not None and self.otc.name not in req.excluded

    @staticmethod
    def _validate(req: _Request) -> None:
        if (req.amount is None) == (req.quote_amount is None):
            raise InvalidRouteRequest("give exactly one of amount or quote_amount")
        size = req.amount if req.amount is not None else req.quote_amount
        if size is None or size <= 0:
            raise InvalidRouteRequest(f"size must be positive, got {size}")
        if req.max_slippage < 0:
            raise InvalidRouteRequest(f"max_slippage must not be negative, got {req.max_slippage}")
        base, quote = split_symbol(req.symbol)
        try:
            # Input is never rounded (models.assets): a size finer than the asset's scale is refused.
            check_scale(base if req.amount is not None else quote, size)
            scale(quote)
        except ValueError as exc:
            raise InvalidRouteRequest(f"{req.symbol}: {exc}") from exc

    async def _ask(self, req: _Request, name: str, source: BookSource, kind: VenueKind) -> _Asked:
        """Fetch and price one venue under the deadline. Never raises: the outcome goes in the record."""
        breaker = self.breakers.get(name)
        now = self.clock.monotonic()
        seen = QuoteSeen(
            provider=name,
            kind=kind,
            outcome=QuoteOutcome.SKIPPED,
            breaker=breaker.current_state(now).value,
            recent_failures=breaker.recent_failures(now),
        )
        if name in req.excluded:
            seen.reason = "excluded: failed earlier for this order"
            return _Asked(seen)
        if not breaker.allow(now):
            seen.reason = (
                f"circuit breaker open after {breaker.consecutive_failures} consecutive failures"
                if seen.breaker == BreakerState.OPEN
                else "circuit breaker half-open and its one probe is already in flight"
            )
            return _Asked(seen)

        started = self.clock.monotonic()
        try:
            book = await asyncio.wait_for(
                source.order_book(req.symbol, self.params.depth), self.params.deadline_s
            )
            fee_rate = source.fees(req.symbol).taker
        except BookUnavailable as exc:  # stale live book, no REST budget left: our limit, not the venue's
            seen.outcome = QuoteOutcome.SKIPPED
            seen.latency_ms = self._ms_since(started)
            seen.reason = str(exc)
            return _Asked(seen)
        except TimeoutError:
            self.breakers.record_failure(name)
            seen.outcome = QuoteOutcome.TIMEOUT
            seen.latency_ms = self._ms_since(started)
            seen.reason = f"no answer within {self.params.deadline_s * 1000:.0f} ms"
            return _Asked(seen)
        except Exception as exc:  # any venue failure is recorded, never allowed to sink the decision
            self.breakers.record_failure(name)
            seen.outcome = QuoteOutcome.ERROR
            seen.latency_ms = self._ms_since(started)
            seen.reason = f"{type(exc).__name__}: {exc}"
            return _Asked(seen)
        self.breakers.record_success(name)
        seen.latency_ms = self._ms_since(started)
        seen.book_source = book.source
        if book.source is not None and book.timestamp is not None:
            seen.book_age_ms = round(max(0.0, (self.clock.now() - book.timestamp).total_seconds()) * 1000, 3)

        levels = book.asks if req.side is Side.BUY else book.bids
        seen.best_price = levels[0].price if levels else None
        asked = _Asked(
            seen, book=book, fee_rate=fee_rate, touch_ref=fee_inclusive_touch(book, req.side, fee_rate)
        )
        try:
            seen.quote = price_from_book(
                book, req.side, req.amount, req.quote_amount, fee_rate=fee_rate, latency_ms=seen.latency_ms
            )
        except UnpriceableSize as exc:
            seen.outcome = QuoteOutcome.NO_LIQUIDITY
            seen.reason = str(exc)
            return asked
        seen.outcome = QuoteOutcome.OK
        seen.depth_used = seen.quote.levels_used
        seen.score = self._score(seen.quote.all_in_price, req.side, seen.recent_failures)
        return asked

    def _ms_since(self, started: float) -> float:
        return round((self.clock.monotonic() - started) * 1000, 3)

    def _score(self, all_in: Decimal, side: Side, recent_failures: int) -> Decimal:
        """All-in price worsened by the reliability term: what ranks venues against each other."""
        penalty = self.params.reliability_penalty * recent_failures
        factor = _ONE + penalty if side is Side.BUY else _ONE - penalty
        with localcontext(prec=PRECISION):
            return price_for_house(all_in * factor, side)

    @staticmethod
    def _notional_estimate(req: _Request, asked: Sequence[_Asked]) -> Decimal | None:
        """The order's size in the quote currency, for the OTC threshold (touch price for base sizes)."""
        if req.quote_amount is not None:
            return req.quote_amount
        touches = [
            a.seen.best_price for a in asked if a.seen.kind is VenueKind.EXCHANGE and a.seen.best_price
        ]
        if not touches or req.amount is None:
            return None
        best = min(touches) if req.side is Side.BUY else max(touches)
        return round_for_house(split_symbol(req.symbol)[1], req.amount * best, Direction.CUSTOMER_PAYS)

    # -- the decision (pure: no I/O below this line) --

    def _decide(
        self, req: _Request, asked: list[_Asked], notional: Decimal | None, fanout_ms: float
    ) -> BestExecutionRecord:
        side = req.side
        base, quote_ccy = split_symbol(req.symbol)
        record = BestExecutionRecord(
            symbol=req.symbol,
            side=side,
            requested_amount=req.amount,
            requested_quote_amount=req.quote_amount,
            max_slippage=req.max_slippage,
            notional_estimate=notional,
            quotes=[a.seen for a in asked],
            excluded=req.excluded,
            fallback_from=req.fallback_from,
            fanout_ms=round(fanout_ms, 3),
            decided_at=self.clock.now(),
        )
        answered = [a for a in asked if a.book is not None]
        if not answered:
            why = "; ".join(f"{a.seen.provider}: {a.seen.reason}" for a in asked) or "no venues configured"
            raise NoHealthyProvider(
                _refused(record, RefusalReason.NO_HEALTHY_PROVIDER, f"no venue answered ({why})")
            )

        exchanges = [a for a in answered if a.seen.kind is VenueKind.EXCHANGE]
        refs = [a.touch_ref for a in (exchanges or answered) if a.touch_ref is not None]
        if not refs:
            text = f"no {'asks' if side is Side.BUY else 'bids'} on any venue that answered"
            raise NoLiquidity(_refused(record, RefusalReason.NO_LIQUIDITY, text), _ZERO)
        reference = min(refs) if side is Side.BUY else max(refs)
        record.slippage_reference = reference
        for a in asked:
            if a.seen.quote is not None:
                a.seen.slippage = slippage(a.seen.quote.all_in_price, reference, side)

        notes: list[str] = []
        otc = next((a.seen for a in asked if a.seen.kind is VenueKind.OTC), None)
        if otc is not None:
            pitch = f"notional {notional} {quote_ccy} is above the OTC threshold {self.params.otc_threshold}"
            if otc.quote is not None and otc.quote.fully_filled and _within(otc, req):
                text = (
                    f"{pitch}: OTC desk {otc.provider} fills {otc.quote.amount} {base} at all-in "
                    f"{otc.quote.all_in_price} {quote_ccy} (slippage {_pct(otc.slippage)} within "
                    f"{_pct(req.max_slippage)})"
                )
                return self._finish(record, RouteKind.OTC, [_leg(otc.quote, VenueKind.OTC)], text)
            notes.append(f"{pitch}, but the OTC desk {_why_not(otc, req)}, so exchanges were used")

        singles = [
            a.seen
            for a in exchanges
            if a.seen.quote is not None and a.seen.quote.fully_filled and _within(a.seen, req)
        ]
        if singles:
            ranked = sorted(singles, key=lambda s: _rank(s, side))
            best, others = ranked[0], ranked[1:]
            assert best.quote is not None
            versus = ", ".join(f"{s.provider} {s.quote.all_in_price}" for s in others if s.quote is not None)
            reliability = (
                f" (reliability-adjusted {best.score} after {best.recent_failures} recent failures)"
                if best.recent_failures
                else ""
            )
            text = (
                f"{best.provider} has the best all-in price {best.quote.all_in_price} {quote_ccy} for "
                f"{best.quote.amount} {base}{reliability}"
                + (f", ahead of {versus}" if versus else "")
                + f"; slippage {_pct(best.slippage)} within {_pct(req.max_slippage)}"
            )
            return self._finish(record, RouteKind.SINGLE, [_leg(best.quote, VenueKind.EXCHANGE)], text, notes)

        # No single exchange fills the size within the limit: greedy over the merged books.
        notes.extend(f"{a.seen.provider} alone {_why_not(a.seen, req)}" for a in exchanges)
        books = [(a.seen.provider, a.book, a.fee_rate) for a in exchanges if a.book is not None]
        legs, filled_all = self._split(req, books)
        amount, _, _, all_in = _totals(side, legs)
        if not filled_all:
            text = "; ".join([*notes, f"all books together fill only {amount} {base}"])
            raise NoLiquidity(_refused(record, RefusalReason.NO_LIQUIDITY, text), amount)
        expected = slippage(all_in, reference, side)
        if expected > req.max_slippage:
            text = "; ".join(
                [*notes, f"the best split has slippage {_pct(expected)}, beyond {_pct(req.max_slippage)}"]
            )
            raise SlippageExceeded(
                _refused(record, RefusalReason.SLIPPAGE_EXCEEDED, text), expected, req.max_slippage
            )
        parts = " + ".join(f"{leg.provider} {leg.amount}" for leg in legs)
        text = (
            f"split {parts} {base} over the merged books at all-in {all_in} {quote_ccy} "
            f"(slippage {_pct(expected)} within {_pct(req.max_slippage)})"
        )
        route = RouteKind.SPLIT if len(legs) > 1 else RouteKind.SINGLE
        return self._finish(record, route, legs, text, notes)

    def _split(
        self, req: _Request, books: Sequence[tuple[str, OrderBook, Decimal]]
    ) -> tuple[list[ExecutionLeg], bool]:
        """Greedy fill over every book merged by all-in level price; one leg per venue.

        Within one venue all-in level prices keep the book's order, so each venue's share is a prefix of
        its book and can be priced by `price_from_book` for that venue's base amount: the leg's limit is
        then the deepest level of that prefix.
        """
        side = req.side
        merged: list[tuple[Decimal, int, str, PriceLevel]] = []
        with localcontext(prec=PRECISION):
            for name, book, fee_rate in books:
                factor = _ONE + fee_rate if side is Side.BUY else _ONE - fee_rate
                levels = book.asks if side is Side.BUY else book.bids
                for depth_index, level in enumerate(levels):
                    all_in = level.price * factor
                    merged.append((all_in if side is Side.BUY else -all_in, depth_index, name, level))
        merged.sort(key=lambda m: (m[0], m[2], m[1]))
        base = split_symbol(req.symbol)[0]
        taken, filled_all = _walk([m[3] for m in merged], side, base, req.amount, req.quote_amount)
        per_venue: dict[str, Decimal] = {}
        for index, _, qty in taken:
            name = merged[index][2]
            per_venue[name] = per_venue.get(name, _ZERO) + qty
        by_name = {name: (book, fee_rate) for name, book, fee_rate in books}
        legs = []
        for name, qty in per_venue.items():
            book, fee_rate = by_name[name]
            legs.append(_leg(price_from_book(book, side, amount=qty, fee_rate=fee_rate), VenueKind.EXCHANGE))
        return legs, filled_all

    def _finish(
        self,
        record: BestExecutionRecord,
        route: RouteKind,
        legs: list[ExecutionLeg],
        reason: str,
        notes: Sequence[str] = (),
    ) -> BestExecutionRecord:
        amount, notional, fee, all_in = _totals(record.side, legs)
        record.route = route
        record.legs = legs
        record.amount, record.quote_amount, record.fee, record.all_in_price = amount, notional, fee, all_in
        assert record.slippage_reference is not None
        record.expected_slippage = slippage(all_in, record.slippage_reference, record.side)
        record.reason = "; ".join([*notes, reason])
        _verdicts(record)
        return record


def _pct(fraction: Decimal | None) -> str:
    if fraction is None:
        return "n/a"
    return f"{(fraction * 100).quantize(Decimal('0.0001'))}%"


def _within(seen: QuoteSeen, req: _Request) -> bool:
    return seen.slippage is not None and seen.slippage <= req.max_slippage


def _why_not(seen: QuoteSeen, req: _Request) -> str:
    q = seen.quote
    if q is None:
        return f"gave no usable quote ({seen.outcome.value}: {seen.reason})"
    if not q.fully_filled:
        return f"fills only {q.amount} of the size"
    return f"has slippage {_pct(seen.slippage)}, beyond {_pct(req.max_slippage)}"


def _rank(seen: QuoteSeen, side: Side) -> tuple[Decimal, int, float, str]:
    """Best score first; then fewer recent failures, lower latency, and the name for determinism."""
    assert seen.score is not None
    score = seen.score if side is Side.BUY else -seen.score
    return score, seen.recent_failures, seen.latency_ms or 0.0, seen.provider


def _leg(q: ProviderQuote, kind: VenueKind) -> ExecutionLeg:
    return ExecutionLeg(
        provider=q.provider,
        kind=kind,
        amount=q.amount,
        quote_amount=q.quote_amount,
        average_price=q.average_price,
        fee_rate=q.fee_rate,
        fee=q.fee,
        all_in_price=q.all_in_price,
        limit_price=q.worst_price,
        levels_used=q.levels_used,
    )


def _totals(side: Side, legs: Sequence[ExecutionLeg]) -> tuple[Decimal, Decimal, Decimal, Decimal]:
    """(amount, quote amount, fee, all-in price) over legs; all-in from the legs' rounded money."""
    amount = sum((leg.amount for leg in legs), _ZERO)
    notional = sum((leg.quote_amount for leg in legs), _ZERO)
    fee = sum((leg.fee for leg in legs), _ZERO)
    if amount <= 0:
        return _ZERO, _ZERO, _ZERO, _ZERO
    total = notional + fee if side is Side.BUY else notional - fee
    return amount, notional, fee, _divide(total, amount, PRICE_PLACES, customer_direction(side))


def _refused(record: BestExecutionRecord, refusal: RefusalReason, reason: str) -> BestExecutionRecord:
    record.refusal = refusal
    record.reason = reason
    _verdicts(record)
    return record


def _verdicts(record: BestExecutionRecord) -> None:
    """Each venue's line in the record: why it won, why it lost, or why it was not priced."""
    winners = {leg.provider: leg for leg in record.legs}
    best = record.all_in_price
    for seen in record.quotes:
        q = seen.quote
        if seen.provider in winners:
            leg = winners[seen.provider]
            seen.verdict = f"won: {leg.amount} at all-in {leg.all_in_price}" + (
                " (one leg of a split)" if len(winners) > 1 else ""
            )
        elif q is None:
            seen.verdict = f"not priced: {seen.reason or seen.outcome.value}"
        elif record.refusal is not None:
            seen.verdict = (
                f"priced at all-in {q.all_in_price}, but the order was refused ({record.refusal.value})"
            )
        elif not q.fully_filled:
            seen.verdict = f"lost: its book fills only {q.amount} of the size"
        else:
            seen.verdict = f"lost: all-in {q.all_in_price} against {best}" + (
                f" (score {seen.score} after {seen.recent_failures} recent failures)"
                if seen.recent_failures
                else ""
            )
