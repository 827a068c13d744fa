"""`CcxtAdapter`: the execution adapter over ccxt's async exchanges (Binance, Kraken; Bitstamp by config).

What it adds on top of ccxt, and why:
- **Exact numbers.** ccxt's unified fields are floats by default. The adapter sets `exchange.number = str`
  (ccxt then keeps the venue's own text) and reads fills, fees and balances from the raw response
  (`order["info"]`), turning them into `Decimal`. A float reaching the adapter is a bug and raises.
- **Market rules.** Markets load once (`load`, call again to refresh); each market's lot step, tick,
  minimum amount and minimum notional become `MarketRules`. Amounts are rounded DOWN to the lot step
  (never up: the house must not buy more than the customer paid for) and the remainder is reported
  in `VenueOrder.unplaced_amount`; a protective limit price is rounded towards the customer's side
  (down for buys, up for sells) so it can never exceed their slippage limit.
- **Idempotent placement.** Every order carries `client_order_id(order_id, attempt)`. Venues keep those
  unique only among open orders, so each retry gets a new attempt number and resolution looks up the
  exact id it sent.
- **Three kinds of failure** (see `providers.exchanges.base`): ccxt's exception tree is mapped most
  specific first; a timeout, dropped connection or 5xx *while placing* is `AmbiguousPlacement`, which
  the saga resolves with `resolve_placement` (several lookups with back-off, since venues lag: one
  "not found" is not proof) and never by sending the order again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
import ccxt.async_support as ccxt_async
from ccxt.base import errors as ccxt_errors
from ccxt.base.decimal_to_precision import TICK_SIZE

from config.settings import Settings
from models.market import (
    DepositAddress,
    FeeSchedule,
    MarketRules,
    OrderBook,
    OrderType,
    PlaceOrderRequest,
    PriceLevel,
    Side,
    TimeInForce,
    VenueBalance,
    VenueDeposit,
    VenueFill,
    VenueOrder,
    VenueOrderStatus,
    VenueWithdrawal,
    from_ccxt_symbol,
    split_symbol,
    to_ccxt_symbol,
)
from providers.exchanges.base import (
    AmbiguousPlacement,
    ExecutionAdapter,
    InsufficientVenueFunds,
    InvalidVenueOrder,
    OrderNotFoundAtVenue,
    RetryableVenueError,
    TerminalVenueError,
    UnsupportedByVenue,
    VenueAuthError,
    VenueError,
)

log = logging.getLogger("broker.venues")
ZERO = Decimal(0)


# --------------------------------------------------------------------------- client order ids


def client_order_id(order_id: uuid.UUID | str, attempt: int) -> str:
    """The id we send with attempt `attempt` of our order `order_id`: 32 lowercase hex characters.

    The first 24 are the order's UUID (so ops can find it at the venue), the last 8 the attempt.
    32 hex characters are valid everywhere we trade: Binance's `newClientOrderId` (<= 36 of
    `[A-Za-z0-9_-]`) and Kraken's `cl_ord_id` ("short UUID" form). Pure, so a worker that restarts
    recomputes the very id it sent before.
    """
    u = order_id if isinstance(order_id, uuid.UUID) else uuid.UUID(str(order_id))
    if not 0 <= attempt <= 0xFFFFFFFF:
        raise ValueError(f"attempt out of range: {attempt}")
    return f"{u.hex[:24]}{attempt:08x}"


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class ExchangeConfig:
    """One provider: our name for it, ccxt's class id, credentials and where it lives."""

    name: str
    exchange_id: str  # ccxt class: "binance", "kraken", "bitstamp"
    api_key: str
    secret: str
    base_url: str = ""  # empty: the real venue; else a sandbox (scheme://host:port, no path)
    uid: str = ""
    timeout_ms: int = 10_000
    enable_rate_limit: bool = True  # ccxt's client-side throttle (Kraken's is 1 request/s)
    lookup_attempts: int = 4  # lookups before an order is declared absent (venues lag)
    lookup_backoff_s: float = 0.25  # first pause between lookups; doubles each time
    options: dict[str, Any] = field(default_factory=dict)


class _LocalSafeBinance(ccxt_async.binance):
    """ccxt's binance choosing its spot error table by URL prefix breaks at any other host.

    ccxt picks the spot exception map only for `https://api.binance.com/...`; against a sandbox only the
    global map applies and many spot codes map differently. The adapter only trades spot, so the spot
    table is right wherever the venue lives.
    """

    def get_exceptions_by_url(self, url: str | None, exactOrBroad: str) -> dict[str, Any]:  # noqa: N803
        spot = self.safe_dict(self.exceptions, "spot", {})
        return self.safe_dict(spot, exactOrBroad, {})


