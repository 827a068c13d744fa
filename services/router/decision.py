"""The router's decision, pure (no I/O): from every venue's priced answer to a route, or a typed refusal.

The order of preference (OTC desk, best single exchange, split, refusal) is set out in `services.router`'s
docstring; every decision, refusals included, is returned or raised as a `BestExecutionRecord`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, localcontext

from models.market import (
    BestExecutionRecord,
    ExecutionLeg,
    OrderBook,
    PriceLevel,
    ProviderQuote,
    QuoteSeen,
    RefusalReason,
    RouteKind,
    Side,
    VenueKind,
    split_symbol,
)
from services.router.errors import NoHealthyProvider, NoLiquidity, SlippageExceeded
from services.router.pricing import (
    ONE,
    PRECISION,
    PRICE_PLACES,
    ZERO,
    customer_direction,
    divide,
    price_from_book,
    slippage,
    walk,
)


@dataclass
class Asked:
    """One venue's answer inside a decision: the record's view plus the book (kept out of the record)."""

    seen: QuoteSeen
    book: OrderBook | None = None
    fee_rate: Decimal = ZERO
    touch_ref: Decimal | None = None


@dataclass
class RouteRequest:
    symbol: str
    side: Side
    amount: Decimal | None
    quote_amount: Decimal | None
    max_slippage: Decimal
    excluded: list[str] = field(default_factory=list)
    fallback_from: str | None = None


def decide(
    req: RouteRequest,
    asked: list[Asked],
    notional: Decimal | None,
    fanout_ms: float,
    *,
    otc_threshold: Decimal,
    decided_at: datetime,
) -> BestExecutionRecord:
    """The route for `req` from the venues' answers, or a `RoutingRefused` carrying the record (pure).

    In order: the OTC desk when it was asked and fills within the limit, else the best single exchange,
    else a split over the merged books; each step that passes says why in the record's notes."""
    record = BestExecutionRecord(
        symbol=req.symbol,
        side=req.side,
        requested_amount=req.amount,
        requested_quote_amount=req.quote_amount,
        max_slippage=req.max_slippage,
        notional_estimate=notional,
        quotes=[a.seen for a in asked],
        excluded=req.excluded,
        fallback_from=req.fallback_from,
        fanout_ms=round(fanout_ms, 3),
        decided_at=decided_at,
    )
    exchanges = _price_against_reference(record, req, asked)
    notes: list[str] = []
    otc = next((a.seen for a in asked if a.seen.kind is VenueKind.OTC), None)
    if otc is not None:
        pitch = (
            f"notional {notional} {split_symbol(req.symbol)[1]} is above the OTC threshold {otc_threshold}"
        )
        if otc.quote is not None and otc.quote.fully_filled and _within(otc, req):
            return _otc_route(record, req, otc, pitch)
        notes.append(f"{pitch}, but the OTC desk {_why_not(otc, req)}, so exchanges were used")
    singles = [
        a.seen
        for a in exchanges
        if a.seen.quote is not None and a.seen.quote.fully_filled and _within(a.seen, req)
    ]
    if singles:
        return _single_route(record, req, singles, notes)
    # No single exchange fills the size within the limit: greedy over the merged books.
    notes.extend(f"{a.seen.provider} alone {_why_not(a.seen, req)}" for a in exchanges)
    return _split_route(record, req, exchanges, notes)


def _price_against_reference(
    record: BestExecutionRecord, req: RouteRequest, asked: list[Asked]
) -> list[Asked]:
    """Set the slippage reference (the best fee-inclusive touch) and every quote's slippage against it;
    the exchanges that answered. Refuses when no venue answered or none has the side at all."""
    answered = [a for a in asked if a.book is not None]
    if not answered:
        why = "; ".join(f"{a.seen.provider}: {a.seen.reason}" for a in asked) or "no venues configured"
        raise NoHealthyProvider(
            _refused(record, RefusalReason.NO_HEALTHY_PROVIDER, f"no venue answered ({why})")
        )
    exchanges = [a for a in answered if a.seen.kind is VenueKind.EXCHANGE]
    refs = [a.touch_ref for a in (exchanges or answered) if a.touch_ref is not None]
    if not refs:
        text = f"no {'asks' if req.side is Side.BUY else 'bids'} on any venue that answered"
        raise NoLiquidity(_refused(record, RefusalReason.NO_LIQUIDITY, text), ZERO)
    reference = min(refs) if req.side is Side.BUY else max(refs)
    record.slippage_reference = reference
    for a in asked:
        if a.seen.quote is not None:
            a.seen.slippage = slippage(a.seen.quote.all_in_price, reference, req.side)
    return exchanges


