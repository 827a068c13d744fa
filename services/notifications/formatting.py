"""Amounts as a UK customer reads them: `£1,234.56` for sterling, crypto at its scale (`0.01500000 BTC`).

Payload amounts arrive as strings (the outbox stores JSON); they are parsed as Decimal, never float, and
shown at the asset's scale. An amount finer than the scale is shown in full rather than rounded: a message
must never show a figure the books do not hold.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from models.assets import SCALES


def _decimal(value: Any) -> Decimal:
    try:
        return value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation as e:
        raise ValueError(f"not an amount: {value!r}") from e


def _at_scale(amount: Decimal, scale: int) -> Decimal:
    quantum = Decimal(1).scaleb(-scale)
    exact = amount.quantize(quantum)
    return exact if exact == amount else amount


def gbp(value: Any) -> str:
    """`£1,234.56`; negative as `-£1.50`."""
    amount = _at_scale(_decimal(value), SCALES["GBP"])
    sign = "-" if amount < 0 else ""
    return f"{sign}£{abs(amount):,}"


def asset_amount(value: Any, currency: str) -> str:
    """GBP as `gbp`; crypto as `1,234.50000000 BTC` at its scale."""
    code = str(currency).upper()
    if code == "GBP":
        return gbp(value)
    scale = SCALES.get(code, 8)
    return f"{_at_scale(_decimal(value), scale):,} {code}"
