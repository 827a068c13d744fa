"""The one formatter of money for JSON: a string at the asset's scale (`"1.50"`, not `"1.5"` or `1.5`).

Amounts are exact `Decimal`s and travel as strings, so a client never meets a float. An amount of an
asset shows at least the asset's places (`models.assets.SCALES`); a value finer than that (a venue's
exact fill) is shown exactly, never rounded for display. A price is money of its quote currency per unit
of the base, so it takes the quote currency's places the same way. Fractions (slippage, fee rates) are
not money: `plain` shows them exactly.
"""

from __future__ import annotations

from decimal import Decimal

from models.assets import scale


def plain(value: Decimal, min_places: int = 0) -> str:
    """`value` exactly, without exponent, with at least `min_places` decimals."""
    exponent = value.normalize().as_tuple().exponent
    places = max(min_places, -exponent) if isinstance(exponent, int) else min_places
    return format(value.quantize(Decimal(1).scaleb(-places)), "f")


def money(value: Decimal, currency: str) -> str:
    """An amount of `currency` as the API shows it: `money(Decimal("1.5"), "GBP") == "1.50"`."""
    return plain(value, scale(currency))


def money_or_none(value: Decimal | None, currency: str) -> str | None:
    """`money` for optional amounts (a field that is null until the order fills, say)."""
    return None if value is None else money(value, currency)
