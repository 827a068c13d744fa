"""`CcxtAdapter`: the execution adapter over ccxt's async exchanges, and the base of each venue's class.

What it adds on top of ccxt, and why:
- **Exact numbers.** ccxt's unified fields are floats by default. The adapter sets `exchange.number = str`
  (ccxt then keeps the venue's own text) and reads fills, fees and balances from the raw response
  (`order["info"]`), turning them into `Decimal` (providers/exchanges/parsing.py). A float raises.
- **Market rules.** Markets load once (`load`, call again to refresh); each market's lot step, tick,
  minimum amount and minimum notional become `MarketRules`. Amounts are rounded DOWN to the lot step
  (never up: the house must not buy more than the customer paid for) and the remainder is reported
  in `VenueOrder.unplaced_amount`; a protective limit price is rounded towards the customer's side
  (down for buys, up for sells) so it can never exceed their slippage limit.
- **Idempotent placement.** Every order carries `client_order_id(order_id, attempt)`. Venues keep those
  unique only among open orders, so each retry gets a new attempt number and resolution looks up the
  exact id it sent.
- **Three kinds of failure** (see `providers.exchanges.base`): ccxt's exception tree is mapped most
  specific first (providers/exchanges/error_mapping.py); a timeout, dropped connection or 5xx *while
  placing* is `AmbiguousPlacement`, which the saga resolves with `resolve_placement` (several lookups
  with back-off, since venues lag: one "not found" is not proof) and never by sending the order again.

**One class per venue.** What a venue does its own way lives in its subclass: a capability table
(`traits`, as freqtrade's `_ft_has`) for what is data, and overridden methods for what is behaviour
(how its answers read, how an order is found by our id, how its ccxt instance is built). Binance is
providers/exchanges/binance.py, Kraken providers/exchanges/kraken.py; any other ccxt id gets this
generic class. `CcxtAdapter(config)` builds the class of `config.exchange_id`, so no caller can build a
Kraken adapter without Kraken's nonce ordering or a Binance one without its error codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any, ClassVar, Self, cast
from urllib.parse import urlsplit

import ccxt.async_support as ccxt_async
from ccxt.base import errors as ccxt_errors
from ccxt.base.decimal_to_precision import TICK_SIZE

from models.market import (
    FeeSchedule,
    MarketRules,
    OrderBook,
    OrderType,
    PlaceOrderRequest,
    PriceLevel,
    Side,
    TimeInForce,
    VenueOrder,
    VenueOrderStatus,
    from_ccxt_symbol,
    to_ccxt_symbol,
)
from providers.exchanges import parsing
from providers.exchanges.base import (
    AmbiguousPlacement,
    InvalidVenueOrder,
    OrderNotFoundAtVenue,
    RetryableVenueError,
    TerminalVenueError,
    VenueError,
    client_order_id,
)
from providers.exchanges.custody import CcxtCustody
from providers.exchanges.error_mapping import map_ccxt_error
from providers.exchanges.parsing import TradeFigures, dec, ms_to_dt
from providers.exchanges.venue_config import (
    ExchangeConfig,
    VenueTraits,
    WithdrawalCapabilities,
    build_adapters,
    exchange_spec,
    sandbox_or_configured_url,
)

# Public names of this module that live in the modules it was split into.
__all__ = [
    "CcxtAdapter",
    "ExchangeConfig",
    "VenueTraits",
    "WithdrawalCapabilities",
    "build_adapters",
    "build_exchange",
    "client_order_id",
    "sandbox_or_configured_url",
    "venue_class",
]

# Trade history pages (`trade_history`): the most trades a page asks for, and pages read before giving up.
TRADE_HISTORY_PAGE = 1000
TRADE_HISTORY_MAX_PAGES = 10_000

# ccxt ids with a class of their own: module and class name (imported on first use, so each venue's
# module can import this one).
VENUE_CLASSES: dict[str, tuple[str, str]] = {
    "binance": ("providers.exchanges.binance", "BinanceAdapter"),
    "kraken": ("providers.exchanges.kraken", "KrakenAdapter"),
}


def venue_class(exchange_id: str) -> type[CcxtAdapter]:
    """The adapter class for ccxt id `exchange_id` (the generic `CcxtAdapter` for a venue without one)."""
    target = VENUE_CLASSES.get(exchange_id)
    if target is None:
        return CcxtAdapter
    module, name = target
    cls: type[CcxtAdapter] = getattr(importlib.import_module(module), name)
    return cls


def build_exchange(config: ExchangeConfig) -> Any:
    """A ccxt async exchange for `config`, pointed at `base_url` when one is given."""
    return venue_class(config.exchange_id).make_exchange(config)


# --------------------------------------------------------------------------- the adapter


class CcxtAdapter(CcxtCustody):
    """`ExecutionAdapter` over one ccxt async exchange. Create, `await load()`, use, `await close()`.

    `CcxtAdapter(config)` is an instance of the venue's own class (`venue_class`). Custody (balances,
    deposits, withdrawals) is inherited from `CcxtCustody` (providers/exchanges/custody.py)."""

    traits: ClassVar[VenueTraits] = VenueTraits()

    def __new__(cls, config: ExchangeConfig, exchange: Any | None = None) -> Self:
        target = venue_class(config.exchange_id) if cls is CcxtAdapter else cls
        return cast(Self, object.__new__(target))

    def __init__(self, config: ExchangeConfig, exchange: Any | None = None) -> None:
        self.name = config.name
        self.config = config
        self.exchange = exchange if exchange is not None else self.make_exchange(config)
        self._rules: dict[str, MarketRules] = {}
        self._fees: dict[str, FeeSchedule] = {}
        self._load_lock = asyncio.Lock()
        self._first_load: asyncio.Future[None] | None = None  # shared by concurrent first users
        self._client_ids: dict[str, str] = {}  # venue order id -> client order id, for trade history

    @classmethod
    def make_exchange(cls, config: ExchangeConfig) -> Any:
        """ccxt's class for the id; with a sandbox URL every API family goes there, none online."""
        ccxt_class = getattr(ccxt_async, config.exchange_id, None)
        if ccxt_class is None:
            raise ValueError(f"ccxt has no exchange class {config.exchange_id!r}")
        exchange = ccxt_class(exchange_spec(config))
        base = config.base_url.rstrip("/")
        if base:
            # Keep each family's path, swap the origin.
            exchange.urls["api"] = {
                k: base + urlsplit(v).path for k, v in exchange.urls["api"].items() if isinstance(v, str)
            }
        exchange.number = str  # the venue's own decimal text in unified fields instead of floats
        return exchange

    # ------------------------------------------------------------------ errors

    def _venue_code(self, e: Exception) -> str | None:
        """The venue's own error code in `e`, where it sends one (Binance)."""
        return None

    def _map_error(
        self, e: ccxt_errors.BaseError, *, placing: bool = False, cid: str | None = None
    ) -> VenueError:
        """ccxt's exception (and the venue's code in it) -> our three kinds. Most specific first."""
        return map_ccxt_error(
            e,
            venue=self.name,
            words=self.traits.errors,
            code=self._venue_code(e),
            placing=placing,
            cid=cid,
        )

    @contextlib.asynccontextmanager
    async def _errors(self, *, placing: bool = False, cid: str | None = None) -> AsyncIterator[None]:
        """Map ccxt's errors onto ours (`raise ... from` the original)."""
        try:
            yield
        except ccxt_errors.BaseError as e:
            raise self._map_error(e, placing=placing, cid=cid) from e

    # ------------------------------------------------------------------ markets

    async def load(self, *, only_if_unloaded: bool = False) -> None:
        """Load (or refresh) markets and fees. Safe to call concurrently."""
        async with self._load_lock:
            if only_if_unloaded and self._rules:
                return  # loaded while this caller waited for the lock
            async with self._errors():
                markets = await self.exchange.load_markets(reload=bool(self._rules))
                fees: dict[str, Any] = {}
                if self.exchange.has.get("fetchTradingFees"):
                    try:
                        fees = await self.exchange.fetch_trading_fees()
                    except (ccxt_errors.NotSupported, ccxt_errors.PermissionDenied):
                        fees = {}
            rules: dict[str, MarketRules] = {}
            fee_table: dict[str, FeeSchedule] = {}
            tick_mode = self.exchange.precisionMode == TICK_SIZE
            for ccxt_symbol, m in markets.items():
                if not m.get("spot") or "/" not in ccxt_symbol or ":" in ccxt_symbol:
                    continue
                symbol = from_ccxt_symbol(ccxt_symbol)
                precision, limits = m.get("precision", {}), m.get("limits", {})
                rules[symbol] = MarketRules(
                    symbol=symbol,
                    amount_step=self._as_step(precision.get("amount"), tick_mode),
                    price_step=self._as_step(precision.get("price"), tick_mode),
                    min_amount=dec((limits.get("amount") or {}).get("min")),
                    min_notional=dec((limits.get("cost") or {}).get("min")),
                )
                fee = fees.get(ccxt_symbol) or m
                taker, maker = fee.get("taker"), fee.get("maker")
                if taker is not None and maker is not None:
                    fee_table[symbol] = FeeSchedule(taker=dec(taker), maker=dec(maker))
            self._rules, self._fees = rules, fee_table

    @staticmethod
    def _as_step(value: Any, tick_mode: bool) -> Decimal:
        if value is None:
            return Decimal("0.00000001")
        if tick_mode:
            return dec(value)
        return Decimal(1).scaleb(-int(dec(value)))

    async def _ensure_loaded(self) -> None:
        """Load once, on first use, for every caller at once.

        Concurrent first users (a burst of orders on an adapter whose warm-up missed it) share one load:
        each used to reload in turn behind the venue's throttle, seconds apiece at Kraken, past the
        router's deadline, which then opened the venue's breaker on our own queue. A caller that gives up
        (a deadline) leaves the load running for the others; a failed load is tried again by the next.
        """
        if self._rules:
            return
        if self._first_load is None or self._first_load.done():  # none in flight: start one
            self._first_load = asyncio.ensure_future(self.load(only_if_unloaded=True))
            self._first_load.add_done_callback(lambda f: f.cancelled() or f.exception())  # seen if unawaited
        await asyncio.shield(self._first_load)

    def rules(self, symbol: str) -> MarketRules:
        try:
            return self._rules[symbol]
        except KeyError:
            raise InvalidVenueOrder(self.name, f"unknown or unloaded market {symbol}") from None

    def fees(self, symbol: str) -> FeeSchedule:
        try:
            return self._fees[symbol]
        except KeyError:
            raise InvalidVenueOrder(self.name, f"no fee schedule for {symbol}") from None

    def round_amount(self, symbol: str, amount: Decimal) -> tuple[Decimal, Decimal]:
        """(amount rounded DOWN to the lot step, the remainder left out)."""
        step = self.rules(symbol).amount_step
        rounded = (amount / step).to_integral_value(rounding=ROUND_FLOOR) * step
        return rounded, amount - rounded

    def round_price(self, symbol: str, price: Decimal, side: Side) -> Decimal:
        """A limit price on the tick, rounded so it never crosses the customer's limit."""
        step = self.rules(symbol).price_step
        rounding = ROUND_FLOOR if side is Side.BUY else ROUND_CEILING
        return (price / step).to_integral_value(rounding=rounding) * step

    # ------------------------------------------------------------------ market data

    async def order_book(self, symbol: str, depth: int = 50) -> OrderBook:
        await self._ensure_loaded()
        async with self._errors():
            bids, asks, ts = await self._book_levels(to_ccxt_symbol(symbol), depth)
        return OrderBook(
            provider=self.name,
            symbol=symbol,
            bids=[PriceLevel(price=dec(lv[0]), amount=dec(lv[1])) for lv in bids[:depth]],
            asks=[PriceLevel(price=dec(lv[0]), amount=dec(lv[1])) for lv in asks[:depth]],
            timestamp=ms_to_dt(ts) or datetime.now(tz=UTC),
        )

    async def _book_levels(self, ccxt_symbol: str, depth: int) -> tuple[list[Any], list[Any], Any]:
        """(bids, asks, venue timestamp in ms or None), levels as the venue's text."""
        book = await self.exchange.fetch_order_book(ccxt_symbol, depth)
        return book["bids"], book["asks"], book.get("timestamp")

    async def ohlcv(
        self, symbol: str, interval: str = "1m", limit: int = 100
    ) -> list[tuple[int, Decimal, Decimal, Decimal, Decimal, Decimal]]:
        """Candles, oldest first: (open time in ms, open, high, low, close, base volume), exact.

        With `number = str` ccxt keeps the venue's text in OHLCV rows; `dec` refuses a float."""
        await self._ensure_loaded()
        async with self._errors():
            rows = await self.exchange.fetch_ohlcv(to_ccxt_symbol(symbol), interval, limit=limit)
        return [(int(r[0]), *(dec(v) for v in r[1:6])) for r in rows[-limit:]]  # type: ignore[misc]

    # ------------------------------------------------------------------ orders

    async def place_order(self, request: PlaceOrderRequest) -> VenueOrder:
        """Place once. Timeouts/5xx while sending raise `AmbiguousPlacement`: resolve, never resend."""
        await self._ensure_loaded()
        symbol = request.symbol
        rules = self.rules(symbol)
        amount, remainder = self.round_amount(symbol, request.amount)
        if amount <= 0 or amount < rules.min_amount:
            raise InvalidVenueOrder(
                self.name,
                f"amount {request.amount} is below the minimum {rules.min_amount} (step {rules.amount_step})",
            )
        price = None if request.price is None else self.round_price(symbol, request.price, request.side)
        if request.type is OrderType.LIMIT and price is None:
            raise InvalidVenueOrder(self.name, "a limit order needs a price")
        if price is not None and amount * price < rules.min_notional:
            raise InvalidVenueOrder(
                self.name, f"notional {amount * price} is below the minimum {rules.min_notional}"
            )
        # A market order with a protective price is sent as an IOC limit at that price: it takes what the
        # book offers up to the price and never rests.
        if price is not None:
            ccxt_type = "limit"
            tif = TimeInForce.IOC if request.type is OrderType.MARKET else request.time_in_force
        else:
            ccxt_type, tif = "market", None
        params: dict[str, Any] = {"clientOrderId": request.client_order_id}
        if tif is not None:
            params["timeInForce"] = tif.value
        async with self._errors(placing=True, cid=request.client_order_id):
            raw = await self.exchange.create_order(
                to_ccxt_symbol(symbol),
                ccxt_type,
                request.side.value.lower(),
                str(amount),
                None if price is None else str(price),
                params,
            )
        order = self._parse_order(raw, symbol)
        if order is None or self._needs_details(order):
            # The venue answered with an id only (Kraken's AddOrder): fetch the order for its fills.
            provider_id = str(raw.get("id") or "")
            try:
                order = await self._fetch_after_accept(symbol, provider_id, request.client_order_id)
            except AmbiguousPlacement:
                raise
            except VenueError as e:
                # Accepted: whatever failed afterwards, the order exists and must be resolved.
                raise AmbiguousPlacement(self.name, request.client_order_id, str(e)) from e
        return order.model_copy(update={"unplaced_amount": remainder})

    def _needs_details(self, order: VenueOrder) -> bool:
        """True when this answer lacks what settling needs (Binance's order query has no fees)."""
        return False

    async def _fetch_after_accept(self, symbol: str, provider_id: str, cid: str) -> VenueOrder:
        """The venue accepted the order; its lookups may still lag a moment behind."""
        delay = self.config.lookup_backoff_s
        for attempt in range(self.config.lookup_attempts):
            try:
                return await self.order_status(symbol, provider_id)
            except OrderNotFoundAtVenue:
                if attempt == self.config.lookup_attempts - 1:
                    break
                await asyncio.sleep(delay)
                delay *= 2
        # Accepted but not visible: the saga treats it like an ambiguous placement and resolves later.
        raise AmbiguousPlacement(self.name, cid, f"order {provider_id} accepted but not yet visible")

    async def resolve_placement(
        self, symbol: str, client_order_id: str, *, attempts: int | None = None
    ) -> VenueOrder | None:
        """Find the order we may have placed, by its client order id, tolerating the venue's lag.

        Returns None only after `attempts` (default `lookup_attempts`) lookups that all answered "not
        found". If lookups fail for other reasons (network, rate limit) the last error is raised:
        unknown is not absent. A caller that asks again on its own timer passes `attempts=1`.
        """
        await self._ensure_loaded()
        delay = self.config.lookup_backoff_s
        last_error: VenueError | None = None
        tries = attempts or self.config.lookup_attempts
        for attempt in range(tries):
            try:
                found = await self._find_by_client_id(symbol, client_order_id)
                last_error = None
                if found is not None:
                    return found
            except OrderNotFoundAtVenue:
                last_error = None
            except RetryableVenueError as e:
                last_error = e
            if attempt < tries - 1:
                await asyncio.sleep(delay)
                delay *= 2
        if last_error is not None:
            raise last_error
        return None

    async def find_in_trades(self, symbol: str, client_order_id: str, since: datetime) -> VenueOrder | None:
        """Our order as the venue's own trade history shows it: the trades in `symbol` since `since`
        name their orders, and the one whose client order id is ours is returned (read fresh).

        A second witness for an order whose lookup by client id lags or fails: a filled order has
        trades even when the order index does not show it yet. None when no trade since `since`
        belongs to it (an order that has not traded is only found by `resolve_placement`).
        """
        await self._ensure_loaded()
        since_ms = int(since.timestamp() * 1000)
        for order_id in await self._traded_order_ids(symbol, since_ms):
            cid = self._client_ids.get(order_id)
            if cid is not None and cid != client_order_id:
                continue
            try:
                order = await self.order_status(symbol, order_id)
            except OrderNotFoundAtVenue:
                continue  # the order index lags its trades: the next round asks again
            if order.client_order_id:
                if len(self._client_ids) > 10_000:
                    self._client_ids.clear()
                self._client_ids[order_id] = order.client_order_id
            if order.client_order_id == client_order_id:
                return order
        return None

    async def _traded_order_ids(self, symbol: str, since_ms: int) -> list[str]:
        """The venue ids of orders with a trade in `symbol` at or after `since_ms` (one page: a venue
        class reads every page the way its history pages)."""
        async with self._errors():
            page = await self.exchange.fetch_my_trades(to_ccxt_symbol(symbol), since_ms, 1000, {})
        return list(dict.fromkeys(str(t["order"]) for t in page if t.get("order")))

    async def _find_by_client_id(self, symbol: str, cid: str) -> VenueOrder | None:
        """Our order by its client order id: scan what ccxt can list (venue classes ask directly)."""
        ccxt_symbol = to_ccxt_symbol(symbol)
        async with self._errors():
            candidates: list[dict[str, Any]] = []
            if self.exchange.has.get("fetchOpenOrders"):
                candidates += await self.exchange.fetch_open_orders(ccxt_symbol)
            if self.exchange.has.get("fetchClosedOrders"):
                candidates += await self.exchange.fetch_closed_orders(ccxt_symbol)
        for raw in candidates:
            if raw.get("clientOrderId") == cid:
                return self._parse_order(raw, symbol)
        return None

    async def order_status(self, symbol: str, provider_order_id: str) -> VenueOrder:
        await self._ensure_loaded()
        async with self._errors():
            raw = await self.exchange.fetch_order(provider_order_id, to_ccxt_symbol(symbol))
        order = self._parse_order(raw, symbol)
        if order is None:
            raise OrderNotFoundAtVenue(self.name, f"order {provider_order_id} not found")
        return await self._with_fills(order, symbol)

    async def _with_fills(self, order: VenueOrder, symbol: str) -> VenueOrder:
        """The order with the exact fills and fees settling needs, where its answer lacked them."""
        return order

    async def cancel_order(self, symbol: str, provider_order_id: str) -> VenueOrder:
        """Cancel; an order already done (filled, expired) is returned as it is, not as an error."""
        await self._ensure_loaded()
        try:
            async with self._errors():
                raw = await self.exchange.cancel_order(provider_order_id, to_ccxt_symbol(symbol))
        except (OrderNotFoundAtVenue, InvalidVenueOrder, TerminalVenueError) as e:
            # Binance answers -2011 and Kraken "Unknown order" for an order that is no longer open.
            try:
                current = await self.order_status(symbol, provider_order_id)
            except OrderNotFoundAtVenue:
                raise OrderNotFoundAtVenue(self.name, f"order {provider_order_id} not found") from e
            if current.status in (VenueOrderStatus.OPEN, VenueOrderStatus.PARTIALLY_FILLED):
                raise
            return current
        order = self._parse_order(raw, symbol)
        if order is None or not self.traits.cancel_answers_order:
            return await self.order_status(symbol, provider_order_id)
        return await self._with_fills(order, symbol)

    def _parse_order(self, raw: dict[str, Any], symbol: str) -> VenueOrder | None:
        """The venue's answer as our order; None when it is not a whole order (an id only)."""
        return parsing.unified_order(self.name, raw, symbol)

    # ------------------------------------------------------------------ trade history

    async def trade_history(self, ccxt_symbol: str | None, since_ms: int | None) -> list[dict[str, Any]]:
        """Every trade of ours since `since_ms` (all when None) in `ccxt_symbol` (every pair when None,
        where `traits.trade_history_all_pairs`), as ccxt's trade dicts, each once. Venues serve it in
        pages; reading one page would report every later trade as unbooked.

        Generic: ccxt's unified pages by time, each from the newest trade of the last one."""
        rows: dict[str, dict[str, Any]] = {}
        since = since_ms
        for _ in range(TRADE_HISTORY_MAX_PAGES):
            async with self._errors():
                page = await self.exchange.fetch_my_trades(ccxt_symbol, since, TRADE_HISTORY_PAGE, {})
            fresh = [t for t in page if str(t.get("id")) not in rows]
            rows.update((str(t.get("id")), t) for t in page)
            if len(page) < TRADE_HISTORY_PAGE or not fresh:
                return list(rows.values())
            since = max(int(t["timestamp"]) for t in page)
        raise RetryableVenueError(self.name, "trade history longer than we page through")

    def trade_figures(self, trade: dict[str, Any]) -> TradeFigures:
        """A trade's amounts exactly as the venue wrote them (venue classes read their raw `info`)."""
        return parsing.unified_trade_figures(trade)

    async def close(self) -> None:
        await self.exchange.close()
