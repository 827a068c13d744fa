"""An OTC desk: request for quote with a time-to-live, accept, settle.

Large orders go to a desk instead of an exchange book: the desk quotes one all-in price for the whole
size, holds it for a short time, and trades it when accepted before expiry. Protocol (JSON, amounts as
strings, header `X-API-Key`):

- `POST /v1/quotes` `{"symbol": "BTC-GBP", "side": "buy", "amount": "2.5"}` ->
  `{"quote_id", "symbol", "side", "amount", "price", "quote_amount", "expires_at", "ttl_ms"}`.
  The price is the desk's mid plus (buy) or minus (sell) its spread, which is its whole fee.
- `POST /v1/quotes/{quote_id}/accept` `{"client_id": "..."}` -> the trade (`status: "accepted"`).
  Accepting again with the same `client_id` returns the same trade (idempotent); after expiry the
  answer is HTTP 410 `{"error": "quote_expired"}`; an unknown quote is 404 `quote_not_found`.
- `POST /v1/trades/{trade_id}/settle` -> `status: "settled"`: the desk moves the assets between its
  book and the broker's account at the desk.
- `GET /v1/trades/{trade_id}`, `GET /v1/trades?client_id=...`, `GET /v1/balances`.

Errors are `{"error": code, "message": text}` with 401 (bad key), 400 (bad request), 404, 409, 410,
422 (`insufficient_balance`). The `/_control` API and faults are the exchanges' (see `sandbox.control`;
`timeout_after_accept` applies to accepts);
`POST /_control/otc` sets `ttl_ms` and `spread_bps`.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from aiohttp import web

from sandbox.control import STATE_KEY, VenueState, after_accept, control_routes, fault_middleware
from sandbox.market import BPS, ONE, Venue, VenueConfig, VenueReject, d, fmt


@dataclass
class Quote:
    id: str
    symbol: str
    side: str
    amount: Decimal
    price: Decimal
    quote_amount: Decimal
    expires_ms: int
    trade_id: str | None = None


@dataclass
class Trade:
    id: str
    quote_id: str
    client_id: str
    symbol: str
    side: str
    amount: Decimal
    price: Decimal
    quote_amount: Decimal
    status: str  # accepted | settled
    created_ms: int
    settled_ms: int | None = None


def default_config() -> VenueConfig:
    return VenueConfig(name="otc", taker_fee=Decimal(0), maker_fee=Decimal(0), price_offset_bps=Decimal(-10))


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


def _err(status: int, code: str, message: str = "") -> web.Response:
    return web.json_response({"error": code, "message": message or code}, status=status)


class OtcApp:
    def __init__(self, venue: Venue, api_key: str) -> None:
        self.venue = venue
        self.api_key = api_key
        self.ttl_ms = 5_000
        self.spread_bps = Decimal(15)
        self.quotes: dict[str, Quote] = {}
        self.trades: dict[str, Trade] = {}

    def reset(self) -> None:
        self.quotes.clear()
        self.trades.clear()
        self.ttl_ms = 5_000
        self.spread_bps = Decimal(15)

    def auth(self, request: web.Request) -> web.Response | None:
        if request.headers.get("X-API-Key") != self.api_key:
            return _err(401, "unauthorized", "missing or invalid X-API-Key")
        return None

    def trade_json(self, t: Trade) -> dict[str, Any]:
        return {
            "trade_id": t.id, "quote_id": t.quote_id, "client_id": t.client_id, "symbol": t.symbol,
            "side": t.side, "amount": str(t.amount), "price": str(t.price),
            "quote_amount": str(t.quote_amount),
            "status": t.status, "created_at": _iso(t.created_ms),
            "settled_at": _iso(t.settled_ms) if t.settled_ms else None,
        }  # fmt: skip

    async def create_quote(self, request: web.Request) -> web.Response:
        if (denied := self.auth(request)) is not None:
            return denied
        try:
            body = await request.json()
            symbol, side, amount = body["symbol"], body["side"], d(body["amount"])
            m = self.venue.market(symbol)
        except VenueReject:
            return _err(400, "invalid_symbol")
        except (ValueError, KeyError, TypeError) as e:
            return _err(400, "bad_request", str(e))
        if side not in ("buy", "sell") or amount <= 0 or amount % m.spec.amount_step != 0:
            return _err(400, "bad_request", "side must be buy or sell; amount positive, on the lot step")
        spread = self.spread_bps * BPS
        if side == "buy":
            price = (m.mid * (ONE + spread)).quantize(m.spec.price_step, rounding=ROUND_CEILING)
            quote_amount = (amount * price).quantize(Decimal("0.01"), rounding=ROUND_CEILING)
        else:
            price = (m.mid * (ONE - spread)).quantize(m.spec.price_step, rounding=ROUND_FLOOR)
            quote_amount = (amount * price).quantize(Decimal("0.01"), rounding=ROUND_FLOOR)
        now = int(time.time() * 1000)
        q = Quote(secrets.token_hex(12), symbol, side, amount, price, quote_amount, now + self.ttl_ms)
        self.quotes[q.id] = q
        return web.json_response(
            {"quote_id": q.id, "symbol": symbol, "side": side, "amount": str(amount), "price": str(price),
             "quote_amount": str(quote_amount), "expires_at": _iso(q.expires_ms), "ttl_ms": self.ttl_ms}
        )  # fmt: skip

    async def accept(self, request: web.Request) -> web.StreamResponse:
        if (denied := self.auth(request)) is not None:
            return denied
        q = self.quotes.get(request.match_info["quote_id"])
        if q is None:
            return _err(404, "quote_not_found")
        body = await request.json() if request.can_read_body else {}
        client_id = str(body.get("client_id") or q.id)
        if q.trade_id is not None:
            t = self.trades[q.trade_id]
            if t.client_id == client_id:
                return web.json_response(self.trade_json(t))
            return _err(409, "quote_already_accepted")
        now = int(time.time() * 1000)
        if now > q.expires_ms:
            return _err(410, "quote_expired", f"quote expired at {_iso(q.expires_ms)}")
        base, quote = self.venue.specs[q.symbol].base, self.venue.specs[q.symbol].quote
        pay_asset, pay = (quote, q.quote_amount) if q.side == "buy" else (base, q.amount)
        if self.venue.free.get(pay_asset, Decimal(0)) < pay:
            return _err(422, "insufficient_balance", f"not enough {pay_asset} at the desk")
        t = Trade(secrets.token_hex(12), q.id, client_id, q.symbol, q.side, q.amount, q.price, q.quote_amount,
                  "accepted", now)  # fmt: skip
        self.trades[t.id] = t
        q.trade_id = t.id
        hang = request.app[STATE_KEY].faults.take("timeout_after_accept", request.path)
        return await after_accept(request, web.json_response(self.trade_json(t)), hang)

    async def settle(self, request: web.Request) -> web.Response:
        if (denied := self.auth(request)) is not None:
            return denied
        t = self.trades.get(request.match_info["trade_id"])
        if t is None:
            return _err(404, "trade_not_found")
        if t.status == "accepted":
            spec = self.venue.specs[t.symbol]
            v = self.venue
            try:
                if t.side == "buy":
                    v._debit(spec.quote, t.quote_amount)
                    v._credit(spec.base, t.amount)
                else:
                    v._debit(spec.base, t.amount)
                    v._credit(spec.quote, t.quote_amount)
            except VenueReject:
                return _err(422, "insufficient_balance")
            t.status = "settled"
            t.settled_ms = int(time.time() * 1000)
        return web.json_response(self.trade_json(t))

    async def get_trade(self, request: web.Request) -> web.Response:
        if (denied := self.auth(request)) is not None:
            return denied
        t = self.trades.get(request.match_info["trade_id"])
        if t is None:
            return _err(404, "trade_not_found")
        return web.json_response(self.trade_json(t))

    async def list_trades(self, request: web.Request) -> web.Response:
        if (denied := self.auth(request)) is not None:
            return denied
        cid = request.query.get("client_id")
        return web.json_response(
            {
                "trades": [
                    self.trade_json(t) for t in self.trades.values() if cid is None or t.client_id == cid
                ]
            }
        )

    async def balances(self, request: web.Request) -> web.Response:
        if (denied := self.auth(request)) is not None:
            return denied
        v = self.venue
        return web.json_response({a: fmt(v.free[a]) for a in sorted(v.free)})

    async def control(self, request: web.Request) -> web.Response:
        body = await request.json()
        if "ttl_ms" in body:
            self.ttl_ms = int(body["ttl_ms"])
        if "spread_bps" in body:
            self.spread_bps = d(body["spread_bps"])
        if body.get("reset"):
            self.reset()
        return web.json_response({"ttl_ms": self.ttl_ms, "spread_bps": str(self.spread_bps)})


def create_app(venue: Venue | None = None, *, api_key: str | None = None, seed: int = 0) -> web.Application:
    """The OTC desk sandbox. The key defaults to OTC_API_KEY, then to config.settings' dev value."""
    from config.settings import DEV_SECRETS

    venue = venue or Venue(default_config(), seed=seed)
    api_key = api_key or os.environ.get("OTC_API_KEY") or DEV_SECRETS["otc_api_key"]
    o = OtcApp(venue, api_key)
    middleware = fault_middleware(
        rate_limited=lambda: _err(429, "rate_limited"),
        banned=lambda: _err(429, "rate_limited", "temporarily banned"),
        maintenance=lambda: _err(503, "maintenance", "desk closed for maintenance"),
    )
    app = web.Application(middlewares=[middleware])
    app[STATE_KEY] = VenueState(venue)
    app.router.add_post("/v1/quotes", o.create_quote)
    app.router.add_post("/v1/quotes/{quote_id}/accept", o.accept)
    app.router.add_post("/v1/trades/{trade_id}/settle", o.settle)
    app.router.add_get("/v1/trades/{trade_id}", o.get_trade)
    app.router.add_get("/v1/trades", o.list_trades)
    app.router.add_get("/v1/balances", o.balances)
    app.router.add_post("/_control/otc", o.control)

    control_routes(app)
    # Resetting the venue also forgets the desk's quotes and trades.
    original_reset = venue.reset

    def reset_all() -> None:
        original_reset()
        o.reset()

    venue.reset = reset_all  # type: ignore[method-assign]
    return app
