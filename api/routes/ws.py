"""`/api/v1/ws`: a customer's live feed (docs/architecture.md §B): price ticks, their order status changes,
balance changes and trade notifications, as JSON text frames.

Authentication: the access token as the first message `{"type": "auth", "token": "…"}` within 5 s. A
token in the URL (`?token=…`) is refused: URLs end up in proxy, server and browser logs. A missing,
bad, expired or revoked token closes the socket with code 4401; so does, while connected, the token's
expiry, a logout or revocation of its session, or the account being disabled (announced by the database).

Messages (every amount a string):
    {"type": "welcome", "user_id": …}
    {"type": "price", "symbol", "bid", "bid_venue", "ask", "ask_venue"}     every second per symbol
    {"type": "order", "order": <the GET /orders/{id} body>}                 when status or fills change
    {"type": "balance", "currency", "balance", "available", "reserved"}     when an account changes
    {"type": "trade", "trade": {id, order_id, symbol, side, amount, price, fee, fee_currency, executed_at}}
    {"type": "notification", "notification": <an in-app feed item, as GET /notifications lists it>}

Limits (docs/architecture.md §7): a client may send at most `WS_MAX_MESSAGES_PER_SECOND` (100) messages a
second - over it the socket is closed with 1008 (policy violation); a customer may hold at most
`WS_MAX_CONNECTIONS_PER_CUSTOMER` sockets to one API process - one more is closed with 4429 right after
authenticating. A client that stops reading is closed with 1013 (try again later).

Design: orders, balances, trades, feed rows and revocations come from the process's one database listener
(`services.live_updates`, PostgreSQL LISTEN/NOTIFY): no query per connection, except the balance snapshot at
connect. Prices come from one shared ticker task per process (`services.market_data.PriceTicker`) over the
cached books, each tick encoded once and handed to the sockets by the same hub. Each socket has one sender:
its customer's changes go first, and a price tick waiting to be sent is replaced by the next one. The access
token's expiry ends the feed (4401) without asking the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.websockets import WebSocketState

from api.routes.market import MarketState
from config import Settings
from models.market import split_symbol
from models.money import money_or_none
from services.auth import AuthConfig, AuthError
from services.auth import sessions as auth_sessions
from services.auth.context import LOGIN_STATUSES
from services.live_updates import ConnectionLimitReached, LiveUpdates
from services.market_data import BestPrice

log = logging.getLogger("api.ws")

router = APIRouter(tags=["websocket"])

AUTH_TIMEOUT_S = 5.0
CLOSE_UNAUTHORIZED = 4401
CLOSE_TOO_MANY_CONNECTIONS = 4429
CLOSE_POLICY_VIOLATION = 1008
CLOSE_TRY_AGAIN_LATER = 1013


@dataclass(frozen=True)
class Authenticated:
    user_id: uuid.UUID
    session_id: uuid.UUID
    expires_at: float  # the access token's expiry (epoch seconds)


async def _authenticate(websocket: WebSocket, token: str) -> Authenticated | None:
    sessions: async_sessionmaker[AsyncSession] = websocket.app.state.sessions
    cfg: AuthConfig = websocket.app.state.auth
    try:
        async with sessions() as session:
            user, sess = await auth_sessions.authenticate(session, cfg, token)
        claims = cfg.tokens.decode(token, "access")
    except AuthError:
        return None
    if not user.email_verified:
        return None
    return Authenticated(user.id, sess.id, float(claims["exp"]))


async def _first_message_token(websocket: WebSocket) -> str | None:
    try:
        raw = await asyncio.wait_for(websocket.receive_text(), AUTH_TIMEOUT_S)
        message = json.loads(raw)
    except (TimeoutError, ValueError, KeyError, WebSocketDisconnect):
        return None
    if isinstance(message, dict) and message.get("type") == "auth" and isinstance(message.get("token"), str):
        token: str = message["token"]
        return token
    return None


def price_message(p: BestPrice) -> dict[str, Any]:
    return {
        "type": "price",
        "symbol": p.symbol,
        "bid": money_or_none(p.bid, split_symbol(p.symbol)[1]),
        "bid_venue": p.bid_venue,
        "ask": money_or_none(p.ask, split_symbol(p.symbol)[1]),
        "ask_venue": p.ask_venue,
    }


@dataclass
class Closing:
    """How the feed ends: the first reason found wins (1011 if it just stopped)."""

    code: int = 1011
    reason: str = "feed stopped"
    decided: bool = False

    def set(self, code: int, reason: str) -> None:
        if not self.decided:
            self.code, self.reason, self.decided = code, reason, True


_PRICE_FRAMES: dict[int, tuple[BestPrice, str]] = {}


def price_frame(p: BestPrice) -> str:
    """`price_message(p)` encoded once per tick for every socket of the process (the ticker hands the same
    `BestPrice` to all of them), not once per socket."""
    cached = _PRICE_FRAMES.get(id(p))
    if cached is not None and cached[0] is p:
        return cached[1]
    frame = json.dumps(price_message(p), separators=(",", ":"))
    if len(_PRICE_FRAMES) >= 64:
        _PRICE_FRAMES.clear()
    _PRICE_FRAMES[id(p)] = (p, frame)
    return frame


class MessageRate:
    """At most `per_second` client messages in any one-second window (a sliding log of arrival times)."""

    def __init__(self, per_second: int) -> None:
        self.per_second = per_second
        self._times: list[float] = []

    def allow(self, now: float) -> bool:
        self._times = [t for t in self._times if now - t < 1.0]
        self._times.append(now)
        return len(self._times) <= self.per_second


def live_updates(websocket: WebSocket) -> LiveUpdates:
    """The process's listener, built on the first WebSocket (a process with no socket holds no connection)."""
    state = websocket.app.state
    if getattr(state, "live_updates", None) is None:
        settings: Settings = state.settings
        state.live_updates = LiveUpdates(
            state.engine,
            settings.database_url,
            max_connections_per_customer=settings.ws_max_connections_per_customer,
            allowed_statuses=LOGIN_STATUSES,
        )
        market: MarketState = state.market
        state.live_updates.share_prices(market.ticker(), price_frame)
    live: LiveUpdates = state.live_updates
    return live


