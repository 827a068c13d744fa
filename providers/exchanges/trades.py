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


# Venues serve trade history in pages: Kraken 50 trades at an offset (`ofs`), Binance up to 1,000 from a
# trade id (`fromId`). A reconciliation that read one page would report every later trade as unbooked.
KRAKEN_PAGE = 50
BINANCE_PAGE = 1000
MAX_PAGES = 10_000


async def _every_page(adapter: CcxtAdapter, ccxt_symbol: str | None, since_ms: int | None) -> list[Any]:
    """Every trade since `since_ms`, page by page; a trade seen on two pages (new trades shift Kraken's
    offsets while we read) counts once."""
    rows: dict[str, Any] = {}
    fetched = 0
    last_id: int | None = None
    for _ in range(MAX_PAGES):
        if adapter.exchange.id == "kraken":
            since, limit, params = since_ms, KRAKEN_PAGE, {"ofs": fetched}
        elif last_id is None:
            since, limit, params = since_ms, BINANCE_PAGE, {}
        else:  # from a trade id on: Binance takes no start time with it
            since, limit, params = None, BINANCE_PAGE, {"fromId": last_id + 1}
        async with adapter._errors():
            page = await adapter.exchange.fetch_my_trades(
                ccxt_symbol, since=since, limit=limit, params=params
            )
        fetched += len(page)
        for t in page:
            rows[str(t.get("id"))] = t
            if adapter.exchange.id != "kraken":
                last_id = max(last_id or 0, int(t["id"]))
        if len(page) < limit:
            return list(rows.values())
    raise RuntimeError(f"{adapter.name}: trade history longer than {MAX_PAGES} pages")


async def venue_trades(adapter: CcxtAdapter, since_ms: int | None) -> list[VenueTrade]:
    """Every trade of ours at the venue since `since_ms` (all when None), amounts from the venue's text."""
    await adapter._ensure_loaded()
    out: list[VenueTrade] = []
    ours = {to_ccxt_symbol(s): s for s in SYMBOLS}
    # Kraken's TradesHistory covers every pair in one (rate-limited) call; Binance's myTrades is per symbol.
    wanted: list[str | None] = [None] if adapter.exchange.id == "kraken" else list(ours)
    for ccxt_symbol in wanted:
        for t in await _every_page(adapter, ccxt_symbol, since_ms):
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
                    timestamp_ms=t.get("timestamp"),
                )
            )
    return out
