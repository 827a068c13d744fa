"""The order saga's database steps on `orders`, `provider_fills` and `trades`.

Each takes the connection of the activity's transaction, so a step and its ledger posting commit together.
"""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from models.assets import Direction, round_for_house
from models.market import Side, VenueOrder, split_symbol
from models.order_flow import FINAL_STATUSES, OrderRequest, OrderStatus, Reservation
from services.orders.errors import FillConflict, OrderRejected
from services.orders.prices import ZERO, floor_price
from services.orders.settlement import Increment


def _json(value: Any) -> str:
    return json.dumps(value, default=str)


async def insert_order(conn: AsyncConnection, req: OrderRequest) -> tuple[OrderStatus, int, str]:
    """Create the order row once; return (status, the customer's KYC tier, the customer's status)."""
    user = (
        await conn.execute(text("SELECT kyc_tier, status FROM users WHERE id = :u"), {"u": req.user_id})
    ).first()
    if user is None:
        raise OrderRejected("unknown_customer", "no such customer")
    inserted = await conn.execute(
        text(
            "INSERT INTO orders (id, user_id, symbol, side, type, time_in_force, price, amount, "
            "quote_amount, max_slippage, expires_at, status) "
            "VALUES (:id, :u, :sym, :side, :type, :tif, :price, :amount, "
            ":qa, :slip, :exp, 'PENDING') ON CONFLICT (id) DO NOTHING RETURNING status"
        ),
        {
            "id": req.order_id,
            "u": req.user_id,
            "sym": req.symbol,
            "side": req.side.value,
            "type": req.type.value,
            "tif": req.time_in_force.value,
            "price": req.price,
            "amount": req.amount,
            "qa": req.quote_amount,
            "slip": req.max_slippage,
            "exp": req.expires_at,
        },
    )
    status = inserted.scalar_one_or_none()
    if status is None:  # recorded before (a replay): its status now, which later steps may have moved on
        status = (
            await conn.execute(text("SELECT status FROM orders WHERE id = :id"), {"id": req.order_id})
        ).scalar_one()
    return OrderStatus(status), int(user[0]), str(user[1])


async def mark_routed(
    conn: AsyncConnection, *, order_id: uuid.UUID, reservation: Reservation, record: dict[str, Any]
) -> None:
    await conn.execute(
        text(
            "UPDATE orders SET status = CASE WHEN status = 'PENDING' THEN 'ROUTED' ELSE status END, "
            "notional_gbp = :n, hold_id = :h, execution_record = CAST(:rec AS jsonb), "
            "fee_currency = :fc, updated_at = now() WHERE id = :id"
        ),
        {
            "id": order_id,
            "n": reservation.notional_gbp,
            "h": reservation.hold_id,
            "rec": _json(record),
            "fc": None,
        },
    )


async def set_status(
    conn: AsyncConnection,
    order_id: uuid.UUID,
    status: OrderStatus,
    reason: str | None = None,
    record: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        text(
            "UPDATE orders SET status = CAST(:s AS varchar), reject_reason = coalesce(CAST(:r AS varchar), "
            "reject_reason), execution_record = coalesce(CAST(:rec AS jsonb), execution_record), "
            "updated_at = now(), cancelled_at = CASE WHEN CAST(:s AS varchar) IN ('CANCELLED', 'EXPIRED') "
            "THEN now() ELSE cancelled_at END "
            # A finished order's status stands: a late replay (a stalled worker) cannot rewrite it.
            "WHERE id = :id AND status <> ALL(:final)"
        ),
        {
            "id": order_id,
            "final": sorted(s.value for s in FINAL_STATUSES),
            "s": status.value,
            "r": reason,
            "rec": _json(record) if record is not None else None,
        },
    )


async def add_staff_detail(conn: AsyncConnection, order_id: uuid.UUID, detail: str) -> None:
    """Keep the venues' own text with the order's best-execution record, for staff only."""
    await conn.execute(
        text(
            "UPDATE orders SET execution_record = execution_record || "
            "jsonb_build_object('staff_detail', CAST(:d AS text)) "
            "WHERE id = :id AND execution_record IS NOT NULL"
        ),
        {"id": order_id, "d": detail},
    )


