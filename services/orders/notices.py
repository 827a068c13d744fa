"""The customer's order notifications (issue 17): filled, partly filled, cancelled with nothing traded, and
"large trade" above `LARGE_TRADE_GBP`. Keyed by order and event, so a retried step enqueues nothing new."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from models.assets import Direction, round_for_house
from models.market import split_symbol
from services.notifications import NotificationEvent, enqueue
from services.notifications.events import LARGE_TRADE_GBP


async def outcome(conn: AsyncConnection, order_id: uuid.UUID, order: Any) -> None:
    """`order`: (user_id, side, symbol, amount, filled_amount, average_fill_price, filled_quote_amount,
    status) of a finished order."""
    user_id, side, symbol, amount, filled, price, filled_quote, status = order
    base, quote = split_symbol(symbol)
    filled = Decimal(filled or 0)
    payload: dict[str, Any] = {"order_id": str(order_id), "side": side, "symbol": symbol, "base": base}
    if filled <= 0:
        if status == "CANCELLED":
            await _enqueue(conn, NotificationEvent.ORDER_CANCELLED, user_id, order_id, payload)
        return
    total = round_for_house(quote, Decimal(filled_quote), Direction.CUSTOMER_PAYS)
    payload.update(quantity=str(filled), price=str(price), total_gbp=str(total))
    if status == "FILLED" or amount is None or filled >= Decimal(amount):
        await _enqueue(conn, NotificationEvent.ORDER_FILLED, user_id, order_id, payload)
    else:
        payload["requested"] = str(amount)
        await _enqueue(conn, NotificationEvent.ORDER_PARTIALLY_FILLED, user_id, order_id, payload)
    if quote == "GBP" and total > LARGE_TRADE_GBP:
        await _enqueue(conn, NotificationEvent.LARGE_TRADE, user_id, order_id, payload)


async def _enqueue(
    conn: AsyncConnection,
    event: NotificationEvent,
    user_id: uuid.UUID,
    order_id: uuid.UUID,
    payload: dict[str, Any],
) -> None:
    await enqueue(
        conn, event=event, user_id=user_id, payload=payload, dedupe_key=f"order:{order_id}:{event.value}"
    )
