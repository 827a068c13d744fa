"""A Kraken REST subset: what ccxt's `kraken` class calls for the broker's operations.

- public `GET /0/public/...`: Time, Assets, AssetPairs, Depth, Ticker, OHLC.
- private `POST /0/private/...` (form body with `nonce`): BalanceEx, TradeVolume, AddOrder (with
  `cl_ord_id`, `timeinforce`), QueryOrders, OpenOrders and ClosedOrders (both filter by `cl_ord_id`),
  CancelOrder, DepositMethods, DepositAddresses, DepositStatus, Withdraw, WithdrawStatus.

Withdrawals as Kraken: `Withdraw` takes a pre-registered `key` (no client id of ours) and answers only
its `refid`; `WithdrawStatus` lists recent withdrawals newest first, each with `refid`, `txid`, `info`
(the address), `amount`, `fee`, `time`, `status` ("Initial", "Pending", "Settled", "Success", "Failure")
and `status-prop` ("onhold", "cancel-pending", "canceled", "return") when it applies, plus `key` and
`network`. Filters `asset`, `start`/`end` (seconds); with `cursor` ("true" to begin) the answer is
`{"withdrawals": [...], "next_cursor": ...}` in pages of `limit` (the venue's page size at most). The
`timeout_after_accept` fault applies to `Withdraw` too: the withdrawal is made, its answer is lost.

Signing as Kraken: `API-Key`, and `API-Sign` = base64(HMAC-SHA512(base64decode(secret),
path + SHA256(nonce + body))). The nonce must strictly increase per key ("EAPI:Invalid nonce").
Rate limits as Kraken's, when switched on (`POST /_control/rate_counter {"ceiling", "decay_per_s"}`,
off by default so tests that do not ask for it are not limited): a per-key counter that each private
call raises (orders and cancels excepted) and that decays; a call above the ceiling is refused with
"EAPI:Rate limit exceeded". `GET /_control/rate_counter` says how many were refused.
Kraken answers HTTP 200 with `{"error": [...], "result": ...}` and uses its own error strings, which
ccxt maps: "EOrder:Insufficient funds", "EGeneral:Invalid arguments", "EAPI:Invalid key",
"EAPI:Invalid signature", "EService:Unavailable", "EAPI:Rate limit exceeded",
"EGeneral:Temporary lockout", "EOrder:Unknown order", "EQuery:Unknown asset pair".

Names as Kraken's: pairs XXBTZGBP (altname XBTGBP), XETHZGBP (ETHGBP), BNBGBP; assets XXBT, XETH,
ZGBP, BNB (ccxt maps them to BTC, ETH, GBP, BNB). Prices tick 0.1 for BTC, lots to 8 decimals.

Default venue: mids 0.4% below the reference (cheaper to buy than the Binance sandbox) with fees of
26 bps taker / 16 bps maker in the quote currency, so buys tend to route here and sells to Binance.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import time
from decimal import Decimal
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from sandbox.control import STATE_KEY, VenueState, after_accept, control_routes, fault_middleware
from sandbox.kraken_ws import mount_kraken_streams
from sandbox.market import (
    Order,
    OrderStatus,
    SymbolSpec,
    Venue,
    VenueConfig,
    VenueReject,
    Withdrawal,
    d,
    fmt,
    visible_withdrawals,
)

KRAKEN_SPECS: tuple[SymbolSpec, ...] = (
    SymbolSpec("BTC-GBP", "BTC", "GBP", Decimal("0.1"), Decimal("0.00000001"), Decimal("0.00005"),
               Decimal("0.5"), Decimal("68000"), Decimal("0.4")),
    SymbolSpec("ETH-GBP", "ETH", "GBP", Decimal("0.01"), Decimal("0.00000001"), Decimal("0.002"),
               Decimal("0.5"), Decimal("2600"), Decimal("6")),
    SymbolSpec("BNB-GBP", "BNB", "GBP", Decimal("0.01"), Decimal("0.00000001"), Decimal("0.02"),
               Decimal("0.5"), Decimal("480"), Decimal("30")),
)  # fmt: skip

# Our asset -> (Kraken asset id, altname); our symbol -> (pair id, altname, wsname).
ASSETS: dict[str, tuple[str, str]] = {"BTC": ("XXBT", "XBT"), "ETH": ("XETH", "ETH"), "GBP": ("ZGBP", "GBP"),
                                      "BNB": ("BNB", "BNB")}  # fmt: skip
PAIRS: dict[str, tuple[str, str, str]] = {
    "BTC-GBP": ("XXBTZGBP", "XBTGBP", "XBT/GBP"),
    "ETH-GBP": ("XETHZGBP", "ETHGBP", "ETH/GBP"),
    "BNB-GBP": ("BNBGBP", "BNBGBP", "BNB/GBP"),
}
# Kraken's own funding method names: ccxt asks for ETH by its default "Ether (Hex)" without listing methods.
DEPOSIT_METHODS = {"BTC": "Bitcoin", "ETH": "Ether (Hex)", "BNB": "BNB (BEP20)", "GBP": "Bank Frick (FPS)"}

# Kraken accepts a long UUID, a short (32 hex) UUID, or up to 18 printable ASCII characters.
_CL_ORD_ID = re.compile(r"^([0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}|[0-9a-fA-F]{32}|[ -~]{1,18})$")


def default_config() -> VenueConfig:
    return VenueConfig(
        name="kraken",
        taker_fee=Decimal("0.0026"),
        maker_fee=Decimal("0.0016"),
        price_offset_bps=Decimal(-40),
        fee_in="quote",
        order_id_style="kraken",
    )


def _ok(result: Any) -> web.Response:
    return web.json_response({"error": [], "result": result})


def _err(*errors: str) -> web.Response:
    return web.json_response({"error": list(errors)})


_REJECTS = {
    "insufficient_balance": "EOrder:Insufficient funds",
    "duplicate_order": "EOrder:Duplicate order",
    "unknown_order": "EOrder:Unknown order",
    "invalid_symbol": "EQuery:Unknown asset pair",
    "filter_failure": "EOrder:Order minimum not met",
    "invalid_order": "EGeneral:Invalid arguments",
    "unknown_asset": "EFunding:Unknown asset",
}


_TRADING_CALLS = frozenset({"AddOrder", "CancelOrder"})
_HISTORY_CALLS = frozenset({"Ledgers", "QueryLedgers", "TradesHistory", "QueryTrades"})


class KrakenError(Exception):
    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


def _ts(ms: int) -> float:
    return round(ms / 1000, 4)


class KrakenApp:
    def __init__(self, venue: Venue, api_key: str, secret_b64: str) -> None:
        self.venue = venue
        self.api_key = api_key
        self.secret = base64.b64decode(secret_b64)
        self.last_nonce = 0
        # Kraken's per-key call counter (ceiling, decay per second); None: not enforced (the default).
        self.counter: tuple[float, float] | None = None
        self.counter_level = 0.0
        self.counter_at = time.monotonic()
        self.rate_refusals = 0
        self.keys: dict[str, str] = {}  # withdrawal id -> the withdraw key it was sent to
        self.pair_by_name: dict[str, SymbolSpec] = {}
        for spec in venue.specs.values():
            pid, alt, ws = PAIRS[spec.symbol]
            for name in (pid, alt, ws, spec.symbol.replace("-", "/")):
                self.pair_by_name[name] = spec
        self.asset_by_name: dict[str, str] = {}
        for ours, (kid, alt) in ASSETS.items():
            for name in (ours, kid, alt):
                self.asset_by_name[name] = ours

    # ------------------------------------------------------------ plumbing

    def spec(self, name: str | None) -> SymbolSpec:
        spec = self.pair_by_name.get(name or "")
        if spec is None:
            raise KrakenError("EQuery:Unknown asset pair")
        return spec

    def asset(self, name: str | None) -> str:
        asset = self.asset_by_name.get(name or "")
        if asset is None:
            raise KrakenError("EQuery:Unknown asset")
        return asset

    async def private_params(self, request: web.Request) -> dict[str, str]:
        """Check key, signature and nonce; return the form parameters."""
        body = await request.text()
        if request.headers.get("API-Key") != self.api_key:
            raise KrakenError("EAPI:Invalid key")
        params = dict(parse_qsl(body, keep_blank_values=True))
        nonce = params.get("nonce", "")
        try:
            sent = base64.b64decode(request.headers.get("API-Sign", ""), validate=True)
        except (binascii.Error, ValueError):
            raise KrakenError("EAPI:Invalid signature") from None
        digest = hashlib.sha256((nonce + body).encode()).digest()
        expected = hmac.new(self.secret, request.path.encode() + digest, hashlib.sha512).digest()
        if not hmac.compare_digest(expected, sent):
            raise KrakenError("EAPI:Invalid signature")
        if not nonce.isdigit() or int(nonce) <= self.last_nonce:
            raise KrakenError("EAPI:Invalid nonce")
        self.last_nonce = int(nonce)
        self.count_call(request.path.rsplit("/", 1)[-1])
        return params

    def count_call(self, method: str) -> None:
        """Kraken's per-key call counter, when switched on (`POST /_control/rate_counter`): every call adds
        1 (ledger and trade history 2; orders and cancels count on the matching engine instead), the
        counter falls by `decay_per_s`, and a call that would lift it past `ceiling` is refused."""
        if self.counter is None:
            return
        ceiling, decay = self.counter
        now = time.monotonic()
        self.counter_level = max(0.0, self.counter_level - (now - self.counter_at) * decay)
        self.counter_at = now
        cost = 0.0 if method in _TRADING_CALLS else 2.0 if method in _HISTORY_CALLS else 1.0
        if self.counter_level + cost > ceiling + 1e-9:
            self.rate_refusals += 1
            raise KrakenError("EAPI:Rate limit exceeded")
        self.counter_level += cost

    async def set_rate_counter(self, request: web.Request) -> web.Response:
        """`{"ceiling": 15, "decay_per_s": 0.33}` turns the counter on (empty); DELETE turns it off."""
        if request.method == "DELETE":
            self.counter = None
        else:
            body = await request.json()
            self.counter = (float(body["ceiling"]), float(body["decay_per_s"]))
        self.counter_level, self.counter_at, self.rate_refusals = 0.0, time.monotonic(), 0
        return web.json_response({"counter": self.counter})

    async def rate_counter(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"counter": self.counter, "level": self.counter_level, "refused": self.rate_refusals}
        )

    def wrap(self, handler: Any) -> Any:
        async def run(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except KrakenError as e:
                return _err(e.error)
            except VenueReject as e:
                return _err(_REJECTS.get(e.kind, "EGeneral:Invalid arguments"))
            except (ValueError, KeyError):
                return _err("EGeneral:Invalid arguments")

        return run

    # ------------------------------------------------------------ public

    async def server_time(self, request: web.Request) -> web.Response:
        now = time.time()
        return _ok({"unixtime": int(now), "rfc1123": formatdate(now, usegmt=True)})

    async def assets(self, request: web.Request) -> web.Response:
        return _ok(
            {
                kid: {"aclass": "currency", "altname": alt, "decimals": 10 if ours != "GBP" else 4,
                      "display_decimals": 5 if ours != "GBP" else 2, "status": "enabled"}
                for ours, (kid, alt) in ASSETS.items()
            }
        )  # fmt: skip

    def _places(self, step: Decimal) -> int:
        return max(0, -step.normalize().as_tuple().exponent)  # type: ignore[operator]

    async def asset_pairs(self, request: web.Request) -> web.Response:
        out = {}
        taker_pct = fmt(self.venue.taker_fee * 100, 4)
        maker_pct = fmt(self.venue.maker_fee * 100, 4)
        for spec in self.venue.specs.values():
            pid, alt, ws = PAIRS[spec.symbol]
            out[pid] = {
                "altname": alt, "wsname": ws, "aclass_base": "currency", "base": ASSETS[spec.base][0],
                "aclass_quote": "currency", "quote": ASSETS[spec.quote][0], "lot": "unit",
                "cost_decimals": 5, "pair_decimals": self._places(spec.price_step),
                "lot_decimals": self._places(spec.amount_step), "lot_multiplier": 1,
                "leverage_buy": [], "leverage_sell": [],
                # Kraken publishes fee tiers as [volume, percent]; ccxt reads the first tier.
                "fees": [[0, float(taker_pct)]], "fees_maker": [[0, float(maker_pct)]],
                "fee_volume_currency": "ZUSD", "margin_call": 80, "margin_stop": 40,
                "ordermin": fmt(spec.min_amount), "costmin": fmt(spec.min_notional),
                "tick_size": fmt(spec.price_step), "status": "online",
            }  # fmt: skip
        wanted = request.query.get("pair")
        if wanted:
            names = {self.spec(p).symbol for p in wanted.split(",")}
            out = {k: v for k, v in out.items() if self.pair_by_name[k].symbol in names}
        return _ok(out)

    async def depth(self, request: web.Request) -> web.Response:
        spec = self.spec(request.query.get("pair"))
        count = int(request.query.get("count", "100"))
        bids, asks = self.venue.book_levels(spec.symbol, count)
        now = int(time.time())
        p, a = self._places(spec.price_step), self._places(spec.amount_step)
        pid = PAIRS[spec.symbol][0]
        return _ok(
            {
                pid: {
                    "bids": [[fmt(lv[0], p), fmt(lv[1], a), now] for lv in bids],
                    "asks": [[fmt(lv[0], p), fmt(lv[1], a), now] for lv in asks],
                }
            }
        )

    async def ticker(self, request: web.Request) -> web.Response:
        names = (request.query.get("pair") or ",".join(p[0] for p in PAIRS.values())).split(",")
        out = {}
        for name in names:
            spec = self.spec(name)
            m = self.venue.market(spec.symbol)
            bids, asks = self.venue.book_levels(spec.symbol, 1)
            bid = bids[0] if bids else [m.mid, Decimal(0)]
            ask = asks[0] if asks else [m.mid, Decimal(0)]
            candles = m.ohlcv(1440)
            vol = sum((c[5] for c in candles), Decimal(0))
            high = max((c[2] for c in candles), default=m.mid)
            low = min((c[3] for c in candles), default=m.mid)
            out[PAIRS[spec.symbol][0]] = {
                "a": [fmt(ask[0]), "1", fmt(ask[1])], "b": [fmt(bid[0]), "1", fmt(bid[1])],
                "c": [fmt(m.last_trade), "0"], "v": [fmt(vol), fmt(vol)], "p": [fmt(m.mid), fmt(m.mid)],
                "t": [0, 0], "l": [fmt(low), fmt(low)], "h": [fmt(high), fmt(high)],
                "o": fmt(candles[0][1] if candles else m.mid),
            }  # fmt: skip
        return _ok(out)

    async def ohlc(self, request: web.Request) -> web.Response:
        spec = self.spec(request.query.get("pair"))
        if request.query.get("interval", "1") != "1":
            raise KrakenError("EGeneral:Invalid arguments")
        rows = [
            [start // 1000, fmt(o), fmt(h), fmt(lo), fmt(c), fmt(c), fmt(v), 0]
            for start, o, h, lo, c, v in self.venue.market(spec.symbol).ohlcv(720)
        ]
        return _ok({PAIRS[spec.symbol][0]: rows, "last": rows[-1][0] if rows else 0})

    # ------------------------------------------------------------ trading

    def order_info(self, o: Order) -> dict[str, Any]:
        spec = self.venue.specs[o.symbol]
        alt = PAIRS[o.symbol][1]
        price_txt = "market" if o.price is None else f"limit {fmt(o.price, self._places(spec.price_step))}"
        status = {
            OrderStatus.NEW: "open",
            OrderStatus.PARTIALLY_FILLED: "open",
            OrderStatus.FILLED: "closed",
            OrderStatus.CANCELED: "canceled",
            OrderStatus.EXPIRED: "closed" if o.filled else "canceled",
            OrderStatus.REJECTED: "canceled",
        }[o.status]
        avg = o.average_price
        info: dict[str, Any] = {
            "refid": None, "userref": 0, "status": status, "opentm": _ts(o.created_ms), "starttm": 0,
            "expiretm": 0,
            "descr": {"pair": alt, "type": o.side, "ordertype": o.type,
                      "price": fmt(o.price or Decimal(0), self._places(spec.price_step)), "price2": "0",
                      "leverage": "none", "order": f"{o.side} {fmt(o.amount)} {alt} @ {price_txt}",
                      "close": ""},
            "vol": fmt(o.amount), "vol_exec": fmt(o.filled), "cost": fmt(o.quote_filled), "fee": fmt(o.fee),
            "price": fmt(avg) if avg is not None else "0.00000", "stopprice": "0.00000",
            "limitprice": "0.00000", "misc": "", "oflags": "fciq", "timeinforce": o.time_in_force,
            "trades": [f"T{o.id[1:6]}-{f.trade_id:05d}" for f in o.fills],
        }  # fmt: skip
        if o.client_order_id:
            info["cl_ord_id"] = o.client_order_id
        if not o.is_open:
            info["closetm"] = _ts(o.updated_ms)
            if o.status in (OrderStatus.CANCELED, OrderStatus.EXPIRED) and o.remaining > 0:
                info["reason"] = (
                    "User requested" if o.status is OrderStatus.CANCELED else "Insufficient liquidity"
                )
        return info

    async def balance_ex(self, request: web.Request) -> web.Response:
        await self.private_params(request)
        v = self.venue
        out = {}
        for asset in sorted(v.free):
            kid = ASSETS.get(asset, (asset, asset))[0]
            used = v.used.get(asset, Decimal(0))
            out[kid] = {"balance": fmt(v.free[asset] + used, 10), "hold_trade": fmt(used, 10)}
        return _ok(out)

    async def trade_volume(self, request: web.Request) -> web.Response:
        params = await self.private_params(request)
        pairs = [self.spec(p) for p in params.get("pair", "").split(",") if p]
        fees = {PAIRS[s.symbol][0]: {"fee": fmt(self.venue.taker_fee * 100, 4), "minfee": "0.1000",
                                     "maxfee": "0.2600", "nextfee": None, "tiervolume": "0.0000",
                                     "nextvolume": None} for s in pairs}  # fmt: skip
        makers = {k: {**v, "fee": fmt(self.venue.maker_fee * 100, 4)} for k, v in fees.items()}
        return _ok({"currency": "ZUSD", "volume": "0.0000", "fees": fees, "fees_maker": makers})

    async def add_order(self, request: web.Request) -> web.StreamResponse:
        params = await self.private_params(request)
        state = request.app[STATE_KEY]
        path = request.path
        spec = self.spec(params.get("pair"))
        cl_ord_id = params.get("cl_ord_id")
        if cl_ord_id is not None and not _CL_ORD_ID.match(cl_ord_id):
            raise KrakenError("EGeneral:Invalid arguments:cl_ord_id")
        otype, side = params.get("ordertype", ""), params.get("type", "")
        if otype not in ("market", "limit") or side not in ("buy", "sell"):
            raise KrakenError("EGeneral:Invalid arguments")
        tif = params.get("timeinforce", "GTC").upper()
        if "volume" not in params:
            raise KrakenError("EGeneral:Invalid arguments:volume")
        if otype == "limit" and "price" not in params:
            raise KrakenError("EGeneral:Invalid arguments:price")
        partial = state.faults.take("partial_fill", path)
        lag = state.faults.take("not_found_lag", path)
        broke = state.faults.take("insufficient_balance", path)
        hang = state.faults.take("timeout_after_accept", path)
        async with self.venue.lock:
            order = self.venue.place(
                symbol=spec.symbol, side=side, type=otype, amount=d(params["volume"]),
                price=d(params["price"]) if otype == "limit" else None, time_in_force=tif,
                client_order_id=cl_ord_id, fill_ratio=d(partial.ratio) if partial else None,
                hidden_lookups=lag.lookups if lag else 0, force_insufficient=broke is not None,
            )  # fmt: skip
        descr = self.order_info(order)["descr"]["order"]
        return await after_accept(request, _ok({"descr": {"order": descr}, "txid": [order.id]}), hang)

    async def query_orders(self, request: web.Request) -> web.Response:
        params = await self.private_params(request)
        ids = [t for t in params.get("txid", "").split(",") if t]
        if not ids:
            raise KrakenError("EGeneral:Invalid arguments")
        out = {}
        async with self.venue.lock:
            for txid in ids:
                try:
                    out[txid] = self.order_info(self.venue.lookup(order_id=txid))
                except VenueReject:
                    raise KrakenError("EOrder:Unknown order") from None
        return _ok(out)

    def _filtered(self, params: dict[str, str], open_: bool) -> dict[str, Any]:
        cl = params.get("cl_ord_id")
        out = {}
        for o in self.venue.listed(lambda o: o.is_open == open_ and (cl is None or o.client_order_id == cl)):
            out[o.id] = self.order_info(o)
        return out

    async def open_orders(self, request: web.Request) -> web.Response:
        params = await self.private_params(request)
        return _ok({"open": self._filtered(params, True)})

    async def closed_orders(self, request: web.Request) -> web.Response:
        params = await self.private_params(request)
        closed = self._filtered(params, False)
        return _ok({"closed": dict(reversed(list(closed.items()))), "count": len(closed)})

    async def trades_history(self, request: web.Request) -> web.Response:
        """POST /0/private/TradesHistory: our trades, newest first, 50 a page (`ofs` pages on); `start`
        and `end` (unix seconds, exclusive) bound them. Trades name their order (`ordertxid`), not
        its client id."""
        params = await self.private_params(request)
        start = float(params.get("start", "0"))
        end = float(params.get("end", "inf"))
        ofs = int(params.get("ofs", "0"))
        rows: list[tuple[float, str, dict[str, Any]]] = []
        for o in self.venue.listed(lambda o: bool(o.fills)):
            for f in o.fills:
                when = _ts(f.time_ms)
                if not start < when < end:
                    continue
                trade_id = f"T{o.id[1:6]}-{f.trade_id:05d}"
                rows.append(
                    (when, trade_id,
                     {"ordertxid": o.id, "postxid": f"TK{o.id[1:5]}-{f.trade_id:05d}",
                      "pair": PAIRS[o.symbol][0], "time": when, "type": o.side, "ordertype": o.type,
                      "price": fmt(f.price),
                      "cost": fmt(f.price * f.amount), "fee": fmt(f.fee), "vol": fmt(f.amount),
                      "margin": "0.00000", "leverage": "0", "misc": "", "trade_id": f.trade_id,
                      "maker": f.maker})
                )  # fmt: skip
        rows.sort(key=lambda r: r[0], reverse=True)
        page = rows[ofs : ofs + 50]
        return _ok({"trades": {trade_id: t for _, trade_id, t in page}, "count": len(rows)})

    async def cancel_order(self, request: web.Request) -> web.Response:
        params = await self.private_params(request)
        async with self.venue.lock:
            if "cl_ord_id" in params:
                self.venue.cancel(client_order_id=params["cl_ord_id"])
            elif "txid" in params:
                self.venue.cancel(order_id=params["txid"])
            else:
                raise KrakenError("EGeneral:Invalid arguments")
        return _ok({"count": 1})

    # ------------------------------------------------------------ custody

    async def deposit_methods(self, request: web.Request) -> web.Response:
        params = await self.private_params(request)
        asset = self.asset(params.get("asset"))
        return _ok([{"method": DEPOSIT_METHODS[asset], "limit": False, "fee": "0.0000000000",
                     "gen-address": asset != "GBP", "minimum": "0.00010000"}])  # fmt: skip

    async def deposit_addresses(self, request: web.Request) -> web.Response:
        params = await self.private_params(request)
        asset = self.asset(params.get("asset"))
        if params.get("method") not in (None, DEPOSIT_METHODS[asset]):
            raise KrakenError("EFunding:No funding method")
        new = str(params.get("new", "")).lower() == "true"  # ccxt sends "true"; form values are strings
        async with self.venue.lock:
            address = self.venue.deposit_address(asset, new=new)
        return _ok([{"address": address, "expiretm": "0", "new": new}])

    async def deposit_status(self, request: web.Request) -> web.Response:
        params = await self.private_params(request)
        wanted = self.asset(params["asset"]) if params.get("asset") else None
        rows = []
        for dep in sorted(self.venue.deposits.values(), key=lambda x: x.created_ms):
            if wanted and dep.asset != wanted:
                continue
            rows.append(
                {"method": DEPOSIT_METHODS.get(dep.asset, dep.asset), "aclass": "currency",
                 "asset": ASSETS.get(dep.asset, (dep.asset, ""))[0], "refid": f"FT{dep.id:0>6}",
                 "txid": dep.tx_id, "info": dep.address, "amount": fmt(dep.amount, 10), "fee": "0.0000000000",
                 "time": dep.created_ms // 1000, "status": "Success" if dep.credited else "Pending",
                 "confirmations": dep.confirmations, "confirmations_required": dep.required}
            )  # fmt: skip
        return _ok(rows)

    async def withdraw(self, request: web.Request) -> web.StreamResponse:
        params = await self.private_params(request)
        asset = self.asset(params.get("asset"))
        key = params.get("key")
        if not key:
            raise KrakenError("EFunding:Unknown withdraw key")
        faults = request.app[STATE_KEY].faults
        broke = faults.take("insufficient_balance", request.path)
        hang = faults.take("timeout_after_accept", request.path)
        fail = faults.take("withdrawal_fail", request.path)
        lag = faults.take("not_found_lag", request.path)
        async with self.venue.lock:
            try:
                w = self.venue.withdraw(
                    asset=asset,
                    amount=d(params["amount"]),
                    address=params.get("address") or key,
                    client_id=None,
                    force_insufficient=broke is not None,
                    fail=fail is not None,
                    hidden_lookups=lag.lookups if lag is not None else 0,
                )
            except VenueReject as e:
                if e.kind == "insufficient_balance":
                    raise KrakenError("EFunding:Insufficient funds") from None
                raise
        self.keys[w.id] = key
        return await after_accept(request, _ok({"refid": _refid(w.id)}), hang)

    async def withdraw_status(self, request: web.Request) -> web.Response:
        params = await self.private_params(request)
        wanted = self.asset(params["asset"]) if params.get("asset") else None
        # Timestamps in seconds, possibly with a fraction (ccxt sends milliseconds / 1000).
        start = d(params["start"]) if params.get("start") else None
        end = d(params["end"]) if params.get("end") else None
        chosen = [
            (seq, w)
            for seq, w in enumerate(visible_withdrawals(self.venue.withdrawals.values()))
            if (wanted is None or w.asset == wanted)
            and (start is None or Decimal(w.created_ms) / 1000 >= start)
            and (end is None or Decimal(w.created_ms) / 1000 <= end)
        ]
        chosen.sort(key=lambda sw: (sw[1].created_ms, sw[0]), reverse=True)  # newest first
        rows = [self._withdrawal_row(w) for _, w in chosen]
        cursor = params.get("cursor")
        if cursor is None or cursor.lower() == "false":
            return _ok(rows)
        offset = 0 if cursor.lower() == "true" else int(cursor)
        page = self.venue.config.history_page_size
        limit = min(int(params.get("limit") or page), page)
        shown = rows[offset : offset + limit]
        more = offset + limit < len(rows)
        return _ok({"withdrawals": shown, "next_cursor": str(offset + limit) if more else None})

    def _withdrawal_row(self, w: Withdrawal) -> dict[str, Any]:
        status = {"completed": "Success", "failed": "Failure"}.get(w.status, "Pending")
        row: dict[str, Any] = {
            "method": DEPOSIT_METHODS.get(w.asset, w.asset), "aclass": "currency",
            "asset": ASSETS.get(w.asset, (w.asset, ""))[0], "refid": _refid(w.id),
            "txid": w.tx_id if w.status == "completed" else None, "info": w.address,
            "amount": fmt(w.amount, 10), "fee": fmt(w.fee, 10), "time": w.created_ms // 1000,
            "status": status, "key": self.keys.get(w.id, w.address), "network": DEPOSIT_METHODS.get(w.asset),
        }  # fmt: skip
        if w.status == "failed":
            row["status-prop"] = "canceled"
        return row


def _refid(withdrawal_id: str) -> str:
    """Kraken's reference for a withdrawal (as "AGBSO6T-UFMTTQ-I7KGS6")."""
    w = withdrawal_id.upper()
    return f"A{w[:6]}-{w[6:12]}-{w[12:18]}"