@router.websocket("/ws")
async def feed(websocket: WebSocket) -> None:
    """Live prices, order status changes, balance changes, trades and in-app notifications."""
    await websocket.accept()
    if "token" in websocket.query_params:
        await websocket.close(
            code=CLOSE_UNAUTHORIZED, reason="send the token as the first message, never in the URL"
        )
        return
    token = await _first_message_token(websocket)
    who = await _authenticate(websocket, token) if token else None
    if who is None:
        await websocket.close(code=CLOSE_UNAUTHORIZED, reason="invalid or missing access token")
        return
    live = live_updates(websocket)
    try:
        sub = await live.subscribe(who.user_id, who.session_id)
    except ConnectionLimitReached:
        await websocket.close(
            code=CLOSE_TOO_MANY_CONNECTIONS, reason="too many connections for this customer"
        )
        return
    except Exception as exc:  # the database is unreachable: the feed could not be kept current
        log.warning("websocket feed for %s not started: %s", who.user_id, type(exc).__name__)
        await websocket.close(code=CLOSE_TRY_AGAIN_LATER, reason="feed unavailable")
        return
    settings: Settings = websocket.app.state.settings
    close = Closing()

    async def push() -> None:  # the socket's one sender: its changes first, then the latest price ticks
        while True:
            await websocket.send_text(await sub.next_frame())

    async def until_ended() -> None:
        reason = await sub.ended
        if reason == "overflow":
            close.set(CLOSE_TRY_AGAIN_LATER, "not reading; reconnect")
        elif reason == "shutdown":
            close.set(1001, "server shutting down")
        else:
            close.set(CLOSE_UNAUTHORIZED, "session ended")

    async def until_token_expires() -> None:
        await asyncio.sleep(max(who.expires_at - time.time(), 0))
        close.set(CLOSE_UNAUTHORIZED, "session ended")

    async def read_client() -> None:
        rate = MessageRate(settings.ws_max_messages_per_second)
        loop = asyncio.get_running_loop()
        while True:  # the client has nothing to say after auth; reading notices when it goes away
            await websocket.receive_text()
            if not rate.allow(loop.time()):
                close.set(CLOSE_POLICY_VIOLATION, "more messages per second than allowed")
                return

    tasks: list[asyncio.Task[None]] = []
    try:
        await websocket.send_text(json.dumps({"type": "welcome", "user_id": str(who.user_id)}))
        tasks = [asyncio.create_task(c()) for c in (push, until_ended, until_token_expires, read_client)]
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            if (
                not t.cancelled()
                and t.exception() is not None
                and not isinstance(t.exception(), WebSocketDisconnect | RuntimeError)
            ):
                log.warning("websocket feed for %s stopped: %r", who.user_id, t.exception())
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        live.unsubscribe(sub)  # also when the client left before its welcome
    if websocket.client_state is WebSocketState.CONNECTED:
        with contextlib.suppress(Exception):
            await websocket.close(code=close.code, reason=close.reason)
