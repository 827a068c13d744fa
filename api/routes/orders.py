"""Customer orders (seed §4 step 1): create, read, list, cancel, and the best-execution record.

`POST /orders` validates the order (`services.orders.validate`: a bad order is a 422 naming the field,
and nothing is written), asks for the second factor above the trade threshold (£10k by default, seed §7),
records the order row and starts its `OrderWorkflow`, then answers 202 with the order as recorded; the
saga moves it on (`GET /orders/{id}` or the WebSocket show its progress). With an `Idempotency-Key` the
order id is derived from (customer, key, request), so a retry after a crash re-finds the same workflow
(Temporal refuses a second start of one order id) instead of trading twice; see `api/idempotency.py`.

The order row is the source of truth for reads: the saga writes it at every step (status, fills, fee,
the router's best-execution record). Another customer's order answers 404, never 403.
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api import idempotency
from api.auth_deps import TotpCode, problem_responses, require_totp
from api.deps import EngineDep, SessionDep, SettingsDep, TemporalDep
from api.errors import ProblemError
from api.routes.accounts import Customer
from api.routes.market import MarketDep
from models.api import SYMBOL_PATTERN, CancelBody, ExecutionOut, OrderCreate, OrderLinks, OrderOut, OrderPage
from models.market import BestExecutionRecord, OrderType, Side, TimeInForce, split_symbol
from models.order_flow import CancelRequest, OrderRequest, OrderStatus
from services import first_trade_gates, order_reasons
from services import orders as order_service
from services.market_data import MarketData
from temporal import search_attributes as sa
from temporal import task_queues
from workflows.orders import ID_REUSE_POLICY, OrderWorkflow, workflow_id

log = logging.getLogger("api.orders")

router = APIRouter(tags=["orders"])

ORDER_COLUMNS = (
    "id, user_id, symbol, side, type, time_in_force, price, amount, quote_amount, max_slippage, expires_at, "
    "status, reject_reason, filled_amount, filled_quote_amount, average_fill_price, total_fee, fee_currency, "
    "routed_to_provider, created_at, updated_at"
)
PREFIX = "/api/v1"


def _s(value: Decimal | None) -> str | None:
    return None if value is None else format(value.normalize(), "f")


def order_out(row: Mapping[str, Any]) -> OrderOut:
    """The API view of an `orders` row (amounts as exact strings)."""
    order_id = row["id"]
    base = f"{PREFIX}/orders/{order_id}"
    _, quote = split_symbol(row["symbol"])
    return OrderOut(
        id=order_id,
        status=OrderStatus(row["status"]),
        symbol=row["symbol"],
        side=Side(row["side"]),
        type=OrderType(row["type"]),
        time_in_force=TimeInForce(row["time_in_force"]),
        amount=_s(row["amount"]),
        quote_amount=_s(row["quote_amount"]),
        price=_s(row["price"]),
        max_slippage=_s(row["max_slippage"]),
        expires_at=row["expires_at"],
        filled_amount=_s(row["filled_amount"]) or "0",
        filled_quote_amount=_s(row["filled_quote_amount"]) or "0",
        average_price=_s(row["average_fill_price"]),
        fee=_s(row["total_fee"]) or "0",
        fee_currency=row["fee_currency"] or quote,
        venues=[v for v in (row["routed_to_provider"] or "").split(",") if v],
        reason=row["reject_reason"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        links=OrderLinks(self=base, execution=f"{base}/execution", cancel=f"{base}/cancel"),
    )


async def fetch_order(engine: AsyncEngine, user_id: uuid.UUID, order_id: uuid.UUID) -> Mapping[str, Any]:
    """The customer's own order row, or 404 (also when it is someone else's: we never confirm it exists)."""
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
        raise ProblemError(404, "order_not_found", "no such order")
    return dict(row)


# --- create -------------------------------------------------------------------------------------


def _field_error(status: int, code: str, detail: str, field: str) -> ProblemError:
    return ProblemError(status, code, detail, errors=[{"field": field, "message": detail, "type": code}])


def _rejected_field(e: order_service.OrderRejected, body: OrderCreate) -> str:
    """Which body field a `services.orders.validate` refusal is about."""
    reason = e.reason
    if e.code == "unknown_symbol":
        return "body.symbol"
    if e.code == "invalid_price":
        return "body.price"
    if e.code == "invalid_slippage":
        return "body.max_slippage"
    if reason.startswith("quote_amount") or (e.code == "invalid_size" and "only for market buys" in reason):
        return "body.quote_amount"
    if e.code in ("order_too_large", "order_too_small") and reason.startswith("the order is worth"):
        return "body.quote_amount" if body.quote_amount is not None else "body.amount"
    if e.code == "invalid_precision":
        if reason.startswith("price"):
            return "body.price"
        base, _ = split_symbol(body.symbol)
        return "body.amount" if f" {base} " in reason else "body.quote_amount"
    return "body.amount"


def to_request(body: OrderCreate, order_id: uuid.UUID, user_id: uuid.UUID) -> OrderRequest:
    """The saga's input, checked exactly as the saga will check it (a refusal names the field)."""

    def dec(value: str | None) -> Decimal | None:
        return Decimal(value) if value is not None else None

    req = OrderRequest(
        order_id=order_id,
        user_id=user_id,
        symbol=body.symbol,
        side=body.side,
        type=body.type,
        amount=dec(body.amount),
        quote_amount=dec(body.quote_amount),
        price=dec(body.price),
        max_slippage=dec(body.max_slippage),
        time_in_force=body.time_in_force,
        expires_at=body.expires_at,
        created_by=user_id,
    )
    try:
        order_service.validate(req)
    except order_service.OrderRejected as e:
        raise _field_error(422, e.code, e.reason, _rejected_field(e, body)) from e
    if body.expires_at is not None:
        if body.type is not OrderType.LIMIT:
            raise _field_error(422, "invalid_expiry", "only limit orders can expire", "body.expires_at")
        if body.expires_at <= datetime.now(UTC):
            raise _field_error(422, "invalid_expiry", "expires_at must be in the future", "body.expires_at")
    if body.max_slippage is not None and body.type is OrderType.LIMIT:
        raise _field_error(
            422,
            "invalid_slippage",
            "a limit order's price is its guard; omit max_slippage",
            "body.max_slippage",
        )
    return req