async def increments_since_last(
    conn: AsyncConnection, order_id: uuid.UUID, venue_orders: list[VenueOrder]
) -> list[Increment]:
    """Compare each venue order with its provider_fills row (locked) and upsert the new cumulative."""
    out = []
    for vo in venue_orders:
        prev = (
            await conn.execute(
                text(
                    "SELECT amount, quote_amount, fee, our_order_id FROM provider_fills "
                    "WHERE provider = :p AND provider_order_id = :po FOR UPDATE"
                ),
                {"p": vo.provider, "po": vo.provider_order_id},
            )
        ).first()
        if prev is not None and prev[3] != order_id:
            # A venue never reuses an order id; if it seems to, our records or the venue are wrong.
            raise FillConflict(
                f"{vo.provider} order {vo.provider_order_id} is already recorded for order {prev[3]}"
            )
        p_amount, p_quote, p_fee = (prev[0], prev[1], prev[2]) if prev else (ZERO, ZERO, ZERO)
        if vo.filled <= p_amount:
            continue
        avg = floor_price(vo.quote_filled / vo.filled) if vo.filled else ZERO
        params = {
            "id": uuid.uuid5(order_id, f"{vo.provider}:{vo.provider_order_id}"),
            "p": vo.provider,
            "po": vo.provider_order_id,
            "co": vo.client_order_id,
            "o": order_id,
            "sym": vo.symbol,
            "side": vo.side.value,
            "a": vo.filled,
            "pr": avg,
            "q": vo.quote_filled,
            "f": vo.fee,
            "fc": vo.fee_currency,
            "st": vo.status.value,
            "raw": _json(vo.raw),
        }
        await conn.execute(
            text(
                "INSERT INTO provider_fills (id, provider, provider_order_id, client_order_id, our_order_id, "
                "symbol, side, amount, price, quote_amount, fee, fee_currency, status, raw_response, "
                "executed_at) VALUES (:id, :p, :po, :co, :o, :sym, :side, :a, :pr, :q, :f, :fc, :st, "
                "CAST(:raw AS jsonb), now()) ON CONFLICT (provider, provider_order_id) DO UPDATE SET "
                "amount = EXCLUDED.amount, price = EXCLUDED.price, quote_amount = EXCLUDED.quote_amount, "
                "fee = EXCLUDED.fee, status = EXCLUDED.status, raw_response = EXCLUDED.raw_response, "
                "executed_at = now()"
            ),
            params,
        )
        out.append(
            Increment(
                provider=vo.provider,
                provider_order_id=vo.provider_order_id,
                client_order_id=vo.client_order_id,
                cumulative_amount=vo.filled,
                cumulative_quote=vo.quote_filled,
                cumulative_fee=vo.fee,
                amount=vo.filled - p_amount,
                quote=vo.quote_filled - p_quote,
                fee=max(vo.fee - p_fee, ZERO),
                fee_currency=vo.fee_currency,
                raw=vo.raw,
                status=vo.status.value,
            )
        )
    return out


async def record_trades(
    conn: AsyncConnection,
    *,
    order_id: uuid.UUID,
    user_id: uuid.UUID,
    symbol: str,
    side: Side,
    increments: list[Increment],
    fee_rate: Decimal,
) -> None:
    _, quote = split_symbol(symbol)
    for inc in increments:
        if inc.amount <= 0:
            continue
        fee_c = round_for_house(quote, inc.quote * fee_rate, Direction.CUSTOMER_PAYS)
        await conn.execute(
            text(
                "INSERT INTO trades (id, order_id, user_id, symbol, side, amount, price, fee, fee_currency, "
                "provider, provider_trade_id) VALUES (:id, :o, :u, :sym, :side, :a, :p, :f, :fc, :prov, :pt) "
                "ON CONFLICT (id) DO NOTHING"
            ),
            {
                "id": uuid.uuid5(order_id, f"{inc.provider}:{inc.provider_order_id}:{inc.cumulative_amount}"),
                "o": order_id,
                "u": user_id,
                "sym": symbol,
                "side": side.value,
                "a": inc.amount,
                "p": floor_price(inc.quote / inc.amount),
                "f": fee_c,
                "fc": quote,
                "prov": inc.provider,
                "pt": inc.provider_order_id,
            },
        )


async def refresh_totals(
    conn: AsyncConnection, order_id: uuid.UUID, status: OrderStatus | None, reason: str | None
) -> tuple[OrderStatus, Decimal, Decimal, Decimal | None, Decimal]:
    """Recompute the order's filled amount, average price and fee from its fills and trades.

    Two round trips: one read of the fills (sums and venue orders) and the trades' fees, one update
    returning the status the order has now (settlement runs once per fill and order: issue 19)."""
    filled, quote, venues, venue_order_ids, fee = (
        await conn.execute(
            text(
                "SELECT coalesce(sum(amount), 0), coalesce(sum(quote_amount), 0), "
                "array_agg(provider ORDER BY provider), array_agg(provider_order_id ORDER BY provider), "
                "(SELECT coalesce(sum(fee), 0) FROM trades WHERE order_id = :o) "
                "FROM provider_fills WHERE our_order_id = :o"
            ),
            {"o": order_id},
        )
    ).one()
    avg = floor_price(quote / filled) if filled else None
    providers = list(zip(venues or [], venue_order_ids or [], strict=True))
    current = await conn.execute(
        text(
            "UPDATE orders SET filled_amount = :f, filled_quote_amount = :q, average_fill_price = :avg, "
            "total_fee = :fee, status = coalesce(CAST(:s AS varchar), status), "
            "reject_reason = coalesce(CAST(:r AS varchar), reject_reason), "
            "routed_to_provider = :prov, provider_order_id = :poid, updated_at = now(), "
            "filled_at = CASE WHEN CAST(:s AS varchar) = 'FILLED' THEN now() ELSE filled_at END, "
            "cancelled_at = CASE WHEN CAST(:s AS varchar) IN ('CANCELLED', 'EXPIRED') "
            "THEN now() ELSE cancelled_at END "
            "WHERE id = :o RETURNING status"
        ),
        {
            "o": order_id,
            "f": filled,
            "q": quote,
            "avg": avg,
            "fee": fee,
            "s": status.value if status else None,
            "r": reason,
            "prov": ",".join(sorted({p[0] for p in providers})) or None,
            "poid": ",".join(p[1] for p in providers) or None,
        },
    )
    return OrderStatus(current.scalar_one()), filled, quote, avg, fee


async def clear_attention(conn: AsyncConnection, order_id: uuid.UUID) -> None:
    """The venue has shown an order that was in NEEDS_ATTENTION: back to ROUTED, reason cleared."""
    await conn.execute(
        text(
            "UPDATE orders SET status = 'ROUTED', reject_reason = NULL, updated_at = now() "
            "WHERE id = :id AND status = 'NEEDS_ATTENTION'"
        ),
        {"id": order_id},
    )