def build_exchange(config: ExchangeConfig) -> Any:
    """A ccxt async exchange for `config`, pointed at `base_url` when one is given."""
    spec: dict[str, Any] = {
        "apiKey": config.api_key,
        "secret": config.secret,
        "timeout": config.timeout_ms,
        "enableRateLimit": config.enable_rate_limit,
    }
    if config.uid:
        spec["uid"] = config.uid
    base = config.base_url.rstrip("/")
    if config.exchange_id == "binance":
        spec["options"] = {
            "defaultType": "spot",
            "fetchMarkets": {"types": ["spot"]},  # else fapi/dapi exchangeInfo too
            "fetchCurrencies": False,  # else sapi capital/config/getall on every load
            "fetchMargins": False,
            "adjustForTimeDifference": False,
            **config.options,
        }
        exchange = _LocalSafeBinance(spec)
        if base:
            # The whole dict is replaced, so an API family we did not list fails closed (NotSupported)
            # instead of quietly going to the real venue.
            exchange.urls["api"] = {
                "public": f"{base}/api/v3",
                "private": f"{base}/api/v3",
                "sapi": f"{base}/sapi/v1",
            }
    else:
        cls = getattr(ccxt_async, config.exchange_id, None)
        if cls is None:
            raise ValueError(f"ccxt has no exchange class {config.exchange_id!r}")
        if config.options:
            spec["options"] = dict(config.options)
        if config.exchange_id == "kraken":
            spec["has"] = {"fetchCurrencies": False}  # Assets is not needed: markets carry the asset ids
        exchange = cls(spec)
        if base:
            if config.exchange_id == "kraken":
                exchange.urls["api"] = {"public": base, "private": base}
            else:
                # Keep each family's path, swap the origin: every family goes to the sandbox, none online.
                exchange.urls["api"] = {
                    k: base + urlsplit(v).path for k, v in exchange.urls["api"].items() if isinstance(v, str)
                }
    # Keep the venue's own decimal text in unified fields instead of floats.
    exchange.number = str
    return exchange


# --------------------------------------------------------------------------- helpers


def _dec(value: Any) -> Decimal:
    """Exact Decimal from venue text; a float here means a lossy path slipped in, which is a bug."""
    if value is None or value == "":
        return ZERO
    if isinstance(value, float):
        raise TypeError(f"float {value!r} reached the adapter; read the raw response instead")
    return Decimal(str(value))


def _opt_dec(value: Any) -> Decimal | None:
    return None if value is None or value == "" else _dec(value)


_BINANCE_CODE = re.compile(r'"code"\s*:\s*(-?\d+)')

# Binance codes whose documented meaning is "execution status unknown": ambiguous when placing.
# Withdrawal history: Binance's largest page, a bound on how many we read, and how far before the request
# the search starts (clocks differ; the venue stamps its own apply time).
WITHDRAWAL_HISTORY_PAGE = 1000
WITHDRAWAL_HISTORY_MAX_PAGES = 100
WITHDRAWAL_LOOKBACK = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class WithdrawalCapabilities:
    """How a venue names our withdrawals, so it can be asked about one again.

    `client_id_param`: the send parameter that carries our id (Binance's `withdrawOrderId`), None where
    the venue keeps none. `lookup_by`: "client_id" (the venue's history filters by our id, so even a send
    whose answer was lost can be found) or "venue_ref" (only the venue's own reference, Kraken's
    `refid`, finds it: known only when the send answered; a lost answer stays unknown)."""

    client_id_param: str | None
    lookup_by: Literal["client_id", "venue_ref"]


