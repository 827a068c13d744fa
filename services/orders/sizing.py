"""How much an order holds and how large a quote-sized buy may be: the reservation's arithmetic.

A buy reserves the most it could cost at its price cap, a sell the base it sells; a market buy of a quote
budget is sized so that cost plus fee at the cap fits the budget. Rounding goes the house's way
(`models.assets.round_for_house`).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import ROUND_FLOOR, Decimal, localcontext

from models.assets import Direction, quantum, round_for_house
from models.market import BestExecutionRecord, OrderType, Side, split_symbol
from models.order_flow import OrderRequest
from services.orders.errors import OrderRejected
from services.orders.prices import ZERO, protective_price


def funds_needed(req: OrderRequest, fee_rate: Decimal) -> tuple[str, Decimal] | None:
    """(currency, amount) the customer must have available, when known without a price.

    A sell needs its base amount; a buy of `quote_amount` needs that amount (fee included); a limit buy
    its size at the limit plus the fee. A market buy by base amount needs a price: the reservation,
    after the quote, checks it.
    """
    base, quote = split_symbol(req.symbol)
    if req.side is Side.SELL:
        return (base, req.amount) if req.amount is not None else None
    if req.quote_amount is not None:
        return quote, req.quote_amount
    if req.type is OrderType.LIMIT and req.price is not None and req.amount is not None:
        most = req.amount * req.price
        pays = Direction.CUSTOMER_PAYS
        return quote, round_for_house(quote, most, pays) + round_for_house(quote, most * fee_rate, pays)
    return None


def size_quote_budget(
    record: BestExecutionRecord,
    *,
    quote_amount: Decimal,
    price_cap: Decimal,
    fee_rate: Decimal,
    lot_step: Callable[[str], Decimal],
) -> BestExecutionRecord:
    """Size a market buy of `quote_amount` so that cost plus fee never exceeds it (issue 11 item 5).

    `quote_amount` means "spend at most this much, fee included". Every placement is an IOC limited to
    `price_cap`, so the most any base amount A can cost is A x cap, plus our fee on that, each rounded
    up to the penny: the order buys the largest A (on every venue's lot step) for which that is within
    the budget. The hold is then at most `quote_amount` and the debit at most the hold; what a fill
    below the cap saves is simply not spent. The router's legs (priced on the budget before fees) are
    scaled down to that size.
    """
    base, quote = split_symbol(record.symbol)
    q = quantum(quote)
    budget = quote_amount - 2 * q  # one rounding up for the cost, one for the fee
    with localcontext(prec=60, rounding=ROUND_FLOOR):
        most = (budget / (price_cap * (1 + fee_rate))).quantize(quantum(base), rounding=ROUND_FLOOR)
    if record.amount <= most:
        return record
    legs = []
    remaining = most
    for leg in record.legs:
        share = min(remaining, (leg.amount * most / record.amount) if record.amount else ZERO)
        step = lot_step(leg.provider)
        amount = (share / step).to_integral_value(rounding=ROUND_FLOOR) * step
        if amount <= 0:
            continue
        remaining -= amount
        legs.append(
            leg.model_copy(
                update={
                    "amount": amount,
                    "quote_amount": round_for_house(
                        quote, amount * leg.average_price, Direction.CUSTOMER_PAYS
                    ),
                    "fee": round_for_house(
                        quote, amount * leg.average_price * leg.fee_rate, Direction.CUSTOMER_PAYS
                    ),
                }
            )
        )
    if not legs:
        raise OrderRejected(
            "invalid_size",
            f"{quote_amount} {quote} does not buy one lot of {base} with the fee at the protective price "
            f"{price_cap}",
        )
    total = sum((leg.amount for leg in legs), ZERO)
    return record.model_copy(
        update={
            "legs": legs,
            "amount": total,
            "quote_amount": sum((leg.quote_amount for leg in legs), ZERO),
            "fee": sum((leg.fee for leg in legs), ZERO),
            "reason": f"{record.reason}; sized to {total} {base} so that cost plus our fee at the protective "
            f"price {price_cap} stays within {quote_amount} {quote}",
        }
    )


def plan_reservation(
    req: OrderRequest,
    *,
    expected_amount: Decimal,
    expected_quote: Decimal,
    reference_price: Decimal,
    fee_rate: Decimal,
    max_slippage: Decimal,
) -> tuple[str, Decimal, Decimal, Decimal]:
    """(hold currency, hold amount, price cap, GBP notional) for an order.

    A buy reserves the most it could cost: its size at the price cap (the reference price plus the
    slippage allowance, or the customer's limit) plus the customer fee on that, rounded up. Every
    placement is an IOC limited to the cap, so no fill, fallback included, can cost more than the hold.
    A sell reserves the base amount it sells.
    """
    base, quote = split_symbol(req.symbol)
    if req.side is Side.BUY:
        cap = (
            req.price
            if req.type is OrderType.LIMIT and req.price
            else protective_price(Side.BUY, reference_price, max_slippage)
        )
        most = expected_amount * cap
        hold = round_for_house(quote, most, Direction.CUSTOMER_PAYS) + round_for_house(
            quote, most * fee_rate, Direction.CUSTOMER_PAYS
        )
        if req.quote_amount is not None:
            # "Spend at most quote_amount, fee included": the size was chosen to fit (size_quote_budget).
            return quote, min(hold, req.quote_amount), cap, req.quote_amount
        notional = expected_quote if req.type is OrderType.MARKET else expected_amount * cap
        return quote, hold, cap, round_for_house(quote, notional, Direction.CUSTOMER_PAYS)
    floor = (
        req.price
        if req.type is OrderType.LIMIT and req.price
        else protective_price(Side.SELL, reference_price, max_slippage)
    )
    assert req.amount is not None
    # A limit sell fills at its price or better: worth what the bids pay now, if that is more.
    notional = expected_quote if req.type is OrderType.MARKET else max(req.amount * floor, expected_quote)
    return base, req.amount, floor, round_for_house(quote, notional, Direction.CUSTOMER_PAYS)