async def estimate_notional(req: OrderRequest, market: MarketData) -> Decimal:
    """The order's size in GBP for the second-factor threshold: what it can really trade for
    (`services.orders.fill_value`: a limit sell below the bids is worth what the bids pay), from the
    cached books (at most a second old)."""
    value = order_service.fill_value(req, None)
    if value is not None:
        return value
    price = await market.reference_price(req.symbol, req.side)
    value = order_service.fill_value(req, price)
    if value is None:
        raise ProblemError(503, "price_unavailable", "no venue is quoting this market now; try again shortly")
    return value


async def _start(
    client: Client, engine: AsyncEngine, req: OrderRequest, task_queue: str, notional: Decimal
) -> None:
    """Record the order row, then start its saga. The row exists before the 202, so it can be read at once."""
    async with engine.begin() as conn:
        await order_service.insert_order(conn, req)
    try:
        await client.start_workflow(
            OrderWorkflow.run,
            req,
            id=workflow_id(req.order_id),
            task_queue=task_queue,
            id_reuse_policy=ID_REUSE_POLICY,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(sa.CUSTOMER_ID, str(req.user_id)),
                    SearchAttributePair(sa.SYMBOL, req.symbol),
                    SearchAttributePair(sa.SIDE, req.side.value),
                    SearchAttributePair(sa.ORDER_STATUS, OrderStatus.PENDING.value),
                    SearchAttributePair(sa.NOTIONAL_GBP, float(notional)),
                ]
            ),
        )
    except WorkflowAlreadyStartedError:
        pass  # a retry of the same (customer, key, request) after a crash: it is already under way
    except Exception as e:
        log.warning(
            json.dumps({"event": "order.start_failed", "order_id": str(req.order_id), "error": repr(e)})
        )
        await _forget_unless_started(client, engine, req.order_id)
        raise ProblemError(503, "temporal_unavailable", "the order could not be started; try again") from e


