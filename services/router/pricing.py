"""Pricing one venue's book for a size: volume-weighted walk, fee, all-in price and slippage.

The definitions of slippage and of the house's rounding are written once in `services.router`'s docstring.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, localcontext

from models.assets import Direction, round_for_house, scale
from models.market import OrderBook, PriceLevel, ProviderQuote, Side, split_symbol
from services.router.errors import InvalidRouteRequest, UnpriceableSize

# Enough significant digits for 36-digit NUMERIC arithmetic; set per computation, not globally, so the
# result does not depend on which thread or task happens to run it.
PRECISION = 60
# Prices (quote per base unit) are ratios, not amounts: kept finer than any venue's tick.
PRICE_PLACES = 8
PRICE_QUANTUM = Decimal(1).scaleb(-PRICE_PLACES)
ZERO = Decimal(0)
ONE = Decimal(1)


def customer_direction(side: Side) -> Direction:
    """Who pays the quote currency: the buyer pays it, the seller receives it."""
    return Direction.CUSTOMER_PAYS if side is Side.BUY else Direction.CUSTOMER_RECEIVES


def rounding_for(direction: Direction) -> str:
    return ROUND_CEILING if direction is Direction.CUSTOMER_PAYS else ROUND_FLOOR


def divide(numerator: Decimal, denominator: Decimal, places: int, direction: Direction) -> Decimal:
    """`numerator / denominator` to `places` decimals, rounded in the house's favour for `direction`.

    The division itself runs with the same directed rounding, so the quantized result is the exact
    quotient rounded once in that direction (a ceiling of a ceiling is the ceiling).
    """
    rounding = rounding_for(direction)
    with localcontext(prec=PRECISION, rounding=rounding):
        return (numerator / denominator).quantize(Decimal(1).scaleb(-places), rounding=rounding)


def price_for_house(price: Decimal, side: Side) -> Decimal:
    """Round a price to `PRICE_PLACES` in the house's favour: a buyer's up, a seller's down."""
    return price.quantize(PRICE_QUANTUM, rounding=rounding_for(customer_direction(side)))


def slippage(all_in_price: Decimal, reference: Decimal, side: Side) -> Decimal:
    """Relative distance of an all-in price from the fee-inclusive best touch (module docstring).

    Rounded up to 8 decimals: an order on the edge of the customer's limit is refused, not filled.
    """
    gap = all_in_price - reference if side is Side.BUY else reference - all_in_price
    result = divide(gap, reference, 8, Direction.CUSTOMER_PAYS)
    return result if result > 0 else ZERO  # plain "0" in the record, not "0E-8"


def fee_inclusive_touch(book: OrderBook, side: Side, fee_rate: Decimal) -> Decimal | None:
    """The best level's price with the venue fee applied (the slippage reference of one book)."""
    levels = book.asks if side is Side.BUY else book.bids
    if not levels:
        return None
    factor = ONE + fee_rate if side is Side.BUY else ONE - fee_rate
    with localcontext(prec=PRECISION):
        return levels[0].price * factor


def walk(
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
                    qty = min(level.amount, divide(remaining, level.price, scale(base), base_direction))
                    remaining = ZERO  # the budget ends inside this level
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
    taken, filled_all = walk(levels, side, base, amount, quote_amount)
    if not taken:
        raise UnpriceableSize(f"{book.provider}: {size} {quote} is below one {base} unit at the touch")

    direction = customer_direction(side)
    with localcontext(prec=PRECISION, rounding=rounding_for(direction)):
        filled = sum((qty for _, _, qty in taken), ZERO)
        exact_notional = sum((price * qty for _, price, qty in taken), ZERO)
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
        average_price=divide(exact_notional, filled, PRICE_PLACES, direction),
        worst_price=taken[-1][1],
        fee_rate=fee_rate,
        fee=fee,
        all_in_price=divide(all_in_total, filled, PRICE_PLACES, direction),
        levels_used=len(taken),
        fully_filled=filled_all,
        latency_ms=latency_ms,
    )
