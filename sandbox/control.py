"""Fault injection and the `/_control` API shared by the exchange sandboxes.

Faults are how tests make a venue misbehave the way real ones do. Each is a small record: a kind,
how many more times it fires (`count`, None for "until cleared") and which request paths it
applies to (`paths`: substrings; None for all). Kinds:

- `latency` (`latency_ms`): the request is acted on when it arrives; its answer is sent `latency_ms` late.
- `http_error` (`status`, default 502): an HTML error page from the "load balancer", as venues' edges send.
- `rate_limit` (`ban_after`, `ban_seconds`): 429 answers; after `ban_after` of them the key is banned
  and every request is refused (Binance: HTTP 418) for `ban_seconds`.
- `maintenance`: the venue's "down for maintenance" answer.
- `timeout_after_accept` (`mode`: "hang" with `hang_ms`, or "drop"): the order (or Binance withdrawal) IS
  created, then the response never arrives in time (or the connection is closed).
- `partial_fill` (`ratio`): orders fill at most this fraction of their amount; the rest expires (IOC)
  or stays open (GTC).
- `not_found_lag` (`lookups`): the first `lookups` lookups of each new order answer "unknown order";
  on a withdrawal request (paths e.g. `["withdraw"]`), the next `lookups` withdrawal-history reads leave
  that withdrawal out, as a lagging history does.
- `insufficient_balance`: order placement and withdrawals are refused for lack of funds.
- `withdrawal_fail`: a crypto withdrawal is accepted (the venue answers with its id), then fails on the
  venue's side: its history shows Failure (Binance status 5, Kraken "Failure") and the funds come back.

The control API (`/_control/...`, JSON with string amounts) also resets the venue, sets balances,
books, prices and fees, credits deposits and lists every order, so tests can assert "exactly one
order at the venue". `POST /_control/deposits {"asset", "amount", "confirmations"?, "tx_id"?, "address"?}`
pays into `address` (one the venue handed out for that asset; default the account's first), else 400.
Reusing a `tx_id` makes another output of the same chain transaction (one payout paying two of our
customers' addresses), listed as its own record in the deposit history, as the venues do. Assets the
broker does not list (`VenueConfig.custody_only_assets`, e.g. USDT) can be deposited too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from sandbox.market import Venue, VenueReject, d

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

FAULT_KINDS = frozenset(
    {
        "latency",
        "http_error",
        "rate_limit",
        "maintenance",
        "timeout_after_accept",
        "partial_fill",
        "not_found_lag",
        "insufficient_balance",
        "withdrawal_fail",
    }
)


@dataclass
class Fault:
    kind: str
    count: int | None = None
    paths: list[str] | None = None
    latency_ms: int = 0
    status: int = 502
    ban_after: int = 2
    ban_seconds: float = 2.0
    mode: str = "hang"
    hang_ms: int = 30_000
    ratio: str = "0.5"
    lookups: int = 2

    def applies_to(self, path: str) -> bool:
        return self.paths is None or any(p in path for p in self.paths)


@dataclass
class FaultBook:
    faults: list[Fault] = field(default_factory=list)
    rate_limited: int = 0
    banned_until: float = 0.0

    def add(self, spec: dict[str, Any]) -> Fault:
        if spec.get("kind") not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {spec.get('kind')!r}; one of {sorted(FAULT_KINDS)}")
        fault = Fault(**spec)
        self.faults.append(fault)
        return fault

    def clear(self) -> None:
        self.faults.clear()
        self.rate_limited = 0
        self.banned_until = 0.0

    def take(self, kind: str, path: str) -> Fault | None:
        """The first active fault of this kind for this path, counting one occurrence."""
        for fault in self.faults:
            if fault.kind == kind and fault.applies_to(path):
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count <= 0:
                        self.faults.remove(fault)
                return fault
        return None

    def banned(self) -> bool:
        return time.monotonic() < self.banned_until


def take_fault(faults: list[dict[str, Any]], *, default_count: int | None = None) -> dict[str, Any] | None:
    """The first queued fault of a simple (non-venue) sandbox, counted down: it leaves the queue once its
    `count` is spent; without a `count` it uses `default_count` (None: it fires until cleared)."""
    if not faults:
        return None
    fault = faults[0]
    count = fault.get("count", default_count)
    if count is not None:
        fault["count"] = int(count) - 1
        if fault["count"] <= 0:
            faults.pop(0)
    return fault


@dataclass
class CallLog:
    """Every request a venue saw, so tests and humans can check what ccxt actually called."""

    calls: list[str] = field(default_factory=list)

    def add(self, method: str, path: str) -> None:
        self.calls.append(f"{method} {path}")
        if len(self.calls) > 5000:
            del self.calls[:1000]


@dataclass
class VenueState:
    """What one sandbox app holds: the engine, its faults, its call log."""

    venue: Venue
    faults: FaultBook = field(default_factory=FaultBook)
    log: CallLog = field(default_factory=CallLog)


STATE_KEY: web.AppKey[VenueState] = web.AppKey("venue_state", VenueState)


# Per-venue renderers of the protocol-level faults.
Renderer = Callable[[], web.StreamResponse]


def fault_middleware(
    *,
    rate_limited: Renderer,
    banned: Renderer,
    maintenance: Renderer,
) -> Middleware:
    """Applies the request-level faults before the venue's own handler sees the request."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        state = request.app[STATE_KEY]
        path = request.path
        if path.startswith("/_control"):
            return await handler(request)
        state.log.add(request.method, path)
        faults = state.faults
        latency = faults.take("latency", path)
        response = await answer(request, handler, state)
        if latency is not None:
            # The venue acted on the request when it arrived (nonce, order book, order); only the answer
            # is late, as over a slow network, so a client that gives up meanwhile changes nothing.
            await asyncio.sleep(latency.latency_ms / 1000)
        return response

    async def answer(request: web.Request, handler: Handler, state: VenueState) -> web.StreamResponse:
        faults = state.faults
        path = request.path
        if faults.banned():
            return banned()
        if (f := faults.take("rate_limit", path)) is not None:
            faults.rate_limited += 1
            if faults.rate_limited > f.ban_after:
                faults.banned_until = time.monotonic() + f.ban_seconds
                faults.rate_limited = 0
                return banned()
            return rate_limited()
        if faults.take("maintenance", path) is not None:
            return maintenance()
        if (f := faults.take("http_error", path)) is not None:
            return web.Response(
                status=f.status,
                text=f"<html><body><h1>{f.status} Server Error</h1></body></html>",
                content_type="text/html",
            )
        async with state.venue.lock:
            state.venue.tick()
        return await handler(request)

    return middleware