def create_app(
    venue: Venue | None = None, *, api_key: str | None = None, secret: str | None = None, seed: int = 0
) -> web.Application:
    """The Kraken sandbox. Keys default to the environment, then to config.settings' dev values."""
    from config.settings import DEV_SECRETS

    venue = venue or Venue(default_config(), seed=seed, specs=KRAKEN_SPECS)
    api_key = api_key or os.environ.get("KRAKEN_API_KEY") or DEV_SECRETS["kraken_api_key"]
    secret = secret or os.environ.get("KRAKEN_SECRET") or DEV_SECRETS["kraken_secret"]
    k = KrakenApp(venue, api_key, secret)
    middleware = fault_middleware(
        rate_limited=lambda: _err("EAPI:Rate limit exceeded"),
        banned=lambda: _err("EGeneral:Temporary lockout"),
        maintenance=lambda: _err("EService:Unavailable"),
    )
    app = web.Application(middlewares=[middleware])
    app[STATE_KEY] = VenueState(venue)
    w = k.wrap
    r = app.router
    for name, handler in (
        ("Time", k.server_time),
        ("Assets", k.assets),
        ("AssetPairs", k.asset_pairs),
        ("Depth", k.depth),
        ("Ticker", k.ticker),
        ("OHLC", k.ohlc),
    ):
        r.add_get(f"/0/public/{name}", w(handler))
    private: tuple[tuple[str, Any], ...] = (
        ("BalanceEx", k.balance_ex),
        ("TradeVolume", k.trade_volume),
        ("AddOrder", k.add_order),
        ("QueryOrders", k.query_orders),
        ("OpenOrders", k.open_orders),
        ("ClosedOrders", k.closed_orders),
        ("TradesHistory", k.trades_history),
        ("CancelOrder", k.cancel_order),
        ("DepositMethods", k.deposit_methods),
        ("DepositAddresses", k.deposit_addresses),
        ("DepositStatus", k.deposit_status),
        ("Withdraw", k.withdraw),
        ("WithdrawStatus", k.withdraw_status),
    )
    for name, handler in private:
        r.add_post(f"/0/private/{name}", w(handler))
    control_routes(app)
    r.add_post("/_control/rate_counter", k.set_rate_counter)
    r.add_delete("/_control/rate_counter", k.set_rate_counter)
    r.add_get("/_control/rate_counter", k.rate_counter)
    mount_kraken_streams(app, venue)
    return app
