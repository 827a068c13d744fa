"""Assets and their scales, declared once.

GBP has 2 decimal places (pence). BTC, ETH and BNB use 8: BTC's own unit is the satoshi (1e-8),
and while ETH has 18 on chain and BNB 8, every venue we route to trades and settles ETH and BNB in
8 decimals or fewer, so holding more would create balances no venue can move.

Rounding rule, written once (`round_for_house`): when a computation must round (a fee, a fill's
quote value, an average price), it rounds in the direction that favours the house — amounts the
customer pays round up, amounts the customer receives round down. Input is never rounded: an amount
finer than the scale is an error (`check_scale`).
"""

from __future__ import annotations

import decimal
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from enum import StrEnum

# 36-digit NUMERIC arithmetic needs more than Python's default 28 significant digits.
decimal.getcontext().prec = 60

SCALES: dict[str, int] = {"GBP": 2, "BTC": 8, "ETH": 8, "BNB": 8}
FIAT: frozenset[str] = frozenset({"GBP"})
CRYPTO: frozenset[str] = frozenset({"BTC", "ETH", "BNB"})


class Direction(StrEnum):
    """Who the rounded amount flows to, which decides the rounding direction."""

    CUSTOMER_PAYS = "customer_pays"  # round up
    CUSTOMER_RECEIVES = "customer_receives"  # round down


class UnknownCurrency(ValueError):
    """The currency is not one we hold. Reject the request."""


class PrecisionError(ValueError):
    """The amount has more decimal places than the currency allows. Reject the request; never round input."""


def scale(currency: str) -> int:
    try:
        return SCALES[currency]
    except KeyError:
        raise UnknownCurrency(f"unknown currency {currency!r}") from None


def quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-scale(currency))


def check_scale(currency: str, amount: Decimal) -> Decimal:
    """Return `amount` unchanged if it fits the currency's scale, else raise PrecisionError."""
    q = quantum(currency)
    if not amount.is_finite():
        raise PrecisionError(f"{amount} is not a finite amount")
    if amount != amount.quantize(q, rounding=ROUND_FLOOR):
        raise PrecisionError(f"{amount} {currency} is finer than {scale(currency)} decimal places")
    return amount


def round_for_house(currency: str, amount: Decimal, direction: Direction) -> Decimal:
    """Round a computed amount to the currency's scale in the house's favour (see module docstring)."""
    rounding = ROUND_CEILING if direction is Direction.CUSTOMER_PAYS else ROUND_FLOOR
    return amount.quantize(quantum(currency), rounding=rounding)
