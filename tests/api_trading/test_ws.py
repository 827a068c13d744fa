"""The WebSocket feed over a real socket (uvicorn): authentication and what a customer receives."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tests.api_trading.conftest import Trading


async def _collect(ws: Any, until: Any, timeout: float = 30.0) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while True:
            seen.append(json.loads(await ws.recv()))
            if until(seen):
                return seen


async def _closed_with(ws: Any) -> int:
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


async def test_bad_or_missing_tokens_close_with_4401(trading: Trading, served: str) -> None:
    for first in ({"type": "auth", "token": "forged"}, {"type": "hello"}, "not json"):
        async with websockets.connect(f"ws://{served}/api/v1/ws") as ws:
            await ws.send(first if isinstance(first, str) else json.dumps(first))
            assert await _closed_with(ws) == 4401


async def test_a_token_in_the_url_is_refused_even_when_valid(trading: Trading, served: str) -> None:
    """URLs reach proxy and server logs: a token there is refused, so no client learns to send it."""
    paula = await trading.customer()
    async with websockets.connect(f"ws://{served}/api/v1/ws?token={paula.token}") as ws:
        assert await _closed_with(ws) == 4401


async def test_revoked_session_is_refused(trading: Trading, served: str) -> None:
    nina = await trading.customer()
    assert (await trading.http.post("/api/v1/auth/logout", headers=nina.headers())).status_code in (200, 204)
    async with websockets.connect(f"ws://{served}/api/v1/ws") as ws:
        await ws.send(json.dumps({"type": "auth", "token": nina.token}))
        assert await _closed_with(ws) == 4401


async def test_feed_pushes_prices_order_statuses_trades_and_balances(trading: Trading, served: str) -> None:
    oscar = await trading.customer(gbp="5000")
    async with websockets.connect(f"ws://{served}/api/v1/ws") as ws:
        await ws.send(json.dumps({"type": "auth", "token": oscar.token}))  # first-message authentication
        welcome = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert welcome == {"type": "welcome", "user_id": str(oscar.id)}
        # The snapshot: current balances, then price ticks.
        first = await _collect(
            ws,
            lambda s: any(m["type"] == "price" for m in s) and any(m["type"] == "balance" for m in s),
        )
        assert {"type": "balance", "currency": "GBP", "balance": "5000.00", "available": "5000.00",
                "reserved": "0.00"} in first  # fmt: skip

        body = {"symbol": "BTC-GBP", "side": "BUY", "type": "MARKET", "quote_amount": "1000.00"}
        r = await trading.http.post("/api/v1/orders", json=body, headers=oscar.headers())
        assert r.status_code == 202, r.text
        order_id = r.json()["id"]

        def filled(seen: list[dict[str, Any]]) -> bool:
            return any(m["type"] == "order" and m["order"]["status"] == "FILLED" for m in seen) and any(
                m["type"] == "balance" and m["currency"] == "BTC" for m in seen
            )

        seen = await _collect(ws, filled)
    statuses = [m["order"]["status"] for m in seen if m["type"] == "order"]
    assert all(m["order"]["id"] == order_id for m in seen if m["type"] == "order")
    order = ["PENDING", "ROUTED", "FILLED"]
    assert statuses[-1] == "FILLED" and statuses == sorted(statuses, key=order.index), statuses
    trades = [m["trade"] for m in seen if m["type"] == "trade"]
    assert trades and trades[0]["order_id"] == order_id and trades[0]["symbol"] == "BTC-GBP"
    assert isinstance(trades[0]["amount"], str)
    btc = [m for m in seen if m["type"] == "balance" and m["currency"] == "BTC"][-1]
    assert btc["balance"] == btc["available"] and float(btc["balance"]) > 0
    prices = [m for m in first + seen if m["type"] == "price" and m["symbol"] == "BTC-GBP"]
    assert prices and prices[-1]["bid"] == "67950.00" and prices[-1]["ask"] == "68000.00"


async def test_feed_only_shows_the_customers_own_orders(trading: Trading, served: str) -> None:
    pia = await trading.customer(gbp="5000")
    quinn = await trading.customer(gbp="5000")
    async with websockets.connect(f"ws://{served}/api/v1/ws") as ws:
        await ws.send(json.dumps({"type": "auth", "token": pia.token}))
        await _collect(ws, lambda s: any(m["type"] == "price" for m in s))
        body = {"symbol": "BTC-GBP", "side": "BUY", "type": "MARKET", "quote_amount": "100.00"}
        theirs = (await trading.http.post("/api/v1/orders", json=body, headers=quinn.headers())).json()["id"]
        await trading.wait_order(quinn, theirs)
        mine = (await trading.http.post("/api/v1/orders", json=body, headers=pia.headers())).json()["id"]
        seen = await _collect(
            ws, lambda s: any(m["type"] == "order" and m["order"]["status"] == "FILLED" for m in s)
        )
    assert {m["order"]["id"] for m in seen if m["type"] == "order"} == {mine}
    assert {m["trade"]["order_id"] for m in seen if m["type"] == "trade"} <= {mine}
