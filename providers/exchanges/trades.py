"""Our trades as a venue reports them (ccxt `fetch_my_trades`), for reconciliation's fill matching.

Kept apart from the order adapter: reconciliation reads, the order saga writes. Uses the adapter's own
ccxt exchange and error mapping, so a venue down surfaces as the usual `VenueError`s.
"""

from __future__ import annotations

from models.market import SYMBOLS, to_ccxt_symbol
from providers.exchanges.ccxt_adapter import CcxtAdapter
from services.reconciliation import VenueTrade


async def venue_trades(adapter: CcxtAdapter, since_ms: int | None) -> list[VenueTrade]:
    """Every trade of ours at the venue since `since_ms` (all when None), amounts from the venue's text.

    How the venue pages its history and writes its amounts is the venue class's (`trade_history`,
    `trade_figures`); whether one read covers every pair is its `traits.trade_history_all_pairs`."""
    await adapter._ensure_loaded()
    out: list[VenueTrade] = []
    ours = {to_ccxt_symbol(s): s for s in SYMBOLS}
    wanted: list[str | None] = [None] if adapter.traits.trade_history_all_pairs else list(ours)
    for ccxt_symbol in wanted:
        for t in await adapter.trade_history(ccxt_symbol, since_ms):
            symbol = ours.get(str(t.get("symbol")))
            if symbol is None:
                continue
            figures = adapter.trade_figures(t)
            out.append(
                VenueTrade(
                    venue=adapter.name,
                    trade_id=str(t.get("id")),
                    order_id=str(t.get("order")),
                    symbol=symbol,
                    side=str(t.get("side")),
                    amount=figures.amount,
                    cost=figures.cost,
                    fee=figures.fee,
                    fee_currency=figures.fee_currency,
                    timestamp_ms=t.get("timestamp"),
                )
            )
    return out