WITHDRAWAL_CAPABILITIES: dict[str, WithdrawalCapabilities] = {
    "binance": WithdrawalCapabilities(client_id_param="withdrawOrderId", lookup_by="client_id"),
    "kraken": WithdrawalCapabilities(client_id_param=None, lookup_by="venue_ref"),
}
_NO_WITHDRAWALS = WithdrawalCapabilities(client_id_param=None, lookup_by="venue_ref")
# Kraken's WithdrawStatus `status` (and `status-prop`) onto ccxt's transaction statuses, read from the
# raw answer: "Settled" and "Partial" are not final there, a cancelled or returned one is.
_KRAKEN_WITHDRAWAL_STATUS = {"Success": "ok", "Failure": "failed"}
_KRAKEN_WITHDRAWAL_PROP = {"canceled": "canceled", "return": "failed"}
_BINANCE_UNKNOWN_STATUS = {"-1000", "-1001", "-1006", "-1007"}
_BINANCE_AUTH = {"-1022", "-2014", "-2015", "-2008"}
_AUTH_MARKERS = ("EAPI:Invalid key", "EAPI:Invalid signature", "EGeneral:Permission denied")
# Explicit "we did not process this" answers: safe to retry even while placing.
_MAINTENANCE_MARKERS = ("System is under maintenance", "EService:Unavailable", "EService:Busy")
# ccxt's kraken table misses "EFunding:Insufficient funds" (its broad entry reads ":IInsufficient funds").
_INSUFFICIENT_MARKERS = ("EFunding:Insufficient funds", "EOrder:Insufficient funds")
_NOT_FOUND_MARKERS = (
    "EOrder:Unknown order",
    "EOrder:Invalid order",
    "Order does not exist",
    "Unknown order sent",
)


def _never_sent(e: BaseException) -> bool:
    """True only when the error's causes prove the request never left us: the connection itself could
    not be made (refused, unreachable, DNS). A dropped connection, a timeout or a 5xx proves nothing."""
    seen: set[int] = set()
    cause: BaseException | None = e
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, aiohttp.ClientConnectorError | socket.gaierror):
            return True
        seen.add(id(cause))
        cause = cause.__cause__
    return False


def _ms_to_dt(ms: Any) -> datetime | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(int(ms) / 1000, tz=UTC)


# --------------------------------------------------------------------------- the adapter


