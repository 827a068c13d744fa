"""Kraken spot: what it does its own way, on top of the generic `CcxtAdapter`.

- **Nonces.** Every private call carries a nonce that must exceed the last one Kraken saw for the key
  ("EAPI:Invalid nonce" otherwise). ccxt makes nonces increase in the order calls are signed, but
  concurrent calls can arrive in another order, so `KrakenExchange` signs and sends one private call
  at a time (`nonce_lock`, held until the answer: only then is the call known to have arrived).
  Public calls carry no nonce and never wait for it.
- **Request limits, outside that lock.** Kraken counts private calls per key with a decaying counter
  (`providers/exchanges/rate_counter.py`): +1 a call, +2 for ledger and trade history, falling at the
  tier's rate, refused above the tier's ceiling. Orders and cancels count instead on the matching
  engine's counter (+1 an order, up to +8 for cancelling a young one). A call waits for its counter
  *before* taking the nonce lock (and is counted when it is sent, as Kraken counts it on arrival), so a
  wait never holds up a call that fits, and a quiet key gets its real burst. ccxt's throttle (one
  bucket for every call, room for one, 3 s per private call, waited out inside the lock) queued each
  placement about 3 s behind the last. Public calls keep ccxt's throttle (about 1 a second).
  Processes sharing the key each keep to 1/`key_share` of both counters.
- An order placement answers with a txid only; orders are found by our id (`cl_ord_id`) in the
  open and closed order lists, and trades in TradesHistory (every pair, 50 a page, `ofs`).
- Withdrawals go to a pre-registered key named by the address and are found later only by the
  `refid` the send answered with (WithdrawStatus, cursor pages).
- Book streams (`KrakenBookStream`, the v2 `book` channel): ccxt's own checksum check is off by default
  and reads prices as text while its book holds floats, so Kraken's CRC32 is recomputed over the book
  ccxt holds after each message, and a mismatch resubscribes for a fresh snapshot. One connection
  carries every book, heartbeats included: its last message shows a silent stall.
"""

from __future__ import annotations

import asyncio
import zlib
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import ccxt.async_support as ccxt_async
import ccxt.pro as ccxt_pro

from models.market import Side, VenueOrder, VenueOrderStatus, VenueWithdrawal, split_symbol, to_ccxt_symbol
from providers.exchanges.base import RetryableVenueError
from providers.exchanges.book_streams import BookStream, StreamConfig, exact, step, stream_origins
from providers.exchanges.ccxt_adapter import TRADE_HISTORY_MAX_PAGES, CcxtAdapter
from providers.exchanges.custody import WITHDRAWAL_HISTORY_MAX_PAGES
from providers.exchanges.error_mapping import VenueErrorWords
from providers.exchanges.parsing import TradeFigures, dec, opt_dec
from providers.exchanges.rate_counter import DecayingCounter
from providers.exchanges.venue_config import (
    ExchangeConfig,
    VenueTraits,
    WithdrawalCapabilities,
    exchange_spec,
)


@dataclass(frozen=True, slots=True)
class KrakenTier:
    """Kraken's published limits for one account tier: the per-key REST counter and the matching
    engine's per-pair order counter (ceiling, decay per second)."""

    rest_ceiling: float
    rest_decay_per_s: float
    trading_ceiling: float
    trading_decay_per_s: float


TIERS: dict[str, KrakenTier] = {
    "starter": KrakenTier(15, 0.33, 60, 1.0),
    "intermediate": KrakenTier(20, 0.5, 125, 2.34),
    "pro": KrakenTier(20, 1.0, 180, 3.75),
}
DEFAULT_TIER = "starter"  # the strictest: never more than any account may send

# What each private call adds to its counter. Ledger and trade history cost 2 on the REST counter;
# orders and cancels count only on the matching engine's (a cancel costs up to 8 for an order under
# 5 s old; we do not track order ages, so every cancel is counted at the most).
_HISTORY_CALLS = frozenset({"Ledgers", "QueryLedgers", "TradesHistory", "QueryTrades"})
_TRADING_COSTS = {"AddOrder": 1.0, "AmendOrder": 1.0, "EditOrder": 1.0, "CancelOrder": 8.0}

