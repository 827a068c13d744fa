"""Customer orders (docs/architecture.md §4 step 1): place, read, list, cancel, and the best-execution record.

Each route is a dependency, one service call and a response model: placing is
`services.orders.intake.place_order` (validation naming the field, `Idempotency-Key`, the second factor
above the trade threshold, the order row and its saga, compensation), reads are `services.orders.views`.
Refusals are `DomainError`s answered by the one handler in `api/errors.py`. Another customer's order
answers 404, never 403.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from api import idempotency
from api.auth_deps import TotpCode, problem_responses, require_totp
from api.deps import EngineDep, SessionDep, SettingsDep, TemporalDep
from api.routes.accounts import Customer
from api.routes.market import MarketDep
from models.api import SYMBOL_PATTERN, CancelBody, ExecutionOut, OrderCreate, OrderOut, OrderPage
from models.market import BestExecutionRecord, Side
from models.order_flow import OrderStatus
from services.orders import intake, views
from services.pagination import CURSOR_MAX_LENGTH
from temporal import task_queues
from temporal.order_sagas import TemporalOrderSagas

router = APIRouter(tags=["orders"])


def orders_task_queue(request: Request) -> str:
    """This app's orders task queue (tests run their own)."""
    queue: str = getattr(request.app.state, "orders_task_queue", task_queues.ORDERS)
    return queue


async def order_sagas(request: Request, client: TemporalDep) -> intake.OrderSagas:
    """The order sagas on this app's orders task queue."""
    return TemporalOrderSagas(client, orders_task_queue(request))


OrderSagasDep = Annotated[intake.OrderSagas, Depends(order_sagas)]


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
    sagas: OrderSagasDep,
    market: MarketDep,
    idempotency_key: idempotency.IdempotencyKey = None,
    totp_code: TotpCode = None,
) -> JSONResponse:
    """Place a market or limit order (202: the order saga executes it; follow `links.self`)."""
    placed = await intake.place_order(
        engine=engine,
        sagas=sagas,
        prices=market,
        order=body,
        user_id=user.id,
        idempotency_key=idempotency_key,
        second_factor_above_gbp=settings.trade_totp_threshold_gbp,
        confirm_second_factor=lambda: require_totp(request, session, user, totp_code, mandatory=True),
        first_trade_gates_enforced=bool(settings.first_trade_gates_enforced),
    )
    return JSONResponse(placed.body, status_code=placed.status, headers=placed.headers)


@router.get("/orders", response_model=OrderPage, responses=problem_responses(401, 403, 422))
async def list_orders(
    user: Customer,
    engine: EngineDep,
    status: OrderStatus | None = None,
    symbol: Annotated[str | None, Query(pattern=SYMBOL_PATTERN, max_length=21)] = None,
    side: Side | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=CURSOR_MAX_LENGTH)] = None,
) -> OrderPage:
    """Your orders, newest first, optionally filtered by status, symbol and side."""
    return await views.list_orders(
        engine=engine, user_id=user.id, status=status, symbol=symbol, side=side, limit=limit, cursor=cursor
    )


@router.get("/orders/{order_id}", response_model=OrderOut, responses=problem_responses(401, 403, 404, 422))
async def get_order(order_id: uuid.UUID, user: Customer, engine: EngineDep) -> OrderOut:
    """One of your orders: status, fills, fee and venues."""
    return await views.get_order(engine=engine, user_id=user.id, order_id=order_id)


@router.get(
    "/orders/{order_id}/execution",
    response_model=ExecutionOut,
    responses=problem_responses(401, 403, 404, 422),
)
async def get_execution(order_id: uuid.UUID, user: Customer, engine: EngineDep) -> BestExecutionRecord:
    """The best-execution record: every venue quote the router saw, the route chosen and why."""
    return await views.execution_record(engine=engine, user_id=user.id, order_id=order_id)


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
    sagas: OrderSagasDep,
    body: CancelBody | None = None,
) -> OrderOut:
    """Ask to cancel an open order (202: the saga cancels it at the venue and releases the funds)."""
    reason = (body or CancelBody()).reason
    return await intake.cancel_order(
        engine=engine, sagas=sagas, user_id=user.id, order_id=order_id, reason=reason
    )
