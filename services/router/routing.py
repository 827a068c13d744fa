"""The router's I/O half: it asks every healthy venue for its book under a deadline, keeps the venues'
circuit breakers, and hands the answers to the pure `decision.decide`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext
from typing import Protocol

from models.assets import Direction, check_scale, round_for_house, scale
from models.market import (
    BestExecutionRecord,
    FeeSchedule,
    OrderBook,
    QuoteOutcome,
    QuoteSeen,
    Side,
    VenueKind,
    split_symbol,
)
from services.circuit_breaker import BreakerState, CircuitBreakers, Clock, SystemClock
from services.live_books import BookUnavailable
from services.router.decision import Asked, RouteRequest, decide
from services.router.errors import InvalidRouteRequest, UnpriceableSize
from services.router.pricing import (
    ONE,
    PRECISION,
    fee_inclusive_touch,
    price_for_house,
    price_from_book,
)


class BookSource(Protocol):
    """What the router needs from a venue: its name, its fees and its order book."""

    name: str

    def fees(self, symbol: str) -> FeeSchedule: ...

    async def order_book(self, symbol: str, depth: int = 50) -> OrderBook: ...


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


class Router:
    """Chooses venues for an order. One instance per process: it owns the venues' circuit breakers.

    Args:
        adapters: exchanges by name (the name used in records and breakers).
        otc: the OTC desk, priced from its `order_book` like any venue; None disables OTC routing.
        params: thresholds, deadline and breaker parameters.
        clock: monotonic time for latencies and cool-downs, wall time for record timestamps.
        on_venue_down: told a venue's name when its breaker opens (`services.venue_alerts`).
    """

    def __init__(
        self,
        adapters: Mapping[str, BookSource],
        otc: BookSource | None = None,
        params: RouterParams | None = None,
        clock: Clock | None = None,
        on_venue_down: Callable[[str], None] | None = None,
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
            on_open=on_venue_down,
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
            RouteRequest(
                symbol, side, amount, quote_amount, max_slippage, excluded=list(dict.fromkeys(exclude))
            )
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
        request = RouteRequest(
            record.symbol,
            record.side,
            record.requested_amount,
            record.requested_quote_amount,
            record.max_slippage,
            excluded=excluded,
            fallback_from=failed_provider,
        )
        return await self._route(request)

    async def _route(self, req: RouteRequest) -> BestExecutionRecord:
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
        return decide(
            req,
            asked,
            notional,
            fanout_ms,
            otc_threshold=self.params.otc_threshold,
            decided_at=self.clock.now(),
        )

    def _otc_usable(self, req: RouteRequest) -> bool:
        return self.otc is not None and self.otc.name not in req.excluded

    @staticmethod
    def _validate(req: RouteRequest) -> None:
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

    async def _ask(self, req: RouteRequest, name: str, source: BookSource, kind: VenueKind) -> Asked:
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
            return Asked(seen)
        if not breaker.allow(now):
            seen.reason = (
                f"circuit breaker open after {breaker.consecutive_failures} consecutive failures"
                if seen.breaker == BreakerState.OPEN
                else "circuit breaker half-open and its one probe is already in flight"
            )
            return Asked(seen)

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
            return Asked(seen)
        except TimeoutError:
            self.breakers.record_failure(name)
            seen.outcome = QuoteOutcome.TIMEOUT
            seen.latency_ms = self._ms_since(started)
            seen.reason = f"no answer within {self.params.deadline_s * 1000:.0f} ms"
            return Asked(seen)
        except Exception as exc:  # any venue failure is recorded, never allowed to sink the decision
            self.breakers.record_failure(name)
            seen.outcome = QuoteOutcome.ERROR
            seen.latency_ms = self._ms_since(started)
            seen.reason = f"{type(exc).__name__}: {exc}"
            return Asked(seen)
        self.breakers.record_success(name)
        seen.latency_ms = self._ms_since(started)
        seen.book_source = book.source
        if book.source is not None and book.timestamp is not None:
            seen.book_age_ms = round(max(0.0, (self.clock.now() - book.timestamp).total_seconds()) * 1000, 3)

        levels = book.asks if req.side is Side.BUY else book.bids
        seen.best_price = levels[0].price if levels else None
        asked = Asked(
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
        factor = ONE + penalty if side is Side.BUY else ONE - penalty
        with localcontext(prec=PRECISION):
            return price_for_house(all_in * factor, side)

    @staticmethod
    def _notional_estimate(req: RouteRequest, asked: Sequence[Asked]) -> Decimal | None:
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
