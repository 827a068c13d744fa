"""Customer requests that start or steer an order saga: place (`POST /orders`) and cancel.

Placing, in order: the body is checked exactly as the saga will check it (a refusal names the field and
writes nothing); with an `Idempotency-Key` the order id is derived from (customer, key, request) and the key
is claimed (`services.idempotency`), so a retry after a crash re-finds the same saga instead of trading
twice; the order is valued from the cached books and, above the trade threshold (£10k by default), the
second factor is asked for; the order row is recorded, then its saga started. If the start fails, the row
is deleted again only when the saga is known not to exist (compensation), and the key is released so the
customer can retry with it. The answer (202, the order as recorded) is stored under the key.

The saga itself is behind `OrderSagas` (Temporal's side is `temporal/order_sagas.py`): nothing here knows
Temporal or HTTP.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from models.api import OrderCreate, OrderOut
from models.market import OrderType, Side
from models.order_flow import CancelRequest, OrderRequest, OrderStatus
from services import first_trade_gates, idempotency
from services.errors import DomainError
from services.orders.errors import OrderRejected
from services.orders.store import insert_order
from services.orders.validation import fill_value, validate
from services.orders.views import ORDERS_PATH, get_order, order_out, order_row

log = logging.getLogger("services.orders.intake")
RETRY_AFTER_S = 5
PLACED_STATUS = 202


class SagaUnreachable(DomainError):
    """The order saga could not be started or signalled (Temporal unreachable). Nothing changed: retry
    the same request (with the same Idempotency-Key)."""

    default_code = "temporal_unavailable"
    status = 503

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(RETRY_AFTER_S)}


class PriceUnavailable(DomainError):
    """No venue quotes the market now, so the order cannot be valued for the second-factor threshold.
    Retry shortly."""

    default_code = "price_unavailable"
    status = 503

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(RETRY_AFTER_S)}


class OrderFinal(DomainError):
    """The order has already finished; there is nothing left to cancel."""

    default_code = "order_final"
    status = 409


class OrderSagas(Protocol):
    """The order saga, as far as the intake needs it."""

    async def start(self, req: OrderRequest, *, notional_gbp: Decimal) -> None:
        """Start the order's saga; one already started for this order id counts as started."""

    async def exists(self, order_id: uuid.UUID) -> bool | None:
        """Whether the order's saga exists; None when that cannot be told now."""

    async def cancel(self, order_id: uuid.UUID, request: CancelRequest) -> bool:
        """Ask the saga to cancel; False when it has already finished. Raises `SagaUnreachable`."""


class ReferencePrices(Protocol):
    async def reference_price(self, symbol: str, side: Side) -> Decimal | None:
        """The touch a market order of `side` meets now (cached books), or None."""


@dataclass(frozen=True)
class PlacedOrder:
    """The answer to a placement: the order as recorded (JSON), or the first answer replayed."""

    body: dict[str, Any]
    status: int = PLACED_STATUS
    replayed: bool = False
    headers: dict[str, str] = field(default_factory=dict)


def order_request(
    order: OrderCreate, *, order_id: uuid.UUID, user_id: uuid.UUID, now: datetime
) -> OrderRequest:
    """The saga's input, checked exactly as the saga will check it; a refusal names the body field."""

    def dec(value: str | None) -> Decimal | None:
        return Decimal(value) if value is not None else None

    req = OrderRequest(
        order_id=order_id,
        user_id=user_id,
        symbol=order.symbol,
        side=order.side,
        type=order.type,
        amount=dec(order.amount),
        quote_amount=dec(order.quote_amount),
        price=dec(order.price),
        max_slippage=dec(order.max_slippage),
        time_in_force=order.time_in_force,
        expires_at=order.expires_at,
        created_by=user_id,
    )
    try:
        validate(req)
    except OrderRejected as e:
        raise OrderRejected(e.code, e.reason, field=f"body.{e.field or 'amount'}") from e
    if order.expires_at is not None:
        if order.type is not OrderType.LIMIT:
            raise OrderRejected("invalid_expiry", "only limit orders can expire", field="body.expires_at")
        if order.expires_at <= now:
            raise OrderRejected("invalid_expiry", "expires_at must be in the future", field="body.expires_at")
    if order.max_slippage is not None and order.type is OrderType.LIMIT:
        raise OrderRejected(
            "invalid_slippage",
            "a limit order's price is its guard; omit max_slippage",
            field="body.max_slippage",
        )
    return req


