"""The customer's view of their orders: one order, a page of them, and its best-execution record.

The order row is the source of truth for reads: the saga writes it at every step (status, fills, fee, the
router's best-execution record). Another customer's order is `OrderNotFound`, never "forbidden": we never
confirm that it exists. Amounts are strings at their asset's scale (`models.money`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from models.api import OrderLinks, OrderOut, OrderPage
from models.market import BestExecutionRecord, OrderType, Side, TimeInForce, split_symbol
from models.money import money, money_or_none, plain
from models.order_flow import OrderStatus
from services import order_reasons
from services.errors import DomainError
from services.orders.prices import ZERO
from services.pagination import fetch_page

ORDER_COLUMNS = (
    "id, user_id, symbol, side, type, time_in_force, price, amount, quote_amount, max_slippage, expires_at, "
    "status, reject_reason, filled_amount, filled_quote_amount, average_fill_price, total_fee, fee_currency, "
    "routed_to_provider, created_at, updated_at"
)
ORDERS_PATH = "/api/v1/orders"


class OrderNotFound(DomainError):
    """No such order among the customer's own. Check the id."""

    default_code = "order_not_found"
    status = 404


class ExecutionNotAvailable(DomainError):
    """The order has no best-execution record yet (it has not been routed). Ask again later."""

    default_code = "execution_not_available"
    status = 404


def order_out(row: Mapping[str, Any]) -> OrderOut:
    """The API view of an `orders` row: amounts at their asset's scale, prices at the quote currency's."""
    order_id = row["id"]
    path = f"{ORDERS_PATH}/{order_id}"
    base, quote = split_symbol(row["symbol"])
    fee_currency = row["fee_currency"] or quote
    slippage = row["max_slippage"]
    return OrderOut(
        id=order_id,
        status=OrderStatus(row["status"]),
        symbol=row["symbol"],
        side=Side(row["side"]),
        type=OrderType(row["type"]),
        time_in_force=TimeInForce(row["time_in_force"]),
        amount=money_or_none(row["amount"], base),
        quote_amount=money_or_none(row["quote_amount"], quote),
        price=money_or_none(row["price"], quote),
        max_slippage=None if slippage is None else plain(slippage),
        expires_at=row["expires_at"],
        filled_amount=money(row["filled_amount"] or ZERO, base),
        filled_quote_amount=money(row["filled_quote_amount"] or ZERO, quote),
        average_price=money_or_none(row["average_fill_price"], quote),
        fee=money(row["total_fee"] or ZERO, fee_currency),
        fee_currency=fee_currency,
        venues=[v for v in (row["routed_to_provider"] or "").split(",") if v],
        reason=row["reject_reason"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        links=OrderLinks(self=path, execution=f"{path}/execution", cancel=f"{path}/cancel"),
    )


async def order_row(*, engine: AsyncEngine, user_id: uuid.UUID, order_id: uuid.UUID) -> dict[str, Any]:
    """The customer's own order row; `OrderNotFound` otherwise (also when it is someone else's)."""
    async with engine.connect() as conn:
        row = (
            (
                await conn.execute(
                    text(f"SELECT {ORDER_COLUMNS} FROM orders WHERE id = :id AND user_id = :u"),
                    {"id": order_id, "u": user_id},
                )
            )
            .mappings()
            .first()
        )
    if row is None:
        raise OrderNotFound("no such order")
    return dict(row)


async def get_order(*, engine: AsyncEngine, user_id: uuid.UUID, order_id: uuid.UUID) -> OrderOut:
    """One of the customer's orders: status, fills, fee and venues."""
    return order_out(await order_row(engine=engine, user_id=user_id, order_id=order_id))


async def list_orders(
    *,
    engine: AsyncEngine,
    user_id: uuid.UUID,
    status: OrderStatus | None = None,
    symbol: str | None = None,
    side: Side | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> OrderPage:
    """The customer's orders, newest first, optionally filtered; `cursor` from the previous page."""
    where = ["user_id = :u"]
    params: dict[str, Any] = {"u": user_id}
    if status is not None:
        where.append("status = :status")
        params["status"] = status.value
    if symbol is not None:
        where.append("symbol = :symbol")
        params["symbol"] = symbol
    if side is not None:
        where.append("side = :side")
        params["side"] = side.value
    page, next_cursor = await fetch_page(
        engine,
        select=f"SELECT {ORDER_COLUMNS} FROM orders",
        where=" AND ".join(where),
        params=params,
        limit=limit,
        cursor=cursor,
        position=lambda r: (r.created_at, r.id),
    )
    return OrderPage(orders=[order_out(dict(r._mapping)) for r in page], next_cursor=next_cursor)


async def execution_record(
    *, engine: AsyncEngine, user_id: uuid.UUID, order_id: uuid.UUID
) -> BestExecutionRecord:
    """The order's best-execution record as the customer sees it: the numbers and our words; the
    venues' own text stays in the stored record for staff (`order_reasons.public_record`)."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT execution_record FROM orders WHERE id = :id AND user_id = :u"),
                {"id": order_id, "u": user_id},
            )
        ).first()
    if row is None:
        raise OrderNotFound("no such order")
    if row[0] is None:
        raise ExecutionNotAvailable("the order has not been routed (yet)")
    return order_reasons.public_record(BestExecutionRecord.model_validate(row[0]))
