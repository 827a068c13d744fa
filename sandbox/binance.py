"""A Binance spot REST subset: exactly what ccxt's `binance` class calls for the broker's operations.

Paths, JSON shapes, signing and error codes follow Binance's spot API so that ccxt's real parser and
error mapping run unchanged:

- public `/api/v3`: ping, time, exchangeInfo (PRICE_FILTER / LOT_SIZE / NOTIONAL filters, from which
  ccxt derives precision and limits), depth, ticker/bookTicker, ticker/24hr, ticker/price, klines.
- signed `/api/v3`: POST/GET/DELETE order (newClientOrderId, origClientOrderId, newOrderRespType=FULL
  with fills), openOrders, allOrders, account, myTrades.
- signed `/sapi/v1`: capital/deposit/address, capital/deposit/hisrec, capital/withdraw/apply,
  capital/withdraw/history, asset/tradeFee.

Signed requests need `X-MBX-APIKEY` and `signature` = hex HMAC-SHA256(secret, query string + body,
without the signature itself), and a `timestamp` within `recvWindow` (else -1021).

Errors as Binance sends them: HTTP 400 `{"code": -2010, "msg": ...}` (insufficient balance, duplicate
order), -2013 order does not exist, -2011 unknown order on cancel, -1022 bad signature, -2015 bad key
(HTTP 401), -1121 invalid symbol, -1013 filter failures, -1003 with HTTP 429 then 418 when banned,
HTTP 503 "System is under maintenance." when down.

Default venue: mids 0.2% below the reference, fees 10 bps taker / 8 bps maker (in the asset received).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import time
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from sandbox.binance_ws import mount_binance_streams
from sandbox.book_feed import BookFeed
from sandbox.control import (
    STATE_KEY,
    VenueState,
    after_accept,
    control_routes,
    fault_middleware,
)
from sandbox.market import (
    Order,
    OrderStatus,
    SymbolSpec,
    Venue,
    VenueConfig,
    VenueReject,
    d,
    fmt,
    visible_withdrawals,
)


def default_config() -> VenueConfig:
    return VenueConfig(
        name="binance",
        taker_fee=Decimal("0.0010"),
        maker_fee=Decimal("0.0008"),
        price_offset_bps=Decimal(-20),
        fee_in="received",
        order_id_style="numeric",
    )


def _err(code: int, msg: str, status: int = 400) -> web.Response:
    return web.json_response({"code": code, "msg": msg}, status=status)


_REJECT_CODES: dict[str, tuple[int, int]] = {
    "insufficient_balance": (-2010, 400),
    "duplicate_order": (-2010, 400),
    "unknown_order": (-2013, 400),
    "invalid_symbol": (-1121, 400),
    "filter_failure": (-1013, 400),
    "invalid_order": (-1102, 400),
    "unknown_asset": (-4003, 400),
}


def _reject(e: VenueReject, cancel: bool = False) -> web.Response:
    if cancel and e.kind == "unknown_order":
        return _err(-2011, "Unknown order sent.")
    code, status = _REJECT_CODES.get(e.kind, (-1000, 400))
    return _err(code, e.message, status)


class BadRequest(Exception):
    def __init__(self, response: web.Response) -> None:
        self.response = response


RATE_LIMIT_MSG = "Too much request weight used; current limit is 6000 request weight per 1 MINUTE."
BANNED_MSG = (
    "Way too much request weight used; IP banned until later. "
    "Please use WebSocket Streams for live updates to avoid bans."
)
_CLIENT_ID = re.compile(r"^[a-zA-Z0-9_-]{1,36}$")
_SIG = re.compile(r"(^|&)signature=([^&]*)")


def _pair_id(spec: SymbolSpec) -> str:
    return spec.base + spec.quote


def _places(step: Decimal) -> int:
    return max(0, -step.normalize().as_tuple().exponent)  # type: ignore[operator]


class BinanceApp:
    """The aiohttp application and its handlers."""

    def __init__(self, venue: Venue, api_key: str, secret: str) -> None:
        self.venue = venue
        self.api_key = api_key
        self.secret = secret.encode()
        self.by_id = {_pair_id(s): s for s in venue.specs.values()}
        self.feed: BookFeed | None = None  # the diff-depth stream (sandbox.binance_ws)

    # ------------------------------------------------------------ plumbing

    def spec(self, pair: str | None) -> SymbolSpec:
        spec = self.by_id.get(pair or "")
        if spec is None:
            raise BadRequest(_err(-1121, "Invalid symbol."))
        return spec

    async def signed_params(self, request: web.Request) -> dict[str, str]:
        """Check key, signature and timestamp; return the request's parameters."""
        if request.headers.get("X-MBX-APIKEY") != self.api_key:
            raise BadRequest(_err(-2015, "Invalid API-key, IP, or permissions for action.", 401))
        query = request.query_string
        body = await request.text() if request.can_read_body else ""
        sig = None
        parts = []
        for raw in (query, body):
            m = _SIG.search(raw)
            if m:
                sig = m.group(2)
                raw = raw[: m.start()] + raw[m.end() :]
                if m.group(1) == "" and raw.startswith("&"):
                    raw = raw[1:]
            parts.append(raw)
        if sig is None:
            raise BadRequest(
                _err(-1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.")
            )
        payload = "".join(parts)
        expected = hmac.new(self.secret, payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, sig):
            raise BadRequest(_err(-1022, "Signature for this request is not valid."))
        params = dict(parse_qsl(query, keep_blank_values=True))
        params.update(parse_qsl(body, keep_blank_values=True))
        params.pop("signature", None)
        try:
            ts = int(params["timestamp"])
            window = int(params.get("recvWindow", "5000"))
        except (KeyError, ValueError):
            raise BadRequest(
                _err(-1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.")
            ) from None
        now = int(time.time() * 1000)
        if ts > now + 1000 or now - ts > window:
            raise BadRequest(_err(-1021, "Timestamp for this request is outside of the recvWindow."))
        return params

    def wrap(self, handler: Any) -> Any:
        async def run(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except BadRequest as e:
                return e.response
            except VenueReject as e:
                return _reject(e)
            except (ValueError, KeyError) as e:
                return _err(-1102, f"Mandatory parameter was not sent, was empty/null, or malformed: {e}")

        return run

    # ------------------------------------------------------------ public

    async def ping(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def server_time(self, request: web.Request) -> web.Response:
        return web.json_response({"serverTime": int(time.time() * 1000)})

    async def exchange_info(self, request: web.Request) -> web.Response:
        symbols = []
        for spec in self.venue.specs.values():
            symbols.append(
                {
                    "symbol": _pair_id(spec),
                    "status": "TRADING",
                    "baseAsset": spec.base,
                    "baseAssetPrecision": 8,
                    "quoteAsset": spec.quote,
                    "quotePrecision": 8,
                    "quoteAssetPrecision": 8,
                    "baseCommissionPrecision": 8,
                    "quoteCommissionPrecision": 8,
                    "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
                    "icebergAllowed": True,
                    "ocoAllowed": False,
                    "quoteOrderQtyMarketAllowed": True,
                    "allowTrailingStop": False,
                    "cancelReplaceAllowed": False,
                    "isSpotTradingAllowed": True,
                    "isMarginTradingAllowed": False,
                    "filters": [
                        {
                            "filterType": "PRICE_FILTER",
                            "minPrice": fmt(spec.price_step),
                            "maxPrice": "10000000.00000000",
                            "tickSize": fmt(spec.price_step),
                        },
                        {
                            "filterType": "LOT_SIZE",
                            "minQty": fmt(spec.min_amount),
                            "maxQty": "9000.00000000",
                            "stepSize": fmt(spec.amount_step),
                        },
                        {
                            "filterType": "NOTIONAL",
                            "minNotional": fmt(spec.min_notional),
                            "applyMinToMarket": True,
                            "maxNotional": "9000000.00000000",
                            "applyMaxToMarket": False,
                            "avgPriceMins": 5,
                        },
                    ],  # fmt: skip
                    "permissions": [],
                    "permissionSets": [["SPOT"]],
                    "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
                    "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
                }
            )
        return web.json_response(
            {
                "timezone": "UTC",
                "serverTime": int(time.time() * 1000),
                "rateLimits": [
                    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000}
                ],
                "exchangeFilters": [],
                "symbols": symbols,
            }
        )

    async def depth(self, request: web.Request) -> web.Response:
        spec = self.spec(request.query.get("symbol"))
        limit = int(request.query.get("limit", "100"))
        # The stream's id for this very book, so a diff-depth client can join snapshot and stream.
        update_id = self.feed.sync(spec.symbol).update_id if self.feed is not None else 0
        bids, asks = self.venue.book_levels(spec.symbol, limit)
        p, a = _places(spec.price_step), _places(spec.amount_step)
        return web.json_response(
            {
                "lastUpdateId": update_id,
                "bids": [[fmt(lv[0], p), fmt(lv[1], a)] for lv in bids],
                "asks": [[fmt(lv[0], p), fmt(lv[1], a)] for lv in asks],
            }
        )

    def _ticker(self, spec: SymbolSpec) -> dict[str, Any]:
        bids, asks = self.venue.book_levels(spec.symbol, 1)
        zero = ["0", "0"]
        bid = [fmt(x) for x in bids[0]] if bids else zero
        ask = [fmt(x) for x in asks[0]] if asks else zero
        return {
            "symbol": _pair_id(spec),
            "bidPrice": bid[0],
            "bidQty": bid[1],
            "askPrice": ask[0],
            "askQty": ask[1],
        }

    async def book_ticker(self, request: web.Request) -> web.Response:
        pair = request.query.get("symbol")
        if pair:
            return web.json_response(self._ticker(self.spec(pair)))
        return web.json_response([self._ticker(s) for s in self.venue.specs.values()])

    def _ticker24(self, spec: SymbolSpec) -> dict[str, Any]:
        m = self.venue.market(spec.symbol)
        candles = m.ohlcv(1440)
        open_ = candles[0][1] if candles else m.mid
        high = max((c[2] for c in candles), default=m.mid)
        low = min((c[3] for c in candles), default=m.mid)
        vol = sum((c[5] for c in candles), Decimal(0))
        now = int(time.time() * 1000)
        return {
            **self._ticker(spec),
            "priceChange": fmt(m.last_trade - open_), "priceChangePercent": "0.000",
            "weightedAvgPrice": fmt(m.mid), "prevClosePrice": fmt(open_), "lastPrice": fmt(m.last_trade),
            "lastQty": "0", "openPrice": fmt(open_), "highPrice": fmt(high), "lowPrice": fmt(low),
            "volume": fmt(vol), "quoteVolume": "0", "openTime": now - 86_400_000, "closeTime": now,
            "firstId": -1, "lastId": -1, "count": 0,
        }  # fmt: skip

    async def ticker_24hr(self, request: web.Request) -> web.Response:
        pair = request.query.get("symbol")
        if pair:
            return web.json_response(self._ticker24(self.spec(pair)))
        return web.json_response([self._ticker24(s) for s in self.venue.specs.values()])

    async def ticker_price(self, request: web.Request) -> web.Response:
        pair = request.query.get("symbol")
        specs = [self.spec(pair)] if pair else list(self.venue.specs.values())
        out = [{"symbol": _pair_id(s), "price": fmt(self.venue.market(s.symbol).last_trade)} for s in specs]
        return web.json_response(out[0] if pair else out)

    async def klines(self, request: web.Request) -> web.Response:
        spec = self.spec(request.query.get("symbol"))
        if request.query.get("interval", "1m") != "1m":
            raise BadRequest(_err(-1120, "Invalid interval."))
        limit = min(int(request.query.get("limit", "500")), 1000)
        rows = []
        for start, o, h, lo, c, v in self.venue.market(spec.symbol).ohlcv(limit):
            rows.append(
                [start, fmt(o), fmt(h), fmt(lo), fmt(c), fmt(v), start + 59_999, "0", 0, "0", "0", "0"]
            )
        return web.json_response(rows)

    # ------------------------------------------------------------ trading

    def order_json(self, o: Order, full: bool = False) -> dict[str, Any]:
        spec = self.venue.specs[o.symbol]
        status = o.status.value
        out: dict[str, Any] = {
            "symbol": _pair_id(spec),
            "orderId": int(o.id),
            "orderListId": -1,
            "clientOrderId": o.client_order_id or f"sandbox-{o.id}",
            "price": fmt(o.price or Decimal(0)),
            "origQty": fmt(o.amount),
            "executedQty": fmt(o.filled),
            "cummulativeQuoteQty": fmt(o.quote_filled),
            "status": status,
            "timeInForce": o.time_in_force,
            "type": o.type.upper(),
            "side": o.side.upper(),
            "workingTime": o.created_ms,
            "selfTradePreventionMode": "NONE",
        }
        if full:
            out["transactTime"] = o.updated_ms
            out["fills"] = [
                {"price": fmt(f.price), "qty": fmt(f.amount), "commission": fmt(f.fee),
                 "commissionAsset": f.fee_asset, "tradeId": f.trade_id}
                for f in o.fills
            ]  # fmt: skip
        else:
            out.update(
                {"stopPrice": "0.00000000", "icebergQty": "0.00000000", "time": o.created_ms,
                 "updateTime": o.updated_ms, "isWorking": o.is_open, "origQuoteOrderQty": "0.00000000"}
            )  # fmt: skip
        return out

    async def new_order(self, request: web.Request) -> web.StreamResponse:
        params = await self.signed_params(request)
        state = request.app[STATE_KEY]
        path = request.path
        spec = self.spec(params.get("symbol"))
        client_id = params.get("newClientOrderId")
        if client_id is not None and not _CLIENT_ID.match(client_id):
            return _err(
                -1100,
                "Illegal characters found in parameter 'newClientOrderId'; "
                "legal range is '^[a-zA-Z0-9-_]{1,36}$'.",
            )
        otype = params.get("type", "").lower()
        if otype not in ("market", "limit"):
            return _err(-1116, "Invalid orderType.")
        side = params.get("side", "").lower()
        if side not in ("buy", "sell"):
            return _err(-1117, "Invalid side.")
        if "quantity" not in params:
            return _err(-1102, "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed.")
        tif = params.get("timeInForce", "GTC" if otype == "limit" else "IOC")
        if otype == "limit" and "timeInForce" not in params:
            return _err(
                -1102, "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed."
            )
        partial = state.faults.take("partial_fill", path)
        lag = state.faults.take("not_found_lag", path)
        broke = state.faults.take("insufficient_balance", path)
        hang = state.faults.take("timeout_after_accept", path)
        async with self.venue.lock:
            try:
                order = self.venue.place(
                    symbol=spec.symbol, side=side, type=otype, amount=d(params["quantity"]),
                    price=d(params["price"]) if "price" in params else None, time_in_force=tif,
                    client_order_id=client_id, fill_ratio=d(partial.ratio) if partial else None,
                    hidden_lookups=lag.lookups if lag else 0, force_insufficient=broke is not None,
                )  # fmt: skip
            except VenueReject as e:
                return _reject(e)
        resp_type = params.get("newOrderRespType", "FULL" if otype == "market" else "ACK")
        body = self.order_json(order, full=resp_type == "FULL")
        if resp_type == "ACK":
            body = {k: body[k] for k in ("symbol", "orderId", "orderListId", "clientOrderId")}
            body["transactTime"] = order.created_ms
        return await after_accept(request, web.json_response(body), hang)

    def _lookup(self, params: dict[str, str]) -> Order:
        spec = self.spec(params.get("symbol"))
        if "orderId" in params:
            return self.venue.lookup(order_id=params["orderId"], symbol=spec.symbol)
        if "origClientOrderId" in params:
            return self.venue.lookup(client_order_id=params["origClientOrderId"], symbol=spec.symbol)
        raise BadRequest(
            _err(-1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")
        )

    async def get_order(self, request: web.Request) -> web.Response:
        params = await self.signed_params(request)
        async with self.venue.lock:
            return web.json_response(self.order_json(self._lookup(params)))

    async def cancel_order(self, request: web.Request) -> web.Response:
        params = await self.signed_params(request)
        spec = self.spec(params.get("symbol"))
        async with self.venue.lock:
            try:
                if "orderId" in params:
                    order = self.venue.cancel(order_id=params["orderId"], symbol=spec.symbol)
                elif "origClientOrderId" in params:
                    order = self.venue.cancel(client_order_id=params["origClientOrderId"], symbol=spec.symbol)
                else:
                    return _err(
                        -1102,
                        "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
                    )
            except VenueReject as e:
                return _reject(e, cancel=True)
        body = self.order_json(order)
        body["origClientOrderId"] = body["clientOrderId"]
        return web.json_response(body)

    async def open_orders(self, request: web.Request) -> web.Response:
        params = await self.signed_params(request)
        symbol = self.spec(params["symbol"]).symbol if "symbol" in params else None
        out = [
            self.order_json(o)
            for o in self.venue.listed(lambda o: o.is_open and (symbol is None or o.symbol == symbol))
        ]
        return web.json_response(out)

    async def all_orders(self, request: web.Request) -> web.Response:
        params = await self.signed_params(request)
        symbol = self.spec(params.get("symbol")).symbol
        out = [self.order_json(o) for o in self.venue.listed(lambda o: o.symbol == symbol)]
        return web.json_response(out[-int(params.get("limit", "500")) :])

    async def my_trades(self, request: web.Request) -> web.Response:
        """GET /api/v3/myTrades: `symbol` (required), `orderId`, `startTime`/`endTime` (ms, inclusive),
        `fromId` (trades with id >= it), `limit` (default 500, at most 1000). Oldest first; with no
        time or id bound, the most recent `limit` trades."""
        params = await self.signed_params(request)
        spec = self.spec(params.get("symbol"))
        wanted = params.get("orderId")
        limit = int(params.get("limit", "500"))
        if not 1 <= limit <= 1000:
            return _err(-1100, "Illegal characters found in parameter 'limit'; legal range is '1 - 1000'.")
        if "fromId" in params and ("startTime" in params or "endTime" in params):
            return _err(-1128, "Combination of optional parameters invalid.")
        start = int(params.get("startTime", "0"))
        end = int(params.get("endTime", str(2**62)))
        from_id = int(params.get("fromId", "0"))
        bounded = any(k in params for k in ("startTime", "endTime", "fromId"))
        fills = []
        for o in self.venue.listed(lambda o: o.symbol == spec.symbol and (wanted is None or o.id == wanted)):
            fills += [(o, f) for f in o.fills if start <= f.time_ms <= end and f.trade_id >= from_id]
        fills.sort(key=lambda of: of[1].trade_id)
        fills = fills[:limit] if bounded else fills[-limit:]
        rows = []
        for o, f in fills:
            rows.append(
                {"symbol": _pair_id(spec), "id": f.trade_id, "orderId": int(o.id), "orderListId": -1,
                 "price": fmt(f.price), "qty": fmt(f.amount), "quoteQty": fmt(f.price * f.amount),
                 "commission": fmt(f.fee), "commissionAsset": f.fee_asset, "time": f.time_ms,
                 "isBuyer": o.side == "buy", "isMaker": f.maker, "isBestMatch": True}
            )  # fmt: skip
        return web.json_response(rows)

    async def account(self, request: web.Request) -> web.Response:
        await self.signed_params(request)
        v = self.venue
        return web.json_response(
            {
                "makerCommission": int(v.maker_fee * 10000),
                "takerCommission": int(v.taker_fee * 10000),
                "buyerCommission": 0,
                "sellerCommission": 0,
                "commissionRates": {"maker": fmt(v.maker_fee), "taker": fmt(v.taker_fee),
                                    "buyer": "0.00000000", "seller": "0.00000000"},
                "canTrade": True, "canWithdraw": True, "canDeposit": True, "brokered": False,
                "requireSelfTradePrevention": False, "preventSor": False,
                "updateTime": int(time.time() * 1000), "accountType": "SPOT",
                "balances": [{"asset": a, "free": fmt(v.free[a]), "locked": fmt(v.used.get(a, Decimal(0)))}
                             for a in sorted(v.free)],
                "permissions": ["SPOT"], "uid": 1,
            }
        )  # fmt: skip

    async def trade_fee(self, request: web.Request) -> web.Response:
        params = await self.signed_params(request)
        pair = params.get("symbol")
        specs = [self.spec(pair)] if pair else list(self.venue.specs.values())
        return web.json_response(
            [
                {"symbol": _pair_id(s), "makerCommission": fmt(self.venue.maker_fee),
                 "takerCommission": fmt(self.venue.taker_fee)}
                for s in specs
            ]
        )  # fmt: skip

    # ------------------------------------------------------------ custody

    async def deposit_address(self, request: web.Request) -> web.Response:
        params = await self.signed_params(request)
        coin = params.get("coin", "")
        async with self.venue.lock:
            address = self.venue.deposit_address(coin)
        return web.json_response({"address": address, "coin": coin, "tag": "", "url": ""})

    async def deposit_history(self, request: web.Request) -> web.Response:
        params = await self.signed_params(request)
        coin = params.get("coin")
        rows = []
        for dep in sorted(self.venue.deposits.values(), key=lambda x: x.created_ms):
            if coin and dep.asset != coin:
                continue
            rows.append(
                {"id": dep.id, "amount": fmt(dep.amount), "coin": dep.asset, "network": dep.asset,
                 "status": 1 if dep.credited else 0, "address": dep.address, "addressTag": "",
                 "txId": dep.tx_id, "insertTime": dep.created_ms, "transferType": 0,
                 "confirmTimes": f"{min(dep.confirmations, dep.required)}/{dep.required}",
                 "unlockConfirm": dep.required, "walletType": 0}
            )  # fmt: skip
        return web.json_response(rows)

    async def withdraw(self, request: web.Request) -> web.StreamResponse:
        params = await self.signed_params(request)
        faults = request.app[STATE_KEY].faults
        broke = faults.take("insufficient_balance", request.path)
        hang = faults.take("timeout_after_accept", request.path)
        fail = faults.take("withdrawal_fail", request.path)
        lag = faults.take("not_found_lag", request.path)
        async with self.venue.lock:
            w = self.venue.withdraw(
                asset=params.get("coin", ""), amount=d(params["amount"]), address=params.get("address", ""),
                tag=params.get("addressTag"), client_id=params.get("withdrawOrderId"),
                force_insufficient=broke is not None, fail=fail is not None,
                hidden_lookups=lag.lookups if lag is not None else 0,
            )  # fmt: skip
        return await after_accept(request, web.json_response({"id": w.id}), hang)

    async def withdraw_history(self, request: web.Request) -> web.Response:
        """As Binance: filters `coin`, `withdrawOrderId`, `startTime`/`endTime` (ms, on the apply time);
        newest first; `offset` and `limit` (default and maximum: the venue's page size, 1000 at Binance)."""
        params = await self.signed_params(request)
        coin = params.get("coin")
        client_id = params.get("withdrawOrderId")
        start = int(params["startTime"]) if params.get("startTime") else None
        end = int(params["endTime"]) if params.get("endTime") else None
        page = self.venue.config.history_page_size
        limit = min(int(params.get("limit") or page), page)
        offset = int(params.get("offset") or 0)
        chosen = [
            (seq, w)
            for seq, w in enumerate(visible_withdrawals(self.venue.withdrawals.values()))
            if (not coin or w.asset == coin)
            and (not client_id or w.client_id == client_id)
            and (start is None or w.created_ms >= start)
            and (end is None or w.created_ms <= end)
        ]
        chosen.sort(key=lambda sw: (sw[1].created_ms, sw[0]), reverse=True)
        # Binance's withdrawal status codes: 6 Completed, 5 Failure, 4 Processing.
        codes = {"completed": 6, "failed": 5}
        rows = [
            {"id": w.id, "amount": fmt(w.amount), "transactionFee": fmt(w.fee), "coin": w.asset,
             "status": codes.get(w.status, 4), "address": w.address, "txId": w.tx_id or "",
             "applyTime": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(w.created_ms / 1000)),
             "network": w.asset, "transferType": 0, "withdrawOrderId": w.client_id or ""}
            for _, w in chosen[offset : offset + limit]
        ]  # fmt: skip
        return web.json_response(rows)


def create_app(
    venue: Venue | None = None, *, api_key: str | None = None, secret: str | None = None, seed: int = 0
) -> web.Application:
    """The Binance sandbox. Keys default to the environment, then to config.settings' dev values."""
    from config.settings import DEV_SECRETS

    venue = venue or Venue(default_config(), seed=seed)
    api_key = api_key or os.environ.get("BINANCE_API_KEY") or DEV_SECRETS["binance_api_key"]
    secret = secret or os.environ.get("BINANCE_SECRET") or DEV_SECRETS["binance_secret"]
    b = BinanceApp(venue, api_key, secret)
    middleware = fault_middleware(
        rate_limited=lambda: _err(-1003, RATE_LIMIT_MSG, 429),
        banned=lambda: _err(-1003, BANNED_MSG, 418),
        maintenance=lambda: _err(1, "System is under maintenance.", 503),
    )
    app = web.Application(middlewares=[middleware])
    app[STATE_KEY] = VenueState(venue)
    w = b.wrap
    r = app.router
    r.add_get("/api/v3/ping", w(b.ping))
    r.add_get("/api/v3/time", w(b.server_time))
    r.add_get("/api/v3/exchangeInfo", w(b.exchange_info))
    r.add_get("/api/v3/depth", w(b.depth))
    r.add_get("/api/v3/ticker/bookTicker", w(b.book_ticker))
    r.add_get("/api/v3/ticker/24hr", w(b.ticker_24hr))
    r.add_get("/api/v3/ticker/price", w(b.ticker_price))
    r.add_get("/api/v3/klines", w(b.klines))
    r.add_post("/api/v3/order", w(b.new_order))
    r.add_get("/api/v3/order", w(b.get_order))
    r.add_delete("/api/v3/order", w(b.cancel_order))
    r.add_get("/api/v3/openOrders", w(b.open_orders))
    r.add_get("/api/v3/allOrders", w(b.all_orders))
    r.add_get("/api/v3/myTrades", w(b.my_trades))
    r.add_get("/api/v3/account", w(b.account))
    r.add_get("/sapi/v1/asset/tradeFee", w(b.trade_fee))
    r.add_get("/sapi/v1/capital/deposit/address", w(b.deposit_address))
    r.add_get("/sapi/v1/capital/deposit/hisrec", w(b.deposit_history))
    r.add_post("/sapi/v1/capital/withdraw/apply", w(b.withdraw))
    r.add_get("/sapi/v1/capital/withdraw/history", w(b.withdraw_history))
    control_routes(app)
    b.feed = mount_binance_streams(app, venue)
    return app


__all__ = ["create_app", "default_config", "OrderStatus"]
