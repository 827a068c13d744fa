"""Staff endpoints (ops role) for money the order sagas hold: orders waiting on an unknown placement
(NEEDS_ATTENTION) and ops' word on them, and holds that outlived their order or withdrawal
(services/holds.py).

Resolving a placement needs `X-TOTP-Code`: after the check, the API signs a short-lived decision token
for this ops user, order and action (`services.decision_tokens`) and sends it with the resolution as an
update; the saga verifies the token and the ops role itself, exactly as for a `resolve_placement`
signal from the Temporal CLI or Web UI (whose token comes from `python -m cli approval-token`).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Self

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import text

from api.auth_deps import OpsWithTotp, problem_responses, require_role
from api.deps import EngineDep, SettingsDep, TemporalDep
from api.errors import ProblemError
from api.sagas import saga_answers
from models.money import money, money_or_none
from models.order_flow import PlacementResolution, ResolutionOutcome
from models.users import User
from services import holds
from services.decision_tokens import DecisionTokens
from workflows.orders import workflow_id

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
            notional_gbp=money_or_none(r[5], "GBP"),
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
            remaining=money(h.remaining, h.currency),
            owner_status=h.owner_status,
        )
        for h in found
    ]


class ResolvePlacementBody(BaseModel):
    """Exactly one of: the venue's order id ops found for this placement, or `absent: true` once the
    venue confirmed it never received it (the saga checks the venue once more before believing it)."""

    venue_order_id: str | None = Field(default=None, min_length=1, max_length=100)
    absent: bool = False
    note: str = Field(min_length=1, max_length=500, description="what ops established, and with whom")

    @model_validator(mode="after")
    def _one_answer(self) -> Self:
        if (self.venue_order_id is None) == (not self.absent):
            raise ValueError("give either venue_order_id or absent: true")
        return self


@router.post(
    "/orders/{order_id}/resolve-placement",
    response_model=ResolutionOutcome,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def resolve_placement(
    order_id: uuid.UUID,
    body: ResolvePlacementBody,
    staff: OpsWithTotp,
    client: TemporalDep,
    settings: SettingsDep,
) -> ResolutionOutcome:
    """Resolve an order whose placement outcome is unknown (needs `X-TOTP-Code`)."""
    resolution = PlacementResolution(
        provider_order_id=body.venue_order_id, absent=body.absent, note=body.note, staff_id=staff.id
    )
    tokens = DecisionTokens.from_secret(
        settings.jwt_secret, timedelta(seconds=settings.decision_token_ttl_seconds)
    )
    resolution.token = tokens.issue(
        actor_id=staff.id,
        order_id=order_id,
        action=resolution.action,
        now=datetime.now(UTC),
        detail=resolution.proof_detail,
    )
    handle = client.get_workflow_handle(workflow_id(order_id))
    with saga_answers(
        gone=ProblemError(404, "not_found", "no such order waiting for ops"),
        refused=ProblemError(409, "not_waiting", "the order is not waiting for ops"),
    ):
        outcome = await handle.execute_update(
            "resolve_placement_checked", resolution, result_type=ResolutionOutcome
        )
    if not outcome.accepted:
        status = 409 if outcome.code == "not_waiting" else 403
        raise ProblemError(status, outcome.code, outcome.detail or outcome.code)
    return outcome
