"""Binance spot: what it does its own way, on top of the generic `CcxtAdapter`.

- Its errors carry numeric codes (`{"code": -2010, ...}`): auth, a stale clock, and "execution status
  unknown" (-1000, -1001, -1006, -1007: ambiguous while placing) are read from the code.
- An order answer is exact (`executedQty`, `cummulativeQuoteQty`, `fills` with commissions); the order
  query has no fills, so a filled order's trades are read for its exact fills and fees.
- An order is found by our id directly (`origClientOrderId`); trade history is per symbol and pages
  by trade id, its amounts read from its own text.
- A book is read from the raw depth (ccxt's parser yields floats even with `number = str`).
- Withdrawals carry our id (`withdrawOrderId`) and the history filters by it, every page read.
- ccxt chooses its spot error table by URL prefix, which breaks at any other host (`_SpotErrorTable`).
- Book streams (`BinanceBookStream`): ccxt.pro joins the diff-depth stream to a REST snapshot by update
  ids and refuses a gap itself; a connection per symbol, so a book's own age shows a stall.
"""

from __future__ import annotations

import re
from typing import Any

import ccxt.async_support as ccxt_async
import ccxt.pro as ccxt_pro

from models.market import Side, VenueFill, VenueOrder, VenueOrderStatus, VenueWithdrawal, to_ccxt_symbol
from providers.exchanges.base import RetryableVenueError
from providers.exchanges.book_streams import BookStream, StreamConfig, stream_origins
from providers.exchanges.ccxt_adapter import TRADE_HISTORY_MAX_PAGES, CcxtAdapter
from providers.exchanges.custody import WITHDRAWAL_HISTORY_MAX_PAGES, WITHDRAWAL_HISTORY_PAGE
from providers.exchanges.error_mapping import VenueErrorWords
from providers.exchanges.parsing import TradeFigures, dec, with_fee_totals
from providers.exchanges.venue_config import (
    ExchangeConfig,
    VenueTraits,
    WithdrawalCapabilities,
    exchange_spec,
)

_CODE = re.compile(r'"code"\s*:\s*(-?\d+)')
# Depth limits Binance accepts; a read asks for the smallest that covers the depth wanted.
_DEPTH_LIMITS = (5, 10, 20, 50, 100, 500, 1000, 5000)
_TRADES_PAGE = 1000
# Only the statuses Binance documents as final close an order; any other (PENDING_NEW, PENDING_CANCEL,
# one added later) may still trade, so it counts as open.
_STATUS = {
    "PARTIALLY_FILLED": VenueOrderStatus.PARTIALLY_FILLED,
    "FILLED": VenueOrderStatus.FILLED,
    "REJECTED": VenueOrderStatus.REJECTED,
    "CANCELED": VenueOrderStatus.CANCELLED,
    "EXPIRED": VenueOrderStatus.CANCELLED,
    "EXPIRED_IN_MATCH": VenueOrderStatus.CANCELLED,
}


def _spot_options() -> dict[str, Any]:
    """The spot-only options of every Binance instance (REST and streams): no futures, margin or
    currency calls. A fresh dict each time: ccxt keeps (and may change) what it is given."""
    return {
        "defaultType": "spot",
        "fetchMarkets": {"types": ["spot"]},  # else fapi/dapi exchangeInfo too
        "fetchCurrencies": False,  # else sapi capital/config/getall on every load
        "fetchMargins": False,
        "adjustForTimeDifference": False,
    }


def _depth_limit(depth: int) -> int:
    """The smallest depth limit Binance accepts that covers `depth` levels."""
    return next(n for n in _DEPTH_LIMITS if n >= depth)


class _SpotErrorTable:
    """ccxt's binance choosing its spot error table by URL prefix breaks at any other host.

    ccxt picks the spot exception map only for `https://api.binance.com/...`; against a sandbox only the
    global map applies and many spot codes map differently. We only trade spot, so the spot table is
    right wherever the venue lives. Mixed into ccxt's binance classes (REST and ccxt.pro).
    """

    exceptions: dict[str, Any]
    safe_dict: Any

    def get_exceptions_by_url(self, url: str | None, exactOrBroad: str) -> dict[str, Any]:  # noqa: N803
        spot = self.safe_dict(self.exceptions, "spot", {})
        result: dict[str, Any] = self.safe_dict(spot, exactOrBroad, {})
        return result