async def after_accept(
    request: web.Request, response: web.StreamResponse, fault: Fault | None
) -> web.StreamResponse:
    """The `timeout_after_accept` fault: the order exists; the client never hears so in time."""
    if fault is None:
        return response
    if fault.mode == "drop":
        if request.transport is not None:
            request.transport.close()
        return response
    await asyncio.sleep(fault.hang_ms / 1000)
    return response


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


def control_routes(app: web.Application) -> None:
    """Mount `/_control/...` on a venue app."""

    def st(request: web.Request) -> VenueState:
        return request.app[STATE_KEY]

    async def reset(request: web.Request) -> web.Response:
        s = st(request)
        async with s.venue.lock:
            s.venue.reset()
            s.faults.clear()
            s.log.calls.clear()
        return _json({"ok": True})

    async def get_faults(request: web.Request) -> web.Response:
        return _json({"faults": [asdict(f) for f in st(request).faults.faults]})

    async def add_faults(request: web.Request) -> web.Response:
        body = await request.json()
        specs = body.get("faults", [body]) if isinstance(body, dict) else body
        try:
            added = [asdict(st(request).faults.add(spec)) for spec in specs]
        except (TypeError, ValueError) as e:
            return _json({"error": str(e)}, 400)
        return _json({"faults": added})

    async def clear_faults(request: web.Request) -> web.Response:
        st(request).faults.clear()
        return _json({"ok": True})

    async def get_balances(request: web.Request) -> web.Response:
        v = st(request).venue
        return _json(
            {a: {"free": str(v.free[a]), "used": str(v.used.get(a, Decimal(0)))} for a in sorted(v.free)}
        )

    async def set_balances(request: web.Request) -> web.Response:
        s = st(request)
        body = await request.json()
        async with s.venue.lock:
            for asset, amount in body.items():
                s.venue.set_balance(asset, d(amount))
        return await get_balances(request)

    async def set_book(request: web.Request) -> web.Response:
        s = st(request)
        body = await request.json()
        async with s.venue.lock:
            try:
                m = s.venue.market(body["symbol"])
            except VenueReject as e:
                return _json({"error": e.message}, 404)
            if body.get("unpin"):
                m.unpin()
            else:
                bids = [(d(p), d(a)) for p, a in body.get("bids", [])]
                asks = [(d(p), d(a)) for p, a in body.get("asks", [])]
                m.set_book(bids, asks, s.venue.now_ms())
            s.venue.tick()
            bids_out, asks_out = s.venue.book_levels(body["symbol"], 1000)
        return _json(
            {"bids": [[str(p), str(a)] for p, a in bids_out], "asks": [[str(p), str(a)] for p, a in asks_out]}
        )

    async def set_price(request: web.Request) -> web.Response:
        s = st(request)
        body = await request.json()
        async with s.venue.lock:
            m = s.venue.market(body["symbol"])
            m.set_mid(d(body["mid"]), s.venue.now_ms())
            s.venue.tick()
        return _json({"symbol": body["symbol"], "mid": str(m.mid)})

    async def walk(request: web.Request) -> web.Response:
        s = st(request)
        body = await request.json()
        async with s.venue.lock:
            if "enabled" in body:
                s.venue.walk = bool(body["enabled"])
            for _ in range(int(body.get("steps", 0))):
                for m in s.venue.markets.values():
                    m.step(s.venue.now_ms())
            s.venue.tick()
        return _json({"enabled": s.venue.walk, "mids": {k: str(m.mid) for k, m in s.venue.markets.items()}})

    async def set_fees(request: web.Request) -> web.Response:
        s = st(request)
        body = await request.json()
        if "taker" in body:
            s.venue.taker_fee = d(body["taker"])
        if "maker" in body:
            s.venue.maker_fee = d(body["maker"])
        return _json({"taker": str(s.venue.taker_fee), "maker": str(s.venue.maker_fee)})

    async def add_deposit(request: web.Request) -> web.Response:
        s = st(request)
        body = await request.json()
        async with s.venue.lock:
            try:
                dep = s.venue.credit_deposit(
                    body["asset"], d(body["amount"]), int(body.get("confirmations", 0)), body.get("tx_id"),
                    address=body.get("address"),
                )  # fmt: skip
            except VenueReject as e:
                return _json({"error": e.kind, "message": str(e)}, 400)
        return _json({"id": dep.id, "tx_id": dep.tx_id, "address": dep.address, "credited": dep.credited})

    async def confirm_deposit(request: web.Request) -> web.Response:
        s = st(request)
        body = await request.json() if request.can_read_body else {}
        async with s.venue.lock:
            try:
                dep = s.venue.confirm_deposit(request.match_info["id"], body.get("confirmations"))
            except KeyError:
                return _json({"error": "unknown deposit"}, 404)
        return _json({"id": dep.id, "confirmations": dep.confirmations, "credited": dep.credited})

    async def orders(request: web.Request) -> web.Response:
        return _json({"orders": st(request).venue.snapshot_orders()})

    async def calls(request: web.Request) -> web.Response:
        return _json({"calls": st(request).log.calls})

    app.router.add_post("/_control/reset", reset)
    app.router.add_get("/_control/faults", get_faults)
    app.router.add_post("/_control/faults", add_faults)
    app.router.add_delete("/_control/faults", clear_faults)
    app.router.add_get("/_control/balances", get_balances)
    app.router.add_post("/_control/balances", set_balances)
    app.router.add_post("/_control/book", set_book)
    app.router.add_post("/_control/price", set_price)
    app.router.add_post("/_control/walk", walk)
    app.router.add_post("/_control/fees", set_fees)
    app.router.add_post("/_control/deposits", add_deposit)
    app.router.add_post("/_control/deposits/{id}/confirm", confirm_deposit)
    app.router.add_get("/_control/orders", orders)
    app.router.add_get("/_control/calls", calls)
