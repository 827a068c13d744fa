"""Prices of an order: the precision we keep them at, and a market order's protective limit."""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from models.market import Side

PRICE_PLACES = 8
PRICE_QUANTUM = Decimal(1).scaleb(-PRICE_PLACES)
ZERO = Decimal(0)


def ceil_price(p: Decimal) -> Decimal:
    return p.quantize(PRICE_QUANTUM, rounding=ROUND_CEILING)


def floor_price(p: Decimal) -> Decimal:
    return p.quantize(PRICE_QUANTUM, rounding=ROUND_FLOOR)


def protective_price(side: Side, reference_price: Decimal, max_slippage: Decimal) -> Decimal:
    """A market order's IOC limit: the reference price moved by the customer's slippage tolerance, to
    `PRICE_PLACES` decimals (the venue adapter then rounds it onto its tick towards the customer)."""
    if side is Side.BUY:
        return ceil_price(reference_price * (1 + max_slippage))
    return floor_price(reference_price * (1 - max_slippage))