def _otc_route(
    record: BestExecutionRecord, req: RouteRequest, otc: QuoteSeen, pitch: str
) -> BestExecutionRecord:
    base, quote_ccy = split_symbol(req.symbol)
    assert otc.quote is not None
    text = (
        f"{pitch}: OTC desk {otc.provider} fills {otc.quote.amount} {base} at all-in "
        f"{otc.quote.all_in_price} {quote_ccy} (slippage {_pct(otc.slippage)} within "
        f"{_pct(req.max_slippage)})"
    )
    return finish(record, RouteKind.OTC, [_leg(otc.quote, VenueKind.OTC)], text)


def _single_route(
    record: BestExecutionRecord, req: RouteRequest, singles: list[QuoteSeen], notes: list[str]
) -> BestExecutionRecord:
    """The best of the exchanges that fill the whole size within the limit, by reliability-adjusted score."""
    base, quote_ccy = split_symbol(req.symbol)
    ranked = sorted(singles, key=lambda s: _rank(s, req.side))
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
    return finish(record, RouteKind.SINGLE, [_leg(best.quote, VenueKind.EXCHANGE)], text, notes)


def _split_route(
    record: BestExecutionRecord, req: RouteRequest, exchanges: list[Asked], notes: list[str]
) -> BestExecutionRecord:
    """A split over every exchange's book, or the refusal saying why none fits."""
    base, quote_ccy = split_symbol(req.symbol)
    books = [(a.seen.provider, a.book, a.fee_rate) for a in exchanges if a.book is not None]
    legs, filled_all = split(req, books)
    amount, _, _, all_in = _totals(req.side, legs)
    if not filled_all:
        text = "; ".join([*notes, f"all books together fill only {amount} {base}"])
        raise NoLiquidity(_refused(record, RefusalReason.NO_LIQUIDITY, text), amount)
    assert record.slippage_reference is not None
    expected = slippage(all_in, record.slippage_reference, req.side)
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
    return finish(record, route, legs, text, notes)


def split(
    req: RouteRequest, books: Sequence[tuple[str, OrderBook, Decimal]]
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
            factor = ONE + fee_rate if side is Side.BUY else ONE - fee_rate
            levels = book.asks if side is Side.BUY else book.bids
            for depth_index, level in enumerate(levels):
                all_in = level.price * factor
                merged.append((all_in if side is Side.BUY else -all_in, depth_index, name, level))
    merged.sort(key=lambda m: (m[0], m[2], m[1]))
    base = split_symbol(req.symbol)[0]
    taken, filled_all = walk([m[3] for m in merged], side, base, req.amount, req.quote_amount)
    per_venue: dict[str, Decimal] = {}
    for index, _, qty in taken:
        name = merged[index][2]
        per_venue[name] = per_venue.get(name, ZERO) + qty
    by_name = {name: (book, fee_rate) for name, book, fee_rate in books}
    legs = []
    for name, qty in per_venue.items():
        book, fee_rate = by_name[name]
        legs.append(_leg(price_from_book(book, side, amount=qty, fee_rate=fee_rate), VenueKind.EXCHANGE))
    return legs, filled_all


def finish(
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


def _within(seen: QuoteSeen, req: RouteRequest) -> bool:
    return seen.slippage is not None and seen.slippage <= req.max_slippage


def _why_not(seen: QuoteSeen, req: RouteRequest) -> str:
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
    amount = sum((leg.amount for leg in legs), ZERO)
    notional = sum((leg.quote_amount for leg in legs), ZERO)
    fee = sum((leg.fee for leg in legs), ZERO)
    if amount <= 0:
        return ZERO, ZERO, ZERO, ZERO
    total = notional + fee if side is Side.BUY else notional - fee
    return amount, notional, fee, divide(total, amount, PRICE_PLACES, customer_direction(side))


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