class CcxtAdapter:
    """`ExecutionAdapter` over one ccxt async exchange. Create, `await load()`, use, `await close()`."""

    def __init__(self, config: ExchangeConfig, exchange: Any | None = None) -> None:
        self.name = config.name
        self.config = config
        self.exchange = exchange if exchange is not None else build_exchange(config)
        self._rules: dict[str, MarketRules] = {}
        self._fees: dict[str, FeeSchedule] = {}
        self._load_lock = asyncio.Lock()
        self._first_load: asyncio.Future[None] | None = None  # shared by concurrent first users
        self._client_ids: dict[str, str] = {}  # venue order id -> client order id, for trade history
        self._serial: contextlib.AbstractAsyncContextManager[Any] = (
            asyncio.Lock() if config.exchange_id == "kraken" else contextlib.nullcontext()
        )

    # ------------------------------------------------------------------ errors

    def _venue_code(self, e: Exception) -> str | None:
        if self.config.exchange_id != "binance":
            return None
        m = _BINANCE_CODE.search(str(e))
        return m.group(1) if m else None

    def _map_error(
        self, e: ccxt_errors.BaseError, *, placing: bool = False, cid: str | None = None
    ) -> VenueError:
        """ccxt's exception (and the venue's code in it) -> our three kinds. Most specific first."""
        msg = str(e)
        code = self._venue_code(e)
        name = self.name
        if (
            code in _BINANCE_AUTH
            or any(m in msg for m in _AUTH_MARKERS)
            or isinstance(e, ccxt_errors.AuthenticationError)
        ):
            return VenueAuthError(name, msg)
        if isinstance(e, ccxt_errors.InsufficientFunds) or any(m in msg for m in _INSUFFICIENT_MARKERS):
            return InsufficientVenueFunds(name, msg)
        if code == "-1021" or isinstance(e, ccxt_errors.InvalidNonce):
            # Clock skew or a stale nonce: rejected before processing; retry with a fresh one.
            return RetryableVenueError(name, msg)
        if isinstance(e, ccxt_errors.OnMaintenance) or any(m in msg for m in _MAINTENANCE_MARKERS):
            return RetryableVenueError(name, msg)
        if isinstance(e, ccxt_errors.DDoSProtection | ccxt_errors.RateLimitExceeded):
            return RetryableVenueError(name, msg)
        if isinstance(e, ccxt_errors.OrderNotFound) or any(m in msg for m in _NOT_FOUND_MARKERS):
            return OrderNotFoundAtVenue(name, msg)
        if isinstance(e, ccxt_errors.BadSymbol | ccxt_errors.InvalidOrder | ccxt_errors.BadRequest):
            return InvalidVenueOrder(name, msg)
        if _never_sent(e):
            # No connection was made, so the venue cannot have the order: another venue may take it.
            return RetryableVenueError(name, f"not sent: {msg}")
        unknown_outcome = code in _BINANCE_UNKNOWN_STATUS or isinstance(
            e, ccxt_errors.NetworkError | ccxt_errors.OperationFailed
        )
        if unknown_outcome:
            if placing:
                return AmbiguousPlacement(name, cid or "", msg)
            return RetryableVenueError(name, msg)
        if isinstance(e, ccxt_errors.ExchangeError):
            return TerminalVenueError(name, msg)
        return RetryableVenueError(name, msg)

    @contextlib.asynccontextmanager
    async def _errors(self, *, placing: bool = False, cid: str | None = None) -> AsyncIterator[None]:
        """Map ccxt's errors; for Kraken, also send one private call at a time.

        Kraken rejects a nonce lower than the last one it saw for the key. ccxt makes nonces increase
        in the order requests are signed, but concurrent requests can arrive in another order, so the
        adapter serialises its own calls rather than provoke "EAPI:Invalid nonce". Not re-entrant.
        """
        async with self._serial:
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
                    min_amount=_dec((limits.get("amount") or {}).get("min")),
                    min_notional=_dec((limits.get("cost") or {}).get("min")),
                )
                fee = fees.get(ccxt_symbol) or m
                taker, maker = fee.get("taker"), fee.get("maker")
                if taker is not None and maker is not None:
                    fee_table[symbol] = FeeSchedule(taker=_dec(taker), maker=_dec(maker))
            self._rules, self._fees = rules, fee_table

    @staticmethod
    def _as_step(value: Any, tick_mode: bool) -> Decimal:
        if value is None:
            return Decimal("0.00000001")
        if tick_mode:
            return _dec(value)
        return Decimal(1).scaleb(-int(_dec(value)))

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
        ccxt_symbol = to_ccxt_symbol(symbol)
        async with self._errors():
            if self.config.exchange_id == "binance":
                # ccxt's binance book parser yields floats even with number=str: read the raw depth.
                market = self.exchange.market(ccxt_symbol)
                limit = next(n for n in (5, 10, 20, 50, 100, 500, 1000, 5000) if n >= depth)
                raw = await self.exchange.publicGetDepth({"symbol": market["id"], "limit": limit})
                bids, asks, ts = raw["bids"], raw["asks"], None
            else:
                book = await self.exchange.fetch_order_book(ccxt_symbol, depth)
                bids, asks, ts = book["bids"], book["asks"], book.get("timestamp")
        return OrderBook(
            provider=self.name,
            symbol=symbol,
            bids=[PriceLevel(price=_dec(lv[0]), amount=_dec(lv[1])) for lv in bids[:depth]],
            asks=[PriceLevel(price=_dec(lv[0]), amount=_dec(lv[1])) for lv in asks[:depth]],
            timestamp=_ms_to_dt(ts) or datetime.now(tz=UTC),
        )

    async def ohlcv(
        self, symbol: str, interval: str = "1m", limit: int = 100
    ) -> list[tuple[int, Decimal, Decimal, Decimal, Decimal, Decimal]]:
        """Candles, oldest first: (open time in ms, open, high, low, close, base volume), exact.

        With `number = str` ccxt keeps the venue's text in OHLCV rows; `_dec` refuses a float."""
        await self._ensure_loaded()
        async with self._errors():
            rows = await self.exchange.fetch_ohlcv(to_ccxt_symbol(symbol), interval, limit=limit)
        return [(int(r[0]), *(_dec(v) for v in r[1:6])) for r in rows[-limit:]]  # type: ignore[misc]

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
        return self.config.exchange_id == "binance" and order.filled > 0 and not order.fills

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
        """The venue ids of orders with a trade in `symbol` at or after `since_ms`, every page read."""
        ccxt_symbol = to_ccxt_symbol(symbol)
        ids: dict[str, None] = {}
        if self.config.exchange_id == "kraken":
            # TradesHistory covers every pair, 50 a page, newest first; `ofs` pages on.
            market_id = self.exchange.market(ccxt_symbol)["id"]
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
        page_size = 1000
        params: dict[str, Any] = {}
        since: int | None = since_ms
        while True:
            async with self._errors():
                page = await self.exchange.fetch_my_trades(ccxt_symbol, since, page_size, params)
            for trade in page:
                if trade.get("order"):
                    ids[str(trade["order"])] = None
            if len(page) < page_size or self.config.exchange_id != "binance":
                return list(ids)
            # Binance pages by trade id (`fromId` excludes a time window).
            since, params = None, {"fromId": int(page[-1]["id"]) + 1}

    async def _find_by_client_id(self, symbol: str, cid: str) -> VenueOrder | None:
        ccxt_symbol = to_ccxt_symbol(symbol)
        ex_id = self.config.exchange_id
        if ex_id == "binance":
            async with self._errors():
                raw = await self.exchange.fetch_order(None, ccxt_symbol, {"origClientOrderId": cid})
            return await self._with_fills(self._parse_order(raw, symbol), symbol)
        async with self._errors():
            if ex_id == "kraken":
                # Kraken's QueryOrders takes txids only; OpenOrders/ClosedOrders filter by cl_ord_id.
                for fetch in (self.exchange.fetch_open_orders, self.exchange.fetch_closed_orders):
                    for raw in await fetch(ccxt_symbol, None, None, {"clientOrderId": cid}):
                        if raw.get("clientOrderId") == cid:
                            return self._parse_order(raw, symbol)
                return None
            # Other venues: scan what ccxt can list.
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
        return await self._with_fills(order, symbol) or order

    async def _with_fills(self, order: VenueOrder | None, symbol: str) -> VenueOrder | None:
        """Binance's order query has no fees: add its trades (exact fills and commissions)."""
        if order is None or not self._needs_details(order):
            return order
        async with self._errors():
            trades = await self.exchange.fetch_order_trades(order.provider_order_id, to_ccxt_symbol(symbol))
        fills = [
            VenueFill(
                trade_id=str(t["info"].get("id")),
                price=_dec(t["info"]["price"]),
                amount=_dec(t["info"]["qty"]),
                fee=_dec(t["info"]["commission"]),
                fee_currency=str(t["info"]["commissionAsset"]),
            )
            for t in trades
        ]
        return self._with_fee_totals(order, fills)

    @staticmethod
    def _with_fee_totals(order: VenueOrder, fills: list[VenueFill]) -> VenueOrder:
        fee = sum((f.fee for f in fills), ZERO)
        currencies = {f.fee_currency for f in fills}
        return order.model_copy(
            update={
                "fills": fills,
                "fee": fee,
                "fee_currency": currencies.pop() if len(currencies) == 1 else order.fee_currency,
            }
        )

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
        if order is None or self.config.exchange_id != "binance":
            return await self.order_status(symbol, provider_order_id)
        return await self._with_fills(order, symbol) or order

    # ------------------------------------------------------------------ parsing

    def _parse_order(self, raw: dict[str, Any], symbol: str) -> VenueOrder | None:
        info = raw.get("info") or {}
        if self.config.exchange_id == "binance" and "orderId" in info:
            return self._parse_binance(info, symbol)
        if self.config.exchange_id == "kraken":
            if "vol" not in info:
                return None  # AddOrder's answer: a txid only
            return self._parse_kraken(raw, info, symbol)
        if raw.get("id") is None or raw.get("status") is None:
            return None
        return self._parse_unified(raw, symbol)

    def _parse_binance(self, info: dict[str, Any], symbol: str) -> VenueOrder:
        # Only the statuses Binance documents as final close an order; any other (PENDING_NEW,
        # PENDING_CANCEL, one added later) may still trade, so it counts as open.
        status = {
            "PARTIALLY_FILLED": VenueOrderStatus.PARTIALLY_FILLED,
            "FILLED": VenueOrderStatus.FILLED,
            "REJECTED": VenueOrderStatus.REJECTED,
            "CANCELED": VenueOrderStatus.CANCELLED,
            "EXPIRED": VenueOrderStatus.CANCELLED,
            "EXPIRED_IN_MATCH": VenueOrderStatus.CANCELLED,
        }.get(str(info.get("status")), VenueOrderStatus.OPEN)
        filled = _dec(info.get("executedQty"))
        quote = _dec(info.get("cummulativeQuoteQty"))
        order = VenueOrder(
            provider=self.name,
            provider_order_id=str(info["orderId"]),
            client_order_id=info.get("clientOrderId"),
            symbol=symbol,
            side=Side(str(info["side"]).upper()),
            status=status,
            amount=_dec(info.get("origQty")),
            filled=filled,
            quote_filled=quote,
            average_price=quote / filled if filled else None,
            raw=info,
        )
        if "fills" in info:
            fills = [
                VenueFill(
                    trade_id=str(f.get("tradeId")),
                    price=_dec(f["price"]),
                    amount=_dec(f["qty"]),
                    fee=_dec(f["commission"]),
                    fee_currency=str(f["commissionAsset"]),
                )
                for f in info["fills"]
            ]
            order = self._with_fee_totals(order, fills)
        return order

    def _parse_kraken(self, raw: dict[str, Any], info: dict[str, Any], symbol: str) -> VenueOrder:
        vol, vol_exec = _dec(info.get("vol")), _dec(info.get("vol_exec"))
        state = str(info.get("status"))
        if state in ("pending", "open"):
            status = VenueOrderStatus.PARTIALLY_FILLED if vol_exec > 0 else VenueOrderStatus.OPEN
        elif state == "closed":
            status = VenueOrderStatus.FILLED if vol_exec >= vol else VenueOrderStatus.CANCELLED
        else:  # canceled, expired
            status = VenueOrderStatus.CANCELLED
        base, quote_ccy = split_symbol(symbol)
        flags = str(info.get("oflags", ""))
        cost, fee = _dec(info.get("cost")), _dec(info.get("fee"))
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
            fee_currency=base if "fcib" in flags else quote_ccy,
            raw=info,
        )

    def _parse_unified(self, raw: dict[str, Any], symbol: str) -> VenueOrder:
        filled, amount = _dec(raw.get("filled")), _dec(raw.get("amount"))
        status = {
            "open": VenueOrderStatus.PARTIALLY_FILLED if filled > 0 else VenueOrderStatus.OPEN,
            "closed": VenueOrderStatus.FILLED if filled >= amount else VenueOrderStatus.CANCELLED,
            "rejected": VenueOrderStatus.REJECTED,
        }.get(str(raw.get("status")), VenueOrderStatus.CANCELLED)
        fee = raw.get("fee") or {}
        cost = _dec(raw.get("cost"))
        return VenueOrder(
            provider=self.name,
            provider_order_id=str(raw["id"]),
            client_order_id=raw.get("clientOrderId"),
            symbol=symbol,
            side=Side(str(raw.get("side", "")).upper()),
            status=status,
            amount=amount,
            filled=filled,
            quote_filled=cost,
            average_price=cost / filled if filled else None,
            fee=_dec(fee.get("cost")),
            fee_currency=fee.get("currency"),
            raw=raw.get("info") or {},
        )

    # ------------------------------------------------------------------ balances and custody

    async def balance(self, currency: str) -> VenueBalance:
        await self._ensure_loaded()
        async with self._errors():
            raw = await self.exchange.fetch_balance()
        entry = raw.get(currency) or {}
        free, used, total = _dec(entry.get("free")), _dec(entry.get("used")), _dec(entry.get("total"))
        if not entry.get("total") and (free or used):
            total = free + used
        return VenueBalance(currency=currency, free=free, used=used, total=total)

    async def deposit_address(self, currency: str, new: bool = False) -> DepositAddress:
        """Our deposit address for `currency`. With `new`, a freshly minted one (Kraken's `DepositAddresses`
        with `new=true`, through ccxt's `create_deposit_address`): every customer gets their own, so a
        deposit is attributed by the address it arrived at. Binance has one address per coin per account,
        so asking it for a new one is `UnsupportedByVenue`, not a silently shared address."""
        await self._ensure_loaded()
        if new and not self.exchange.has.get("createDepositAddress"):
            raise UnsupportedByVenue(self.name, f"cannot mint a new {currency} deposit address at this venue")
        async with self._errors():
            if new:
                raw = await self.exchange.create_deposit_address(currency)
            else:
                raw = await self.exchange.fetch_deposit_address(currency)
        return DepositAddress(
            currency=currency,
            address=str(raw["address"]),
            tag=raw.get("tag") or None,
            network=raw.get("network"),
        )

    async def deposits(self, currency: str | None = None) -> list[VenueDeposit]:
        await self._ensure_loaded()
        async with self._errors():
            rows = await self.exchange.fetch_deposits(currency)
        out = []
        for row in rows:
            info = row.get("info") or {}
            try:
                out.append(self._deposit(row, info, currency))
            except (ValueError, TypeError, ArithmeticError) as e:
                # One record we cannot read must not hide the others; it is reported on every poll.
                log.error(
                    "deposit record unreadable: venue=%s ref=%s tx=%s (%s)",
                    self.name, row.get("id"), row.get("txid"), type(e).__name__,
                )  # fmt: skip
        return out

    def _deposit(self, row: dict[str, Any], info: dict[str, Any], currency: str | None) -> VenueDeposit:
        confirmations = 0
        if isinstance(info.get("confirmTimes"), str):  # Binance: "1/2"
            confirmations = int(info["confirmTimes"].split("/")[0] or 0)
        elif info.get("confirmations") is not None:
            confirmations = int(info["confirmations"])
        index = info.get("vout", info.get("outputIndex"))
        return VenueDeposit(
            provider=self.name,
            tx_id=str(row.get("txid") or info.get("txId") or info.get("txid") or row.get("id")),
            currency=str(row.get("currency") or currency),
            amount=_dec(info.get("amount", row.get("amount"))),
            address=row.get("address") or info.get("address") or info.get("info"),
            confirmations=confirmations,
            status=str(row.get("status") or "pending"),
            timestamp=_ms_to_dt(row.get("timestamp")),
            venue_ref=str(row["id"]) if row.get("id") is not None else None,
            output_index=int(index) if index is not None else None,
        )

    @property
    def withdrawals(self) -> WithdrawalCapabilities:
        """How this venue names our withdrawals (see `WithdrawalCapabilities`)."""
        return WITHDRAWAL_CAPABILITIES.get(self.config.exchange_id, _NO_WITHDRAWALS)

    async def withdraw(
        self, currency: str, amount: Decimal, address: str, client_id: str, tag: str | None = None
    ) -> VenueWithdrawal:
        """Send `amount` to `address`. A timeout is ambiguous (the transfer may exist): check, don't resend.

        Binance takes our id as `withdrawOrderId`. Kraken withdraws to a pre-registered *key*: ops
        register each destination with the address itself as the key name; its answer is the
        withdrawal's `refid` (`withdrawal_id` here), the only name it can be looked up by later.
        """
        await self._ensure_loaded()
        params: dict[str, Any] = {}
        if tag:
            params["tag"] = tag
        if self.withdrawals.client_id_param:
            params[self.withdrawals.client_id_param] = client_id
        if self.config.exchange_id == "kraken":
            params["key"] = address
        async with self._errors(placing=True, cid=client_id):
            raw = await self.exchange.withdraw(currency, str(amount), address, params)
        return VenueWithdrawal(
            provider=self.name,
            withdrawal_id=str(raw.get("id") or ""),  # Binance's id; Kraken's `refid`
            currency=currency,
            amount=amount,
            address=address,
            status=str(raw.get("status") or "pending"),
            tx_hash=raw.get("txid"),
        )

    async def withdrawal_status(
        self,
        currency: str,
        client_id: str,
        since: datetime | None = None,
        venue_ref: str | None = None,
    ) -> VenueWithdrawal | None:
        """Our withdrawal as the venue records it; None if it has no such record.

        By our client id where the venue keeps it (Binance), else by the venue's own reference from the
        send's answer (Kraken's `refid`); without that reference (the answer was lost) it cannot be
        asked: `UnsupportedByVenue`, and the outcome stays unknown. The history is read page by page
        from a day before `since`, and each row is matched on the id again, so a venue that ignored a
        filter still cannot make an older withdrawal look missing. None is not proof of absence (venues
        lag); the caller asks again over time. Network errors are retryable.
        """
        if self.withdrawals.lookup_by == "venue_ref":
            if not venue_ref:
                raise UnsupportedByVenue(
                    self.name, "cannot look a withdrawal up without its reference (the send's answer)"
                )
            return await self._withdrawal_by_ref(currency, venue_ref, since)
        return await self._withdrawal_by_client_id(currency, client_id, since)

    async def _withdrawal_by_ref(
        self, currency: str, venue_ref: str, since: datetime | None
    ) -> VenueWithdrawal | None:
        """Kraken's WithdrawStatus, newest first, in cursor pages; the row whose `refid` is ours."""
        await self._ensure_loaded()
        start_ms = int((since - WITHDRAWAL_LOOKBACK).timestamp() * 1000) if since else None
        cursor: Any = True
        for _ in range(WITHDRAWAL_HISTORY_MAX_PAGES):
            async with self._errors():
                rows = await self.exchange.fetch_withdrawals(currency, start_ms, None, {"cursor": cursor})
            for row in rows:
                info = row.get("info") or {}
                if info.get("refid") == venue_ref:
                    status = _KRAKEN_WITHDRAWAL_PROP.get(
                        str(info.get("status-prop") or ""),
                        _KRAKEN_WITHDRAWAL_STATUS.get(str(info.get("status")), "pending"),
                    )
                    return VenueWithdrawal(
                        provider=self.name,
                        withdrawal_id=venue_ref,
                        currency=str(row.get("currency") or currency),
                        amount=_dec(info.get("amount")),
                        address=str(info.get("info") or ""),
                        status=status,
                        tx_hash=info.get("txid") or None,
                        fee=_opt_dec(info.get("fee")),
                    )
            cursor = (rows[-1].get("info") or {}).get("next_cursor") if rows else None
            if not cursor:
                return None
        raise RetryableVenueError(self.name, "withdrawal history longer than we page through")

    async def _withdrawal_by_client_id(
        self, currency: str, client_id: str, since: datetime | None
    ) -> VenueWithdrawal | None:
        """Binance's withdrawal history filtered by our `withdrawOrderId`, every page."""
        await self._ensure_loaded()
        start_ms = int((since - WITHDRAWAL_LOOKBACK).timestamp() * 1000) if since else None
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
                        amount=_dec(info.get("amount", row.get("amount"))),
                        address=str(row.get("address") or info.get("address") or ""),
                        status=str(row.get("status") or "pending"),
                        tx_hash=row.get("txid") or None,
                        fee=_dec(info["transactionFee"]) if info.get("transactionFee") else None,
                    )
            if not rows:  # past the last page (a page may be shorter than asked for: keep going)
                return None
            offset += len(rows)
        raise RetryableVenueError(self.name, "withdrawal history longer than we page through")

    async def withdrawal_by_id(self, currency: str, withdrawal_id: str) -> VenueWithdrawal | None:
        """Our withdrawal by the venue's own id (from `withdraw`'s answer): its status, chain tx and the
        network fee taken. None if the history does not show it (yet: venues lag; ask again)."""
        await self._ensure_loaded()
        async with self._errors():
            rows = await self.exchange.fetch_withdrawals(currency)
        for row in rows:
            if str(row.get("id")) != withdrawal_id:
                continue
            info = row.get("info") or {}
            fee = info.get("transactionFee", info.get("fee"))
            return VenueWithdrawal(
                provider=self.name,
                withdrawal_id=withdrawal_id,
                currency=str(row.get("currency") or currency),
                amount=_dec(info.get("amount", row.get("amount"))),
                address=str(row.get("address") or info.get("address") or info.get("info") or ""),
                status=str(row.get("status") or "pending"),
                tx_hash=row.get("txid") or info.get("txid") or None,
                fee=_dec(fee) if fee not in (None, "") else None,
            )
        return None

    async def close(self) -> None:
        await self.exchange.close()


