"""Our trades as a venue reports them (ccxt `fetch_my_trades`), for reconciliation's fill matching.

Kept apart from the order adapter: reconciliation reads, the order saga writes. Uses the adapter's own
ccxt exchange and error mapping, so a venue down surfaces as the usual `VenueError`s.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from models.market import SYMBOLS, to_ccxt_symbol
from providers.exchanges.ccxt_adapter import CcxtAdapter
from services.reconciliation import VenueTrade


def _dec(value: Any) -> Decimal:
    return Decimal(str(value)) if value not in (None, "") else Decimal(0)


async def venue_trades(adapter: CcxtAdapter, since_ms: int | None) -> list[VenueTrade]:
    """Every trade of ours at the venue since `since_ms` (all when None), amounts from the venue's text."""
    await adapter._ensure_loaded()
    out: list[VenueTrade] = []
    ours = {to_ccxt_symbol(s): s for s in SYMBOLS}
    # Kraken's TradesHistory covers every pair in one (rate-limited) call; Binance's myTrades is per symbol.
    wanted: list[str | None] = [None] if adapter.exchange.id == "kraken" else list(ours)
    for ccxt_symbol in wanted:
        async with adapter._errors():
            rows = await adapter.exchange.fetch_my_trades(ccxt_symbol, since=since_ms)
        for t in rows:
            symbol = ours.get(str(t.get("symbol")))
            if symbol is None:
                continue
            fee = t.get("fee") or {}
            out.append(
                VenueTrade(
                    venue=adapter.name,
                    trade_id=str(t.get("id")),
                    order_id=str(t.get("order")),
                    symbol=symbol,
                    side=str(t.get("side")),
                    amount=_dec(t.get("amount")),
                    cost=_dec(t.get("cost")),
                    fee=_dec(fee.get("cost")),
                    fee_currency=str(fee.get("currency") or ""),
                )
            )
    return out