async def estimate_notional(req: OrderRequest, prices: ReferencePrices) -> Decimal:
    """The order's size in GBP for the second-factor threshold: what it can really trade for
    (`fill_value`: a limit sell below the bids is worth what the bids pay), from the cached books."""
    value = fill_value(req, None)
    if value is not None:
        return value
    value = fill_value(req, await prices.reference_price(req.symbol, req.side))
    if value is None:
        raise PriceUnavailable("no venue is quoting this market now; try again shortly")
    return value


async def place_order(
    *,
    engine: AsyncEngine,
    sagas: OrderSagas,
    prices: ReferencePrices,
    order: OrderCreate,
    user_id: uuid.UUID,
    idempotency_key: str | None,
    second_factor_above_gbp: Decimal,
    confirm_second_factor: Callable[[], Awaitable[None]],
    first_trade_gates_enforced: bool = True,
) -> PlacedOrder:
    """Record the order and start its saga (module docstring); the order as recorded, or the replay.

    A closed FCA first-trade gate is refused at once (403 naming the gate) before anything is written; the
    saga's accept step checks the gates again."""
    if first_trade_gates_enforced:
        async with engine.connect() as conn:
            await first_trade_gates.enforce(conn, user_id)
    request_hash = idempotency.fingerprint(
        "POST", ORDERS_PATH, order.model_dump(mode="json", exclude_none=True)
    )
    order_id = idempotency.business_id(user_id, idempotency_key, request_hash)
    req = order_request(order, order_id=order_id, user_id=user_id, now=datetime.now(UTC))

    async def place() -> dict[str, Any]:
        notional = await estimate_notional(req, prices)
        if notional > second_factor_above_gbp:
            await confirm_second_factor()
        await _start(engine, sagas, req, notional)
        placed = await get_order(engine=engine, user_id=user_id, order_id=order_id)
        return placed.model_dump(mode="json")

    answer = await idempotency.answer_once(
        engine,
        user_id=user_id,
        key=idempotency_key,
        method="POST",
        path=ORDERS_PATH,
        request_hash=request_hash,
        status=PLACED_STATUS,
        act=place,
    )
    if answer.replayed:
        return PlacedOrder(answer.body, answer.status, replayed=True, headers={"Idempotent-Replayed": "true"})
    return PlacedOrder(answer.body, headers={"Location": answer.body["links"]["self"]})


async def _start(engine: AsyncEngine, sagas: OrderSagas, req: OrderRequest, notional: Decimal) -> None:
    """Record the order row, then start its saga: the row exists before the 202, so it can be read at once."""
    async with engine.begin() as conn:
        await insert_order(conn, req)
    try:
        await sagas.start(req, notional_gbp=notional)
    except Exception as e:
        log.warning(
            json.dumps({"event": "order.start_failed", "order_id": str(req.order_id), "error": repr(e)})
        )
        await _forget_unless_started(engine, sagas, req.order_id)
        raise SagaUnreachable("the order could not be started; try again") from e


async def _forget_unless_started(engine: AsyncEngine, sagas: OrderSagas, order_id: uuid.UUID) -> None:
    """Delete the row of an order whose start failed, when the saga is known not to exist.

    If that can't be told (Temporal unreachable), the PENDING row stays: it counts against no limit and
    holds nothing, and a retry with the same Idempotency-Key completes it."""
    if await sagas.exists(order_id) is not False:
        return
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM orders WHERE id = :id AND status = 'PENDING'"), {"id": order_id})


async def cancel_order(
    *, engine: AsyncEngine, sagas: OrderSagas, user_id: uuid.UUID, order_id: uuid.UUID, reason: str
) -> OrderOut:
    """Ask the saga to cancel an open order (it cancels at the venue and releases the funds)."""
    row = await order_row(engine=engine, user_id=user_id, order_id=order_id)
    if OrderStatus(row["status"]).final:
        raise OrderFinal(f"the order is already {row['status']}")
    if not await sagas.cancel(order_id, CancelRequest(reason=reason, requested_by=user_id)):
        raise OrderFinal("the order has already finished")
    return order_out(row)