# --------------------------------------------------------------------------- factory

# Sandbox ports relative to SANDBOX_PORT (devstack.stack.SANDBOX_OFFSETS).
_SANDBOX_OFFSETS = {"binance": 0, "kraken": 1, "otc": 2}


def _url(settings: Settings, name: str, configured: str) -> str:
    """The configured URL; if empty, the local sandbox outside production, the real venue in production."""
    if configured:
        return configured
    if settings.is_production:
        return ""
    return f"http://127.0.0.1:{settings.sandbox_port + _SANDBOX_OFFSETS[name]}"


def sandbox_or_configured_url(settings: Settings, name: str) -> str:
    """Where venue `name` lives for this process (the configured URL, a local sandbox, or the real one)."""
    return _url(settings, name, getattr(settings, f"{name}_url"))


def build_adapters(settings: Settings, **overrides: Any) -> dict[str, ExecutionAdapter]:
    """One adapter per configured provider (binance, kraken, otc), not yet loaded.

    `overrides` are passed to every `ExchangeConfig` (e.g. `timeout_ms`, `enable_rate_limit`).
    """
    from providers.exchanges.otc_adapter import OtcAdapter

    adapters: dict[str, ExecutionAdapter] = {
        "binance": CcxtAdapter(
            ExchangeConfig(
                name="binance",
                exchange_id="binance",
                api_key=settings.binance_api_key,
                secret=settings.binance_secret,
                base_url=_url(settings, "binance", settings.binance_url),
                **overrides,
            )
        ),
        "kraken": CcxtAdapter(
            ExchangeConfig(
                name="kraken",
                exchange_id="kraken",
                api_key=settings.kraken_api_key,
                secret=settings.kraken_secret,
                base_url=_url(settings, "kraken", settings.kraken_url),
                **overrides,
            )
        ),
    }
    otc_url = _url(settings, "otc", settings.otc_url)
    if otc_url:
        adapters["otc"] = OtcAdapter(name="otc", base_url=otc_url, api_key=settings.otc_api_key)
    return adapters