_TRADES_PAGE = 50  # TradesHistory's fixed page size
CHECKSUM_LEVELS = 10  # the book checksum covers the best 10 levels a side
_WITHDRAWAL_STATUS = {"Success": "ok", "Failure": "failed"}
# `status-prop` overrides `status`: a cancelled or returned withdrawal is final ("Settled" and
# "Partial" are not).
_WITHDRAWAL_PROP = {"canceled": "canceled", "return": "failed"}


class KrakenExchange(ccxt_async.kraken):
    """ccxt's kraken with Kraken's own limits kept before, and nonce order kept around, each private call."""

    def limit_requests(self, tier: KrakenTier, share: int) -> None:
        """Keep to `1/share` of `tier`'s counters (set once, before the first call)."""
        self.rest_counter = DecayingCounter(tier.rest_ceiling / share, tier.rest_decay_per_s / share)
        self.trading_counter = DecayingCounter(tier.trading_ceiling / share, tier.trading_decay_per_s / share)
        self.nonce_lock = asyncio.Lock()

    async def fetch2(
        self,
        path: str,
        api: Any = ["public"],  # noqa: B006 (ccxt's own signature)
        method: str = "GET",
        params: dict[str, Any] = {},  # noqa: B006
        config: dict[str, Any] = {},  # noqa: B006
    ) -> Any:
        family = api[0] if isinstance(api, list | tuple) else api
        if family != "private":
            return await super().fetch2(path, api, method, params, config)
        if not self.enableRateLimit:
            async with self.nonce_lock:
                return await super().fetch2(path, api, method, params, config)
        trading = _TRADING_COSTS.get(path)
        counter = self.rest_counter if trading is None else self.trading_counter
        cost = trading if trading is not None else 2.0 if path in _HISTORY_CALLS else 1.0
        await counter.admit(cost)  # the wait, if any, holds no lock
        sent = False
        try:
            async with self.nonce_lock:
                counter.charge(cost)  # counted from when it goes out, as the venue counts it
                sent = True
                # Already counted: ccxt's bucket is skipped for this call (cost 0, see `throttle`).
                return await super().fetch2(path, api, method, params, {**config, "cost": 0})
        finally:
            if not sent:
                counter.release(cost)

    async def throttle(self, cost: Any = None) -> Any:
        """ccxt's bucket for public calls only; a private call was counted before its nonce was made."""
        if cost == 0:
            return None
        return await super().throttle(cost)


