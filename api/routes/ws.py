"""`/api/v1/ws`: a customer's live feed (docs/architecture.md §B): price ticks, their order status changes,
balance changes and trade notifications, as JSON text frames.

Authentication: the access token as the first message `{"type": "auth", "token": "…"}` within 5 s. A
token in the URL (`?token=…`) is refused: URLs end up in proxy, server and browser logs. A missing,
bad, expired or revoked token closes the socket with code 4401; the session is checked again every
30 s, so logout or revocation ends the feed too.

Messages (every amount a string):
    {"type": "welcome", "user_id": …}
    {"type": "price", "symbol", "bid", "bid_venue", "ask", "ask_venue"}     every second per symbol
    {"type": "order", "order": <the GET /orders/{id} body>}                 when status or fills change
    {"type": "balance", "currency", "balance", "available", "reserved"}     when an account changes
    {"type": "trade", "trade": {id, order_id, symbol, side, amount, price, fee, fee_currency, executed_at}}

Design: each connection polls PostgreSQL every 250 ms for its own customer (orders and trades changed
since a watermark, and the customer's few account rows); prices come from one shared ticker task per
process (`services.market_data.PriceTicker`) over the cached books. Polling the database is simple and
correct across any number of API and worker processes: whoever wrote the change, the row shows it. The
cost is one small indexed query batch per connection every 250 ms; PostgreSQL LISTEN/NOTIFY would
remove it but needs a trigger on orders/accounts/trades and a dedicated connection per process.

A writer's `updated_at` is its transaction's start time, which can be earlier than a commit we have
already looked past; so each poll looks back `OVERLAP` and de-duplicates by what it already sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.websockets import WebSocketState

from api.routes.market import MarketState
from models.market import split_symbol
from models.money import money, money_or_none
from services.auth import AuthConfig, AuthError
from services.auth import sessions as auth_sessions
from services.market_data import BestPrice
from services.orders.views import ORDER_COLUMNS, order_out

log = logging.getLogger("api.ws")

router = APIRouter(tags=["websocket"])

POLL_S = 0.25
RECHECK_AUTH_S = 30.0
AUTH_TIMEOUT_S = 5.0
OVERLAP = timedelta(seconds=5)
CLOSE_UNAUTHORIZED = 4401


async def _authenticate(websocket: WebSocket, token: str) -> uuid.UUID | None:
    sessions: async_sessionmaker[AsyncSession] = websocket.app.state.sessions
    cfg: AuthConfig = websocket.app.state.auth
    try:
        async with sessions() as session:
            user, _ = await auth_sessions.authenticate(session, cfg, token)
    except AuthError:
        return None
    if not user.email_verified:
        return None
    return user.id


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


class CustomerFeed:
    """What changed for one customer since the last poll."""

    def __init__(self, engine: AsyncEngine, user_id: uuid.UUID) -> None:
        self.engine = engine
        self.user_id = user_id
        self.since: datetime | None = None
        self.orders: dict[uuid.UUID, tuple[Any, ...]] = {}
        self.trades: dict[uuid.UUID, datetime] = {}
        self.balances: dict[str, tuple[Decimal, Decimal, Decimal]] = {}

    async def poll(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        async with self.engine.connect() as conn:
            now = (await conn.execute(text("SELECT now()"))).scalar_one()
            first = self.since is None
            since = (self.since or now) - OVERLAP
            orders = (
                (
                    await conn.execute(
                        text(
                            f"SELECT {ORDER_COLUMNS} FROM orders WHERE user_id = :u AND updated_at > :since "
                            "ORDER BY updated_at"
                        ),
                        {"u": self.user_id, "since": since},
                    )
                )
                .mappings()
                .all()
            )
            trades = (
                (
                    await conn.execute(
                        text(
                            "SELECT id, order_id, symbol, side, amount, price, fee, fee_currency, "
                            "executed_at FROM trades WHERE user_id = :u AND executed_at > :since "
                            "ORDER BY executed_at"
                        ),
                        {"u": self.user_id, "since": since},
                    )
                )
                .mappings()
                .all()
            )
            accounts = (
                await conn.execute(
                    text(
                        "SELECT currency, balance, available_balance, reserved_balance FROM accounts "
                        "WHERE kind = 'customer' AND user_id = :u"
                    ),
                    {"u": self.user_id},
                )
            ).all()
        self.since = now
        for row in orders:
            state = (row["status"], row["filled_amount"], row["total_fee"], row["updated_at"])
            if self.orders.get(row["id"]) != state:
                self.orders[row["id"]] = state
                if not first:  # the snapshot on connect is the balances; orders are news from now on
                    out.append({"type": "order", "order": order_out(dict(row)).model_dump(mode="json")})
        for t in trades:
            if t["id"] in self.trades:
                continue
            self.trades[t["id"]] = t["executed_at"]
            if not first:
                out.append(
                    {
                        "type": "trade",
                        "trade": {
                            "id": str(t["id"]),
                            "order_id": str(t["order_id"]),
                            "symbol": t["symbol"],
                            "side": t["side"],
                            "amount": money(t["amount"], split_symbol(t["symbol"])[0]),
                            "price": money(t["price"], split_symbol(t["symbol"])[1]),
                            "fee": money(t["fee"], t["fee_currency"]),
                            "fee_currency": t["fee_currency"],
                            "executed_at": t["executed_at"].isoformat(),
                        },
                    }
                )
        for currency, balance, available, reserved in accounts:
            if self.balances.get(currency) != (balance, available, reserved):
                self.balances[currency] = (balance, available, reserved)
                out.append(
                    {
                        "type": "balance",
                        "currency": currency,
                        "balance": money(balance, currency),
                        "available": money(available, currency),
                        "reserved": money(reserved, currency),
                    }
                )
        self._forget_old(now - 2 * OVERLAP)
        return out

    def _forget_old(self, before: datetime) -> None:
        """Keep only what the next look-back can still return, so memory stays flat on long connections."""
        self.orders = {k: v for k, v in self.orders.items() if v[3] >= before}
        self.trades = {k: v for k, v in self.trades.items() if v >= before}


def price_message(p: BestPrice) -> dict[str, Any]:
    return {
        "type": "price",
        "symbol": p.symbol,
        "bid": money_or_none(p.bid, split_symbol(p.symbol)[1]),
        "bid_venue": p.bid_venue,
        "ask": money_or_none(p.ask, split_symbol(p.symbol)[1]),
        "ask_venue": p.ask_venue,
    }


@router.websocket("/ws")
async def feed(websocket: WebSocket) -> None:
    """Live prices, order status changes, balance changes and trades for the authenticated customer."""
    await websocket.accept()
    if "token" in websocket.query_params:
        await websocket.close(
            code=CLOSE_UNAUTHORIZED, reason="send the token as the first message, never in the URL"
        )
        return
    token = await _first_message_token(websocket)
    user_id = await _authenticate(websocket, token) if token else None
    if user_id is None:
        await websocket.close(code=CLOSE_UNAUTHORIZED, reason="invalid or missing access token")
        return
    await websocket.send_json({"type": "welcome", "user_id": str(user_id)})
    market: MarketState = websocket.app.state.market
    ticker = market.ticker()
    prices = ticker.subscribe()
    engine: AsyncEngine = websocket.app.state.engine
    sender_lock = asyncio.Lock()

    async def send(message: dict[str, Any]) -> None:
        async with sender_lock:
            await websocket.send_json(message)

    async def push_prices() -> None:
        while True:
            await send(price_message(await prices.get()))

    async def push_changes() -> None:
        feed = CustomerFeed(engine, user_id)
        loop = asyncio.get_running_loop()
        recheck_at = loop.time() + RECHECK_AUTH_S
        while True:
            for message in await feed.poll():
                await send(message)
            if loop.time() >= recheck_at:
                recheck_at = loop.time() + RECHECK_AUTH_S
                assert token is not None
                if await _authenticate(websocket, token) is None:
                    return  # the session ended: close below
            await asyncio.sleep(POLL_S)

    async def read_client() -> None:
        while True:  # the client has nothing to say after auth; reading notices when it goes away
            await websocket.receive_text()

    tasks = [asyncio.create_task(c()) for c in (push_prices, push_changes, read_client)]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        session_ended = any(t is tasks[1] and not t.cancelled() and t.exception() is None for t in done)
        for t in done:
            if (
                not t.cancelled()
                and t.exception() is not None
                and not isinstance(t.exception(), WebSocketDisconnect | RuntimeError)
            ):
                log.warning("websocket feed for %s stopped: %r", user_id, t.exception())
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        ticker.unsubscribe(prices)
    if websocket.client_state is WebSocketState.CONNECTED:
        with contextlib.suppress(Exception):
            await websocket.close(
                code=CLOSE_UNAUTHORIZED if session_ended else 1011,
                reason="session ended" if session_ended else "feed stopped",
            )