class _LocalSafeBinance(_SpotErrorTable, ccxt_async.binance):
    """ccxt's binance with the spot error table wherever the venue lives."""


class _StreamingBinance(_SpotErrorTable, ccxt_pro.binance):
    """ccxt.pro's binance with the spot error table wherever the venue lives."""


class BinanceAdapter(CcxtAdapter):
    """Binance spot (see the module docstring for what differs from the generic adapter)."""

    traits = VenueTraits(
        withdrawals=WithdrawalCapabilities(client_id_param="withdrawOrderId", lookup_by="client_id"),
        errors=VenueErrorWords(
            auth_codes=frozenset({"-1022", "-2014", "-2015", "-2008"}),
            stale_clock_codes=frozenset({"-1021"}),
            unknown_outcome_codes=frozenset({"-1000", "-1001", "-1006", "-1007"}),
            maintenance_markers=("System is under maintenance",),
            not_found_markers=("Order does not exist", "Unknown order sent"),
        ),
        cancel_answers_order=True,
    )

    @classmethod
    def make_exchange(cls, config: ExchangeConfig) -> Any:
        spec = exchange_spec(config)
        spec["options"] = {**_spot_options(), **config.options}
        exchange = _LocalSafeBinance(spec)
        base = config.base_url.rstrip("/")
        if base:
            # The whole dict is replaced, so an API family we did not list fails closed (NotSupported)
            # instead of quietly going to the real venue.
            exchange.urls["api"] = {
                "public": f"{base}/api/v3",
                "private": f"{base}/api/v3",
                "sapi": f"{base}/sapi/v1",
            }
        exchange.number = str
        return exchange

    def _venue_code(self, e: Exception) -> str | None:
        m = _CODE.search(str(e))
        return m.group(1) if m else None

    async def _book_levels(self, ccxt_symbol: str, depth: int) -> tuple[list[Any], list[Any], Any]:
        # ccxt's binance book parser yields floats even with number=str: read the raw depth.
        market = self.exchange.market(ccxt_symbol)
        raw = await self.exchange.publicGetDepth({"symbol": market["id"], "limit": _depth_limit(depth)})
        return raw["bids"], raw["asks"], None

    # ------------------------------------------------------------------ orders

    def _needs_details(self, order: VenueOrder) -> bool:
        return order.filled > 0 and not order.fills

    async def _with_fills(self, order: VenueOrder, symbol: str) -> VenueOrder:
        """Binance's order query has no fees: add its trades (exact fills and commissions)."""
        if not self._needs_details(order):
            return order
        async with self._errors():
            trades = await self.exchange.fetch_order_trades(order.provider_order_id, to_ccxt_symbol(symbol))
        fills = [
            VenueFill(
                trade_id=str(t["info"].get("id")),
                price=dec(t["info"]["price"]),
                amount=dec(t["info"]["qty"]),
                fee=dec(t["info"]["commission"]),
                fee_currency=str(t["info"]["commissionAsset"]),
            )
            for t in trades
        ]
        return with_fee_totals(order, fills)

    async def _find_by_client_id(self, symbol: str, cid: str) -> VenueOrder | None:
        async with self._errors():
            raw = await self.exchange.fetch_order(None, to_ccxt_symbol(symbol), {"origClientOrderId": cid})
        order = self._parse_order(raw, symbol)
        return None if order is None else await self._with_fills(order, symbol)

    async def _traded_order_ids(self, symbol: str, since_ms: int) -> list[str]:
        trades = await self.trade_history(to_ccxt_symbol(symbol), since_ms)
        return list(dict.fromkeys(str(t["order"]) for t in trades if t.get("order")))

    async def trade_history(self, ccxt_symbol: str | None, since_ms: int | None) -> list[dict[str, Any]]:
        """myTrades of one symbol, 1,000 a page from a trade id on (`fromId`, which takes no start
        time with it)."""
        rows: dict[str, dict[str, Any]] = {}
        params: dict[str, Any] = {}
        since = since_ms
        for _ in range(TRADE_HISTORY_MAX_PAGES):
            async with self._errors():
                page = await self.exchange.fetch_my_trades(ccxt_symbol, since, _TRADES_PAGE, params)
            rows.update((str(t["id"]), t) for t in page)
            if len(page) < _TRADES_PAGE:
                return list(rows.values())
            since, params = None, {"fromId": max(int(t["id"]) for t in page) + 1}
        raise RetryableVenueError(self.name, "trade history longer than we page through")

    def trade_figures(self, trade: dict[str, Any]) -> TradeFigures:
        """myTrades' own text: `qty`, `quoteQty`, `commission` in `commissionAsset`."""
        info = trade.get("info") or {}
        return TradeFigures(
            amount=dec(info.get("qty")),
            cost=dec(info.get("quoteQty")),
            fee=dec(info.get("commission")),
            fee_currency=str(info.get("commissionAsset") or ""),
        )

    def _parse_order(self, raw: dict[str, Any], symbol: str) -> VenueOrder | None:
        info = raw.get("info") or {}
        if "orderId" not in info:
            return super()._parse_order(raw, symbol)
        filled = dec(info.get("executedQty"))
        quote = dec(info.get("cummulativeQuoteQty"))
        order = VenueOrder(
            provider=self.name,
            provider_order_id=str(info["orderId"]),
            client_order_id=info.get("clientOrderId"),
            symbol=symbol,
            side=Side(str(info["side"]).upper()),
            status=_STATUS.get(str(info.get("status")), VenueOrderStatus.OPEN),
            amount=dec(info.get("origQty")),
            filled=filled,
            quote_filled=quote,
            average_price=quote / filled if filled else None,
            raw=info,
        )
        if "fills" in info:
            fills = [
                VenueFill(
                    trade_id=str(f.get("tradeId")),
                    price=dec(f["price"]),
                    amount=dec(f["qty"]),
                    fee=dec(f["commission"]),
                    fee_currency=str(f["commissionAsset"]),
                )
                for f in info["fills"]
            ]
            order = with_fee_totals(order, fills)
        return order

    # ------------------------------------------------------------------ withdrawals

    async def _withdrawal_by_client_id(
        self, currency: str, client_id: str, start_ms: int | None
    ) -> VenueWithdrawal | None:
        """The withdrawal history filtered by our `withdrawOrderId`, every page."""
        offset = 0
        for _ in range(WITHDRAWAL_HISTORY_MAX_PAGES):
            params = {"withdrawOrderId": client_id, "offset": offset}
            async with self._errors():
                rows = await self.exchange.fetch_withdrawals(
                    currency, start_ms, WITHDRAWAL_HISTORY_PAGE, params
                )
            for row in rows:
                info = row.get("info") or {}
                if info.get("withdrawOrderId") == client_id:
                    return VenueWithdrawal(
                        provider=self.name,
                        withdrawal_id=str(row.get("id")),
                        currency=str(row.get("currency") or currency),
                        amount=dec(info.get("amount", row.get("amount"))),
                        address=str(row.get("address") or info.get("address") or ""),
                        status=str(row.get("status") or "pending"),
                        tx_hash=row.get("txid") or None,
                        fee=dec(info["transactionFee"]) if info.get("transactionFee") else None,
                    )
            if not rows:  # past the last page (a page may be shorter than asked for: keep going)
                return None
            offset += len(rows)
        raise RetryableVenueError(self.name, "withdrawal history longer than we page through")


class BinanceBookStream(BookStream):
    """Binance's diff-depth streams through ccxt.pro (see the module docstring)."""

    @classmethod
    def make_exchange(cls, config: StreamConfig) -> Any:
        exchange = _StreamingBinance(
            {
                "timeout": config.timeout_ms,
                "enableRateLimit": True,
                "options": {**_spot_options(), "watchOrderBookLimit": 1000},
            }
        )
        base, ws = stream_origins(config)
        if base:
            exchange.urls["api"] = {
                "public": f"{base}/api/v3",
                "private": f"{base}/api/v3",
                "ws": {"spot": f"{ws}/ws"},
            }
        return exchange

    async def _watch(self, ccxt_symbol: str) -> tuple[Any, bool]:
        raw = await self.exchange.watch_order_book(ccxt_symbol)
        return raw, True  # ccxt itself refuses a gap in Binance's update ids

    async def _rest_levels(self, market: dict[str, Any], depth: int) -> tuple[list[Any], list[Any]]:
        raw = await self.exchange.publicGetDepth({"symbol": market["id"], "limit": _depth_limit(depth)})
        return raw["bids"], raw["asks"]