async def _forget_unless_started(client: Client, engine: AsyncEngine, order_id: uuid.UUID) -> None:
    """Delete the row of an order whose start failed, when Temporal says there is no such workflow.

    If Temporal can't say (unreachable), the PENDING row stays: it counts against no limit and holds
    nothing, and a retry with the same Idempotency-Key completes it."""
    try:
        await client.get_workflow_handle(workflow_id(order_id)).describe()
        return
    except RPCError as e:
        if e.status is not RPCStatusCode.NOT_FOUND:
            return
    except Exception:
        return
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM orders WHERE id = :id AND status = 'PENDING'"), {"id": order_id})


def orders_task_queue(request: Request) -> str:
    queue: str = getattr(request.app.state, "orders_task_queue", task_queues.ORDERS)
    return queue


@router.post(
    "/orders",
    status_code=202,
    response_model=OrderOut,
    responses=problem_responses(401, 403, 409, 422, 429, 503),
)
async def create_order(
    request: Request,
    body: OrderCreate,
    user: Customer,
    session: SessionDep,
    engine: EngineDep,
    settings: SettingsDep,
    client: TemporalDep,
    market: MarketDep,
    idempotency_key: idempotency.IdempotencyKey = None,
    totp_code: TotpCode = None,
) -> JSONResponse:
    """Place a market or limit order (202: the order saga executes it; follow `links.self`)."""
    fields = body.model_dump(mode="json", exclude_none=True)
    request_hash = idempotency.fingerprint("POST", f"{PREFIX}/orders", fields)
    order_id = (
        idempotency.derived_id(user.id, idempotency_key, request_hash) if idempotency_key else uuid.uuid4()
    )
    req = to_request(body, order_id, user.id)
    if settings.first_trade_gates_enforced:  # said at once (the saga's accept step checks it again)
        async with engine.connect() as conn:
            await first_trade_gates.enforce(conn, user.id)
    if idempotency_key:
        stored = await idempotency.claim(
            engine,
            user_id=user.id,
            key=idempotency_key,
            method="POST",
            path=f"{PREFIX}/orders",
            request_hash=request_hash,
        )
        if stored is not None:
            return JSONResponse(
                stored.body, status_code=stored.status, headers={"Idempotent-Replayed": "true"}
            )
    try:
        notional = await estimate_notional(req, market)
        if notional > settings.trade_totp_threshold_gbp:
            await require_totp(request, session, user, totp_code, mandatory=True)
        await _start(client, engine, req, orders_task_queue(request), notional)
        out = order_out(await fetch_order(engine, user.id, order_id)).model_dump(mode="json")
    except Exception:
        if idempotency_key:
            await idempotency.release(engine, user_id=user.id, key=idempotency_key)
        raise
    if idempotency_key:
        await idempotency.complete(engine, user_id=user.id, key=idempotency_key, status=202, body=out)
    return JSONResponse(out, status_code=202, headers={"Location": out["links"]["self"]})


# --- read ---------------------------------------------------------------------------------------