class KrakenAdapter(CcxtAdapter):
    """Kraken spot (see the module docstring for what differs from the generic adapter)."""

    traits = VenueTraits(
        withdrawals=WithdrawalCapabilities(client_id_param=None, lookup_by="venue_ref"),
        errors=VenueErrorWords(
            auth_markers=("EAPI:Invalid key", "EAPI:Invalid signature", "EGeneral:Permission denied"),
            maintenance_markers=("EService:Unavailable", "EService:Busy"),
            # ccxt's kraken table misses "EFunding:Insufficient funds" (its broad entry reads
            # ":IInsufficient funds").
            insufficient_markers=("EFunding:Insufficient funds", "EOrder:Insufficient funds"),
            not_found_markers=("EOrder:Unknown order", "EOrder:Invalid order"),
        ),
        withdraws_to_key=True,
        trade_history_all_pairs=True,
    )
    exchange: KrakenExchange

    @classmethod
    def make_exchange(cls, config: ExchangeConfig) -> Any:
        spec = exchange_spec(config)
        spec["has"] = {"fetchCurrencies": False}  # Assets is not needed: markets carry the asset ids
        exchange = KrakenExchange(spec)
        exchange.limit_requests(TIERS[config.account_tier or DEFAULT_TIER], max(config.key_share, 1))
        base = config.base_url.rstrip("/")
        if base:
            exchange.urls["api"] = {"public": base, "private": base}  # ccxt signs `/0/...`: no path prefix
        exchange.number = str
        return exchange

    async def _find_by_client_id(self, symbol: str, cid: str) -> VenueOrder | None:
        """QueryOrders takes txids only; OpenOrders and ClosedOrders filter by `cl_ord_id`."""
        ccxt_symbol = to_ccxt_symbol(symbol)
        async with self._errors():
            for fetch in (self.exchange.fetch_open_orders, self.exchange.fetch_closed_orders):
                for raw in await fetch(ccxt_symbol, None, None, {"clientOrderId": cid}):
                    if raw.get("clientOrderId") == cid:
                        return self._parse_order(raw, symbol)
        return None

    async def _traded_order_ids(self, symbol: str, since_ms: int) -> list[str]:
        """TradesHistory covers every pair, 50 a page, newest first; `ofs` pages on."""
        market_id = self.exchange.market(to_ccxt_symbol(symbol))["id"]
        ids: dict[str, None] = {}
        ofs = 0
        while True:
            async with self._errors():
                body = await self.exchange.private_post_tradeshistory(
                    {"start": str(since_ms // 1000 - 1), "ofs": ofs}
                )
            result = body.get("result") or {}
            trades = result.get("trades") or {}
            for trade in trades.values():
                if trade.get("pair") == market_id and trade.get("ordertxid"):
                    ids[str(trade["ordertxid"])] = None
            ofs += len(trades)
            if not trades or ofs >= int(result.get("count") or 0):
                return list(ids)

    async def trade_history(self, ccxt_symbol: str | None, since_ms: int | None) -> list[dict[str, Any]]:
        """TradesHistory: every pair, 50 a page at an offset (`ofs`), newest first. A trade seen on two
        pages (new trades shift the offsets while we read) counts once; a symbol filters afterwards
        (the offsets count every pair's trades)."""
        rows: dict[str, dict[str, Any]] = {}
        fetched = 0
        for _ in range(TRADE_HISTORY_MAX_PAGES):
            async with self._errors():
                page = await self.exchange.fetch_my_trades(None, since_ms, _TRADES_PAGE, {"ofs": fetched})
            fetched += len(page)
            rows.update((str(t.get("id")), t) for t in page)
            if len(page) < _TRADES_PAGE:
                return [t for t in rows.values() if ccxt_symbol is None or t.get("symbol") == ccxt_symbol]
        raise RetryableVenueError(self.name, "trade history longer than we page through")

    def trade_figures(self, trade: dict[str, Any]) -> TradeFigures:
        """TradesHistory's own text: `vol`, `cost`, `fee` (in the currency ccxt names from the pair)."""
        info = trade.get("info") or {}
        fee = trade.get("fee") or {}
        return TradeFigures(
            amount=dec(info.get("vol")),
            cost=dec(info.get("cost")),
            fee=dec(info.get("fee")),
            fee_currency=str(fee.get("currency") or ""),
        )

    def _parse_order(self, raw: dict[str, Any], symbol: str) -> VenueOrder | None:
        """QueryOrders' shape (`vol`, `vol_exec`, `cost`, `fee`, `oflags`); None for AddOrder's answer,
        which is a txid only."""
        info = raw.get("info") or {}
        if "vol" not in info:
            return None
        vol, vol_exec = dec(info.get("vol")), dec(info.get("vol_exec"))
        state = str(info.get("status"))
        if state in ("pending", "open"):
            status = VenueOrderStatus.PARTIALLY_FILLED if vol_exec > 0 else VenueOrderStatus.OPEN
        elif state == "closed":
            status = VenueOrderStatus.FILLED if vol_exec >= vol else VenueOrderStatus.CANCELLED
        else:  # canceled, expired
            status = VenueOrderStatus.CANCELLED
        base, quote_ccy = split_symbol(symbol)
        flags = str(info.get("oflags", ""))
        cost, fee = dec(info.get("cost")), dec(info.get("fee"))
        descr = info.get("descr") or {}
        return VenueOrder(
            provider=self.name,
            provider_order_id=str(raw.get("id")),
            client_order_id=info.get("cl_ord_id") or raw.get("clientOrderId"),
            symbol=symbol,
            side=Side(str(descr.get("type", raw.get("side", ""))).upper()),
            status=status,
            amount=vol,
            filled=vol_exec,
            quote_filled=cost,
            average_price=cost / vol_exec if vol_exec else None,
            fee=fee,
            fee_currency=base if "fcib" in flags else quote_ccy,  # "fee in base" flag
            raw=info,
        )

    async def _withdrawal_by_ref(
        self, currency: str, venue_ref: str, start_ms: int | None
    ) -> VenueWithdrawal | None:
        """WithdrawStatus, newest first, in cursor pages; the row whose `refid` is ours."""
        cursor: Any = True
        for _ in range(WITHDRAWAL_HISTORY_MAX_PAGES):
            async with self._errors():
                rows = await self.exchange.fetch_withdrawals(currency, start_ms, None, {"cursor": cursor})
            for row in rows:
                info = row.get("info") or {}
                if info.get("refid") == venue_ref:
                    return VenueWithdrawal(
                        provider=self.name,
                        withdrawal_id=venue_ref,
                        currency=str(row.get("currency") or currency),
                        amount=dec(info.get("amount")),
                        address=str(info.get("info") or ""),
                        status=_WITHDRAWAL_PROP.get(
                            str(info.get("status-prop") or ""),
                            _WITHDRAWAL_STATUS.get(str(info.get("status")), "pending"),
                        ),
                        tx_hash=info.get("txid") or None,
                        fee=opt_dec(info.get("fee")),
                    )
            cursor = (rows[-1].get("info") or {}).get("next_cursor") if rows else None
            if not cursor:
                return None
        raise RetryableVenueError(self.name, "withdrawal history longer than we page through")


class _CheckedKraken(ccxt_pro.kraken):
    """ccxt.pro's kraken, verifying Kraken's book checksum on every book message."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.checksum_failed: dict[str, bool] = {}

    def handle_order_book(self, client: Any, message: dict[str, Any]) -> None:
        super().handle_order_book(client, message)
        first = (message.get("data") or [{}])[0]
        symbol, expected = first.get("symbol"), first.get("checksum")
        book = self.orderbooks.get(symbol) if symbol else None
        if book is None or expected is None:
            return
        matches = kraken_checksum(book, self.market(symbol)) == int(expected)
        if message.get("type") == "snapshot":
            self.checksum_failed[symbol] = not matches
        elif not matches:
            self.checksum_failed[symbol] = True  # sticky until a snapshot matches again


def kraken_checksum(book: Any, market: dict[str, Any]) -> int:
    """Kraken's CRC32 over the best 10 asks then the best 10 bids, digits only, leading zeros stripped."""
    price_step = step(market["precision"]["price"])
    amount_step = step(market["precision"]["amount"])

    def part(value: float, at: Decimal) -> str:
        return f"{exact(value, at):f}".replace(".", "").lstrip("0")

    payload = "".join(
        part(level[0], price_step) + part(level[1], amount_step)
        for side in (book["asks"], book["bids"])
        for level in list(side)[:CHECKSUM_LEVELS]
    )
    return zlib.crc32(payload.encode()) & 0xFFFFFFFF


class KrakenBookStream(BookStream):
    """Kraken's v2 `book` channel through ccxt.pro, checksum-verified (see the module docstring)."""

    exchange: _CheckedKraken

    @classmethod
    def make_exchange(cls, config: StreamConfig) -> Any:
        exchange = _CheckedKraken(
            {"timeout": config.timeout_ms, "enableRateLimit": True, "has": {"fetchCurrencies": False}}
        )
        base, ws = stream_origins(config)
        if base:
            exchange.urls["api"] = {"public": base, "private": base, "ws": {"publicV2": f"{ws}/v2"}}
        return exchange

    async def _watch(self, ccxt_symbol: str) -> tuple[Any, bool]:
        if self.exchange.checksum_failed.get(ccxt_symbol):  # resubscribe: Kraken sends a fresh snapshot
            self._drop_subscription(ccxt_symbol)
            self.exchange.checksum_failed[ccxt_symbol] = False
        raw = await self.exchange.watch_order_book(ccxt_symbol, self.config.depth)
        return raw, not self.exchange.checksum_failed.get(ccxt_symbol, False)

    def _drop_subscription(self, ccxt_symbol: str) -> None:
        message_hash = f"orderbook@{ccxt_symbol}"
        for client in list(self.exchange.clients.values()):
            client.subscriptions.pop(message_hash, None)

    async def _rest_levels(self, market: dict[str, Any], depth: int) -> tuple[list[Any], list[Any]]:
        raw = await self.exchange.publicGetDepth({"pair": market["id"], "count": depth})
        only = next(iter(raw["result"].values()))
        return only["bids"], only["asks"]

    def connection_alive_ms(self) -> int | None:
        stamps = [c.last_message_at for c in self.exchange.clients.values() if c.last_message_at]
        return max(stamps) if stamps else None
