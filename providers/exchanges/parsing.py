"""Venue answers read into our models, exactly: amounts from the venue's own text, never from a float.

ccxt's unified fields are floats unless the exchange's `number` is `str` (the adapter sets it); fills,
fees and balances are read from the raw response where the unified one would lose digits. What only
one venue sends (Binance's `fills`, Kraken's `vol_exec`) is read in that venue's module.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from models.market import Side, VenueDeposit, VenueFill, VenueOrder, VenueOrderStatus

ZERO = Decimal(0)


def dec(value: Any) -> Decimal:
    """Exact Decimal from venue text; a float here means a lossy path slipped in, which is a bug."""
    if value is None or value == "":
        return ZERO
    if isinstance(value, float):
        raise TypeError(f"float {value!r} reached the adapter; read the raw response instead")
    return Decimal(str(value))


def opt_dec(value: Any) -> Decimal | None:
    return None if value is None or value == "" else dec(value)


@dataclass(frozen=True, slots=True)
class TradeFigures:
    """One trade's amounts as the venue wrote them: base amount, quote cost, fee and its currency."""

    amount: Decimal
    cost: Decimal
    fee: Decimal
    fee_currency: str


def unified_trade_figures(trade: dict[str, Any]) -> TradeFigures:
    """ccxt's unified trade fields (a venue without its own reader); with `number = str` they hold the
    venue's text, and `dec` refuses a float."""
    fee = trade.get("fee") or {}
    return TradeFigures(
        amount=dec(trade.get("amount")),
        cost=dec(trade.get("cost")),
        fee=dec(fee.get("cost")),
        fee_currency=str(fee.get("currency") or ""),
    )


def ms_to_dt(ms: Any) -> datetime | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(int(ms) / 1000, tz=UTC)


def with_fee_totals(order: VenueOrder, fills: list[VenueFill]) -> VenueOrder:
    """The order with its fills, and its fee as their sum (in their currency, when they share one)."""
    fee = sum((f.fee for f in fills), ZERO)
    currencies = {f.fee_currency for f in fills}
    return order.model_copy(
        update={
            "fills": fills,
            "fee": fee,
            "fee_currency": currencies.pop() if len(currencies) == 1 else order.fee_currency,
        }
    )


def unified_order(provider: str, raw: dict[str, Any], symbol: str) -> VenueOrder | None:
    """ccxt's unified order (a venue without its own reader); None when it carries no id or status."""
    if raw.get("id") is None or raw.get("status") is None:
        return None
    filled, amount = dec(raw.get("filled")), dec(raw.get("amount"))
    status = {
        "open": VenueOrderStatus.PARTIALLY_FILLED if filled > 0 else VenueOrderStatus.OPEN,
        "closed": VenueOrderStatus.FILLED if filled >= amount else VenueOrderStatus.CANCELLED,
        "rejected": VenueOrderStatus.REJECTED,
    }.get(str(raw.get("status")), VenueOrderStatus.CANCELLED)
    fee = raw.get("fee") or {}
    cost = dec(raw.get("cost"))
    return VenueOrder(
        provider=provider,
        provider_order_id=str(raw["id"]),
        client_order_id=raw.get("clientOrderId"),
        symbol=symbol,
        side=Side(str(raw.get("side", "")).upper()),
        status=status,
        amount=amount,
        filled=filled,
        quote_filled=cost,
        average_price=cost / filled if filled else None,
        fee=dec(fee.get("cost")),
        fee_currency=fee.get("currency"),
        raw=raw.get("info") or {},
    )


def deposit(provider: str, row: dict[str, Any], currency: str | None) -> VenueDeposit:
    """One deposit record (ccxt's transaction with the venue's raw `info`)."""
    info = row.get("info") or {}
    confirmations = 0
    if isinstance(info.get("confirmTimes"), str):  # Binance: "1/2"
        confirmations = int(info["confirmTimes"].split("/")[0] or 0)
    elif info.get("confirmations") is not None:
        confirmations = int(info["confirmations"])
    index = info.get("vout", info.get("outputIndex"))
    return VenueDeposit(
        provider=provider,
        tx_id=str(row.get("txid") or info.get("txId") or info.get("txid") or row.get("id")),
        currency=str(row.get("currency") or currency),
        amount=dec(info.get("amount", row.get("amount"))),
        address=row.get("address") or info.get("address") or info.get("info"),
        confirmations=confirmations,
        status=str(row.get("status") or "pending"),
        timestamp=ms_to_dt(row.get("timestamp")),
        venue_ref=str(row["id"]) if row.get("id") is not None else None,
        output_index=int(index) if index is not None else None,
    )