def _cursor(created_at: datetime, order_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(json.dumps([created_at.isoformat(), str(order_id)]).encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        created, order_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return datetime.fromisoformat(created), uuid.UUID(order_id)
    except (ValueError, TypeError, AttributeError) as e:  # uuid.UUID(5) is an AttributeError
        raise _field_error(
            422, "invalid_cursor", "not a cursor we issued; start without one", "query.cursor"
        ) from e


@router.get("/orders", response_model=OrderPage, responses=problem_responses(401, 403, 422))
async def list_orders(
    user: Customer,
    engine: EngineDep,
    status: OrderStatus | None = None,
    symbol: Annotated[str | None, Query(pattern=SYMBOL_PATTERN, max_length=21)] = None,
    side: Side | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> OrderPage:
    """Your orders, newest first, optionally filtered by status, symbol and side."""
    where = ["user_id = :u"]
    params: dict[str, Any] = {"u": user.id, "lim": limit + 1}
    if status is not None:
        where.append("status = :status")
        params["status"] = status.value
    if symbol is not None:
        where.append("symbol = :symbol")
        params["symbol"] = symbol
    if side is not None:
        where.append("side = :side")
        params["side"] = side.value
    if cursor:
        params["c_at"], params["c_id"] = _decode_cursor(cursor)
        where.append("(created_at, id) < (:c_at, :c_id)")
    async with engine.connect() as conn:
        rows = (
            (
                await conn.execute(
                    text(
                        f"SELECT {ORDER_COLUMNS} FROM orders WHERE {' AND '.join(where)} "
                        "ORDER BY created_at DESC, id DESC LIMIT :lim"
                    ),
                    params,
                )
            )
            .mappings()
            .all()
        )
    page = rows[:limit]
    next_cursor = _cursor(page[-1]["created_at"], page[-1]["id"]) if len(rows) > limit else None
    return OrderPage(orders=[order_out(dict(r)) for r in page], next_cursor=next_cursor)


@router.get("/orders/{order_id}", response_model=OrderOut, responses=problem_responses(401, 403, 404, 422))
async def get_order(order_id: uuid.UUID, user: Customer, engine: EngineDep) -> OrderOut:
    """One of your orders: status, fills, fee and venues."""
    return order_out(await fetch_order(engine, user.id, order_id))


@router.get(
    "/orders/{order_id}/execution",
    response_model=ExecutionOut,
    responses=problem_responses(401, 403, 404, 422),
)
async def get_execution(order_id: uuid.UUID, user: Customer, engine: EngineDep) -> BestExecutionRecord:
    """The best-execution record: every venue quote the router saw, the route chosen and why."""
    # Customers see the numbers and our words; the venues' own text stays in the stored record for staff.
    await fetch_order(engine, user.id, order_id)
    async with engine.connect() as conn:
        record = (
            await conn.execute(
                text("SELECT execution_record FROM orders WHERE id = :id AND user_id = :u"),
                {"id": order_id, "u": user.id},
            )
        ).scalar_one_or_none()
    if record is None:
        raise ProblemError(404, "execution_not_available", "the order has not been routed (yet)")
    return order_reasons.public_record(BestExecutionRecord.model_validate(record))


@router.post(
    "/orders/{order_id}/cancel",
    status_code=202,
    response_model=OrderOut,
    responses=problem_responses(401, 403, 404, 409, 422, 503),
)
async def cancel_order(
    order_id: uuid.UUID,
    user: Customer,
    engine: EngineDep,
    client: TemporalDep,
    body: CancelBody | None = None,
) -> OrderOut:
    """Ask to cancel an open order (202: the saga cancels it at the venue and releases the funds)."""
    row = await fetch_order(engine, user.id, order_id)
    if OrderStatus(row["status"]).final:
        raise ProblemError(409, "order_final", f"the order is already {row['status']}")
    request = CancelRequest(reason=(body or CancelBody()).reason, requested_by=user.id)
    try:
        await client.get_workflow_handle(workflow_id(order_id)).signal(OrderWorkflow.cancel, request)
    except RPCError as e:
        if e.status is RPCStatusCode.NOT_FOUND:  # the saga finished after we read the row
            raise ProblemError(409, "order_final", "the order has already finished") from e
        raise ProblemError(503, "temporal_unavailable", "the cancellation could not be sent; retry") from e
    return order_out(row)
