"""Shape checks of an order that need no database: symbol, sizes, prices, their scales and bounds.

The API runs them before an order is recorded and the saga's first step runs them again, so a bad order is
refused before a workflow starts and a workflow never trades one. Each refusal names the order field at
fault (`OrderRejected.field`).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

from models.assets import PrecisionError, UnknownCurrency, check_scale
from models.market import SYMBOLS, OrderType, Side, split_symbol
from models.order_flow import OrderRequest
from services.orders.errors import OrderRejected
from services.orders.limits import MAX_ORDER_GBP
from services.orders.prices import PRICE_PLACES, PRICE_QUANTUM


@dataclass(frozen=True)
class SizeRules:
    """What every venue we route a symbol to can trade (issue 11 items 3-4).

    `lot_step` is a multiple of each exchange's lot step, so an amount on it is sent whole everywhere;
    an amount off it is refused at the API (naming the step) instead of being rounded down silently.
    """

    lot_step: Decimal  # base
    min_amount: Decimal  # base
    max_amount: Decimal  # base: far above any book's depth, below any absurd input
    min_notional: Decimal = Decimal("5")  # GBP: the venues' minimum order value


SIZE_RULES: dict[str, SizeRules] = {
    # Minimums are the largest of the venues' (Kraken's), so any venue can take the order or its fallback.
    "BTC-GBP": SizeRules(Decimal("0.00001"), Decimal("0.00005"), Decimal("100")),
    "ETH-GBP": SizeRules(Decimal("0.0001"), Decimal("0.002"), Decimal("2000")),
    "BNB-GBP": SizeRules(Decimal("0.001"), Decimal("0.02"), Decimal("10000")),
}


def validate(req: OrderRequest) -> None:
    """Shape checks that need no database: symbol, sizes, prices, their scales."""
    if req.symbol not in SYMBOLS:
        raise OrderRejected(
            "unknown_symbol", f"unknown symbol {req.symbol}; we trade {', '.join(SYMBOLS)}", field="symbol"
        )
    base, quote = split_symbol(req.symbol)
    if (req.amount is None) == (req.quote_amount is None):
        raise OrderRejected(
            "invalid_size", "give exactly one of amount (base) or quote_amount", field="amount"
        )
    if req.quote_amount is not None and not (req.type is OrderType.MARKET and req.side is Side.BUY):
        raise OrderRejected(
            "invalid_size", "quote_amount is only for market buys; give amount", field="quote_amount"
        )
    for name, value, currency in (("amount", req.amount, base), ("quote_amount", req.quote_amount, quote)):
        if value is None:
            continue
        if value <= 0:
            raise OrderRejected("invalid_size", f"{name} must be positive", field=name)
        try:
            check_scale(currency, value)
        except (PrecisionError, UnknownCurrency) as e:
            raise OrderRejected("invalid_precision", str(e), field=name) from e
    if req.type is OrderType.LIMIT:
        if req.price is None or req.price <= 0:
            raise OrderRejected("invalid_price", "a limit order needs a positive price", field="price")
        if req.price != req.price.quantize(PRICE_QUANTUM, rounding=ROUND_FLOOR):
            raise OrderRejected(
                "invalid_precision", f"price has more than {PRICE_PLACES} decimal places", field="price"
            )
    elif req.price is not None:
        raise OrderRejected("invalid_price", "a market order takes no price; use max_slippage", field="price")
    if req.max_slippage is not None and not (Decimal(0) <= req.max_slippage <= Decimal("0.5")):
        raise OrderRejected(
            "invalid_slippage", "max_slippage must be between 0 and 0.5", field="max_slippage"
        )
    _check_size(req, SIZE_RULES[req.symbol], base, quote)


def _check_size(req: OrderRequest, rules: SizeRules, base: str, quote: str) -> None:
    """Size bounds per symbol: cheap, before anything else is asked (issue 11 item 4)."""
    if req.amount is not None:
        if req.amount > rules.max_amount:
            raise OrderRejected(
                "order_too_large",
                f"amount {req.amount} {base} is above the maximum {rules.max_amount}",
                field="amount",
            )
        if req.amount < rules.min_amount:
            raise OrderRejected(
                "order_too_small",
                f"amount {req.amount} {base} is below the minimum {rules.min_amount}",
                field="amount",
            )
        if req.amount % rules.lot_step != 0:
            raise OrderRejected(
                "invalid_lot_size",
                f"amount must be a multiple of {rules.lot_step} {base}: the venues trade {base} in steps of "
                f"{rules.lot_step}",
                field="amount",
            )
    value = value_floor(req)
    if value is None:
        return
    field = "quote_amount" if req.quote_amount is not None else "amount"
    if value > MAX_ORDER_GBP:
        raise OrderRejected(
            "order_too_large", f"the order is worth at least {value} {quote}; no account may trade more "
            f"than {MAX_ORDER_GBP} {quote} in 24 h", field=field
        )  # fmt: skip
    if value < rules.min_notional:
        raise OrderRejected(
            "order_too_small",
            f"the order is worth {value} {quote}, below the minimum {rules.min_notional}",
            field=field,
        )


def value_floor(req: OrderRequest) -> Decimal | None:
    """The least the order is worth in the quote currency, known without asking a venue.

    `quote_amount`, or amount x limit price. A limit sell can fill above its price, so this is a lower
    bound: limits and the second factor use `fill_value` once the book is known.
    """
    if req.quote_amount is not None:
        return req.quote_amount
    if req.type is OrderType.LIMIT and req.price is not None and req.amount is not None:
        return req.amount * req.price
    return None


def fill_value(req: OrderRequest, best_price: Decimal | None) -> Decimal | None:
    """The most the order can really trade for, in the quote currency, for limits and the second factor
    (issue 12 item 2); None when that needs a price and `best_price` is None.

    `best_price` is the touch a market order of this side meets now (best ask for a buy, best bid for a
    sell). A buy never pays more than its limit, so amount x limit price bounds it; a limit sell fills
    at its price *or better*, so a sell priced at £50 is worth what the bids pay, not £50.
    """
    if req.quote_amount is not None:
        return req.quote_amount
    assert req.amount is not None
    if req.type is OrderType.LIMIT and req.price is not None:
        if req.side is Side.BUY:
            return req.amount * req.price
        return req.amount * max(req.price, best_price) if best_price is not None else None
    return req.amount * best_price if best_price is not None else None
