"""Staff endpoints (ops role) for money the order sagas hold: orders waiting on an unknown placement
(NEEDS_ATTENTION) and holds that outlived their order or withdrawal (services/holds.py)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel
from sqlalchemy import text

from api.auth_deps import problem_responses, require_role
from api.deps import EngineDep
from models.assets import quantum
from models.users import User
from services import holds

router = APIRouter(prefix="/admin", tags=["admin"])

Ops = Annotated[User, Depends(require_role("ops"))]


class AttentionOrder(BaseModel):
    id: uuid.UUID
    user_id: uuid.UUID
    symbol: str
    side: str
    type: str
    notional_gbp: str | None
    hold_id: uuid.UUID | None
    reason: str | None
    created_at: datetime
    updated_at: datetime


class OrphanedHoldOut(BaseModel):
    hold_id: uuid.UUID
    reference_type: str
    reference_id: uuid.UUID
    currency: str
    remaining: str
    owner_status: str | None


@router.get("/orders/attention", response_model=list[AttentionOrder], responses=problem_responses(401, 403))
async def attention_orders(staff: Ops, engine: EngineDep) -> list[AttentionOrder]:
    """Orders whose placement outcome is still unknown (funds held), longest waiting first."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT id, user_id, symbol, side, type, notional_gbp, hold_id, reject_reason, "
                    "created_at, updated_at FROM orders WHERE status = 'NEEDS_ATTENTION' "
                    "ORDER BY updated_at LIMIT 500"
                )
            )
        ).all()
    return [
        AttentionOrder(
            id=r[0],
            user_id=r[1],
            symbol=r[2],
            side=r[3],
            type=r[4],
            notional_gbp=None if r[5] is None else format(r[5].quantize(quantum("GBP")), "f"),
            hold_id=r[6],
            reason=r[7],
            created_at=r[8],
            updated_at=r[9],
        )
        for r in rows
    ]


@router.get("/holds/orphaned", response_model=list[OrphanedHoldOut], responses=problem_responses(401, 403))
async def orphaned_holds(staff: Ops, engine: EngineDep) -> list[OrphanedHoldOut]:
    """Active holds whose order or withdrawal is final or missing (what the scheduled audit alerts on)."""
    async with engine.connect() as conn:
        found = await holds.orphaned_holds(conn, limit=500)
    return [
        OrphanedHoldOut(
            hold_id=h.hold_id,
            reference_type=h.reference_type,
            reference_id=h.reference_id,
            currency=h.currency,
            remaining=format(h.remaining.quantize(quantum(h.currency)), "f"),
            owner_status=h.owner_status,
        )
        for h in found
    ]
